import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import zlib from 'node:zlib';
import { normalisePath, parseQuery } from '../../src/protocols/http/path.js';
import { parseAuthority, parseRequestTarget } from '../../src/protocols/http/target.js';
import { hasDuplicateKeys, inspectBody } from '../../src/protocols/http/body.js';
import { buildHttpFacts, headerFacts } from '../../src/protocols/http/facts.js';
import { HttpParseError } from '../../src/protocols/http/h1-parser.js';

function status(fn: () => unknown): number | 'ok' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof HttpParseError) return err.status;
    throw err;
  }
}

describe('path normalisation (threats.md class 11)', () => {
  it.each([
    ['/v1/refunds', '/v1/refunds', '/v1/refunds'],
    ['/v1/../admin', '/admin', '/admin'],
    ['/v1//refunds', '/v1/refunds', '/v1/refunds'],
    ['/v1/./refunds', '/v1/refunds', '/v1/refunds'],
    ['/v1/%2e%2e/admin', '/admin', '/admin'],
    ['/v1/%2E%2E/admin', '/admin', '/admin'],
    ['/v1/.%2e/admin', '/admin', '/admin'],
    ['/v1/%2e/refunds', '/v1/refunds', '/v1/refunds'],
    ['/v1/%72efunds', '/v1/refunds', '/v1/refunds'],
    ['/v1/%252e%252e/admin', '/v1/%2e%2e/admin', '/v1/%252e%252e/admin'],
    ['/v1\\..\\admin', '/admin', '/admin'],
    ['/v1\\refunds', '/v1/refunds', '/v1/refunds'],
    ['/../../etc/passwd', '/etc/passwd', '/etc/passwd'],
    ['/', '/', '/'],
    ['//', '/', '/'],
    ['/..', '/', '/'],
    ['/a/b/', '/a/b/', '/a/b/'],
    ['/a/b//', '/a/b/', '/a/b/'],
    ['/a/b/..', '/a/', '/a/'],
    ['/a/b/.', '/a/b/', '/a/b/'],
    ['/repos/o/r/git/refs/heads/feature%2fx', '/repos/o/r/git/refs/heads/feature/x', '/repos/o/r/git/refs/heads/feature%2Fx'],
    ['/files/%E2%82%AC', '/files/€', '/files/%E2%82%AC'],
    ['/a%20b', '/a b', '/a%20b'],
    ['/items;version=2', '/items;version=2', '/items;version=2'],
    ['/...', '/...', '/...'],
  ])('%s → path %s, forwarded %s', (raw, path, forward) => {
    expect(normalisePath(raw)).toEqual({ path, forward });
  });

  it.each([
    ['/v1/..%2Fadmin', 'encoded slash hides a dot segment'],
    ['/v1/..%2fadmin', 'lower-case escape'],
    ['/v1/%2e%2e%2fadmin', 'fully encoded'],
    ['/v1/..%5Cadmin', 'encoded backslash'],
    ['/v1/..;/admin', "Tomcat's ..; trick"],
    ['/v1/.;x/admin', 'dot with parameters'],
    ['/v1/a%2F..%2F..%2Fadmin', 'several encoded dot segments'],
    ['/v1/%00', 'NUL'],
    ['/v1/a%0d%0aX-Injected:%201', 'CRLF'],
    ['/v1/%zz', 'malformed escape'],
    ['/v1/%2', 'truncated escape'],
    ['/v1/%ff', 'not UTF-8'],
    ['v1/x', 'no leading slash'],
  ])('refuses %s (%s)', (raw) => {
    expect(status(() => normalisePath(raw))).toBe(400);
  });

  it('query keeps every value of repeated keys and decodes once', () => {
    expect(parseQuery('a=1&a=2&b=%2541&c&d=x+y')).toEqual({ a: ['1', '2'], b: ['%41'], c: [''], d: ['x y'] });
    expect(parseQuery(null)).toEqual({});
    const q = parseQuery('__proto__=x');
    expect(Object.keys(q)).toEqual(['__proto__']);
    expect(q['__proto__']).toEqual(['x']);
  });
});

describe('request-target and authority (threats.md class 12)', () => {
  it('parses origin-, absolute-, authority- and asterisk-form', () => {
    expect(parseRequestTarget('/a?b=1', 'GET')).toEqual({ form: 'origin', rawPath: '/a', rawQuery: 'b=1' });
    expect(parseRequestTarget('HTTP://API.Example.com:8080', 'GET')).toEqual({
      form: 'absolute',
      scheme: 'http',
      authority: 'API.Example.com:8080',
      rawPath: '/',
      rawQuery: null,
    });
    expect(parseRequestTarget('https://a.example/x/y?z', 'POST')).toMatchObject({ rawPath: '/x/y', rawQuery: 'z' });
    expect(parseRequestTarget('a.example:443', 'CONNECT')).toMatchObject({ form: 'authority', authority: 'a.example:443' });
    expect(parseRequestTarget('*', 'OPTIONS')).toMatchObject({ form: 'asterisk' });
  });

  it.each([
    ['http://api.example.com@evil.example/', 'GET'],
    ['ftp://a.example/', 'GET'],
    ['a.example', 'CONNECT'],
    ['*', 'GET'],
    ['a.example:443', 'GET'],
    ['http://a.example:99999/', 'GET'],
  ])('refuses target %s for %s', (target, method) => {
    expect(status(() => parseRequestTarget(target, method))).toBe(400);
  });

  it('normalises hosts: case, trailing dot, port, IPv6', () => {
    expect(parseAuthority('API.GitHub.com.')).toEqual({ host: 'api.github.com', port: undefined });
    expect(parseAuthority('api.github.com.:443')).toEqual({ host: 'api.github.com', port: 443 });
    expect(parseAuthority('[::1]:8443')).toEqual({ host: '::1', port: 8443 });
    expect(parseAuthority('10.0.0.1')).toEqual({ host: '10.0.0.1', port: undefined });
  });

  it.each(['127.1', '0x7f.0.0.1', '2130706433', 'a..b', 'a b', 'evil.example/x', '', 'a.example:', 'a.example:0', '[::1', 'a%2eb'])(
    'refuses host %j',
    (h) => {
      expect(status(() => parseAuthority(h))).toBe(400);
    },
  );
});

describe('body inspection (threats.md class 13)', () => {
  const limit = 1024;

  it('plain text and JSON, whatever the content type', () => {
    expect(inspectBody(Buffer.from('{"amount":5}'), { complete: true, limit })).toEqual({
      body: '{"amount":5}',
      body_json: { amount: 5 },
    });
    expect(inspectBody(Buffer.from('a=b'), { complete: true, limit })).toEqual({ body: 'a=b', body_json: {} });
    expect(inspectBody(Buffer.alloc(0), { complete: true, limit })).toEqual({ body: '', body_json: {} });
  });

  it('decodes gzip, deflate (zlib and raw), br and stacked codings', () => {
    const json = Buffer.from('{"action":"delete"}');
    for (const [enc, bytes] of [
      ['gzip', zlib.gzipSync(json)],
      ['x-gzip', zlib.gzipSync(json)],
      ['deflate', zlib.deflateSync(json)],
      ['deflate', zlib.deflateRawSync(json)],
      ['br', zlib.brotliCompressSync(json)],
      ['gzip, br', zlib.brotliCompressSync(zlib.gzipSync(json))],
      ['identity', json],
    ] as const) {
      expect(inspectBody(bytes, { complete: true, contentEncoding: enc, limit }), enc).toEqual({
        body: '{"action":"delete"}',
        body_json: { action: 'delete' },
      });
    }
  });

  it('fails closed: over the limit, a bomb past the cap, unknown or corrupt coding, duplicate JSON keys', () => {
    const unknown = { body: '', body_json: {}, body_truncated: true };
    expect(inspectBody(Buffer.alloc(10, 0x61), { complete: false, limit })).toEqual(unknown);
    const bomb = zlib.gzipSync(Buffer.alloc(10 * 1024 * 1024, 0x61));
    expect(bomb.length).toBeLessThan(limit * 20);
    expect(inspectBody(bomb.subarray(0), { complete: true, contentEncoding: 'gzip', limit: 64 * 1024 })).toEqual(unknown);
    expect(inspectBody(Buffer.from('x'), { complete: true, contentEncoding: 'zstd', limit })).toEqual(unknown);
    expect(inspectBody(Buffer.from('not gzip'), { complete: true, contentEncoding: 'gzip', limit })).toEqual(unknown);
    expect(inspectBody(Buffer.from('{"amount":1,"amount":1000}'), { complete: true, limit })).toEqual(unknown);
  });

  it('finds duplicate keys at any depth, not in arrays or values', () => {
    expect(hasDuplicateKeys('{"a":{"b":1,"b":2}}')).toBe(true);
    expect(hasDuplicateKeys('{"a":1,"\\u0061":2}')).toBe(true);
    expect(hasDuplicateKeys('{"a":["a","a"],"b":{"a":1}}')).toBe(false);
    expect(hasDuplicateKeys('[{"a":1},{"a":2}]')).toBe(false);
    expect(hasDuplicateKeys('{"a":"\\"a\\"","b":"a"}')).toBe(false);
    // Text JSON.parse would refuse (the function is never given it) ends the scan instead of looping.
    expect(hasDuplicateKeys('{"a":"unterminated')).toBe(false);
    expect(hasDuplicateKeys('{"a')).toBe(false);
  });

  it('agrees with the structure it was written from: generated JSON, escaped keys and string values full of quotes and backslashes', () => {
    // An object is written from a list of members, so it may repeat a key; the expected answer comes
    // from that list (keys compared decoded), independently of how the text spells them.
    type Gen = { kind: 'scalar'; text: string } | { kind: 'array'; items: Gen[] } | { kind: 'object'; members: [string, boolean, Gen][] };
    const KEYS = ['a', 'b', 'model', '"q"', '\\', 'a\\"b', 'é', '', '}', ','];
    const spell = (key: string, escaped: boolean) =>
      escaped ? `"${[...key].map((ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"` : JSON.stringify(key);
    const { value } = fc.letrec<{ value: Gen }>((tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.oneof(fc.string(), fc.constantFrom('"', '\\', '\\"', '{"a":1,"a":2}', '}{'), fc.integer(), fc.boolean(), fc.constant(null)).map((v) => ({ kind: 'scalar' as const, text: JSON.stringify(v) })),
        fc.array(tie('value'), { maxLength: 4 }).map((items) => ({ kind: 'array' as const, items })),
        fc.array(fc.tuple(fc.constantFrom(...KEYS), fc.boolean(), tie('value')), { maxLength: 5 }).map((members) => ({ kind: 'object' as const, members })),
      ),
    }));
    const write = (g: Gen): string =>
      g.kind === 'scalar' ? g.text : g.kind === 'array' ? `[${g.items.map(write).join(',')}]` : `{${g.members.map(([k, e, v]) => `${spell(k, e)}:${write(v)}`).join(',')}}`;
    const repeats = (g: Gen): boolean =>
      g.kind === 'array'
        ? g.items.some(repeats)
        : g.kind === 'object'
          ? new Set(g.members.map(([k]) => k)).size < g.members.length || g.members.some(([, , v]) => repeats(v))
          : false;
    fc.assert(
      fc.property(value, (g) => {
        const text = write(g);
        JSON.parse(text); // well-formed, as the function requires
        expect(hasDuplicateKeys(text), text).toBe(repeats(g));
      }),
      { numRuns: 5000 },
    );
  });
});

describe('facts', () => {
  it('headers: lower-case keys, repeated values joined, cookies with "; "', () => {
    expect(
      headerFacts([
        { name: 'Accept', value: 'a' },
        { name: 'accept', value: 'b' },
        { name: 'Cookie', value: 'x=1' },
        { name: 'cookie', value: 'y=2' },
      ]),
    ).toEqual({ accept: 'a, b', cookie: 'x=1; y=2' });
  });

  it('builds the full fact set', () => {
    const facts = buildHttpFacts({
      method: 'DELETE',
      rawPath: '/v1//a/%2e%2e/refunds',
      rawQuery: 'id=1&id=2',
      host: 'api.example.com',
      headers: [{ name: 'Content-Type', value: 'application/json' }],
      body: { body: '{}', body_json: {} },
    });
    expect(facts).toEqual({
      method: 'DELETE',
      path: '/v1/refunds',
      raw_path: '/v1//a/%2e%2e/refunds',
      host: 'api.example.com',
      query: { id: ['1', '2'] },
      headers: { 'content-type': 'application/json' },
      body: '{}',
      body_json: {},
    });
  });
});
