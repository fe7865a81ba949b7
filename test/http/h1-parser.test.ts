import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Http1RequestParser, Http1ResponseParser, type ParseEvent, type RequestHead, type ResponseHead } from '../../src/protocols/http/h1-parser.js';

interface Collected<H> {
  heads: H[];
  bodies: string[];
  trailers: string[][];
  error?: { status: number; reason: string };
}
type Parsed = Collected<RequestHead>;

/** Collects a parser's events; `drain` takes every event available now and calls `onEnd` after each message. */
function collector<H>(p: { next(): ParseEvent<H> | null }) {
  const out: Collected<H> = { heads: [], bodies: [], trailers: [] };
  let body: Buffer[] = [];
  const drain = (onEnd?: () => void) => {
    for (let ev: ParseEvent<H> | null; (ev = p.next()) !== null; ) {
      if (ev.type === 'head') out.heads.push(ev.head);
      else if (ev.type === 'body') body.push(Buffer.from(ev.data));
      else if (ev.type === 'end') {
        out.bodies.push(Buffer.concat(body).toString('latin1'));
        out.trailers.push(ev.trailers.map((t) => `${t.name}: ${t.value}`));
        body = [];
        onEnd?.();
      } else {
        out.error = { status: ev.status, reason: ev.reason };
        return;
      }
    }
  };
  return { out, drain };
}

/** Feed `raw` in pieces of `step` bytes (0 = all at once) and collect every event. */
function parse(raw: string | Buffer, step = 0): Parsed {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw;
  const p = new Http1RequestParser();
  const { out, drain } = collector(p);
  const size = step === 0 ? bytes.length : step;
  for (let i = 0; i < bytes.length && !out.error; i += size) {
    p.feed(bytes.subarray(i, i + size));
    drain();
  }
  return out;
}

/** Same result whole and byte by byte: framing must not depend on packet boundaries. */
function parseBothWays(raw: string): Parsed {
  const whole = parse(raw);
  const bytewise = parse(raw, 1);
  expect(JSON.stringify(bytewise)).toEqual(JSON.stringify(whole));
  return whole;
}

function rejects(raw: string, status = 400): string {
  const r = parseBothWays(raw);
  expect(r.error, `expected ${status} for ${JSON.stringify(raw)}`).toBeDefined();
  expect(r.error!.status).toBe(status);
  return r.error!.reason;
}

const H = 'Host: api.example.com\r\n';

describe('strict HTTP/1.1 request parser — valid messages', () => {
  it('parses a GET with headers, keeps case and order, trims OWS', () => {
    const r = parseBothWays(`GET /v1/x?a=1 HTTP/1.1\r\n${H}X-Thing:  a b \t\r\nx-thing: c\r\n\r\n`);
    expect(r.error).toBeUndefined();
    expect(r.heads).toHaveLength(1);
    const h = r.heads[0]!;
    expect(h.method).toBe('GET');
    expect(h.target).toBe('/v1/x?a=1');
    expect(h.version).toBe('1.1');
    expect(h.headers).toEqual([
      { name: 'Host', value: 'api.example.com' },
      { name: 'X-Thing', value: 'a b' },
      { name: 'x-thing', value: 'c' },
    ]);
    expect(h.framing).toEqual({ kind: 'none' });
    expect(h.keepAlive).toBe(true);
    expect(r.bodies).toEqual(['']);
  });

  it('reads a Content-Length body and then a pipelined second request', () => {
    const r = parseBothWays(
      `POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
    );
    expect(r.error).toBeUndefined();
    expect(r.heads.map((h) => h.target)).toEqual(['/a', '/b']);
    expect(r.bodies).toEqual(['hello', '']);
    expect(r.heads[1]!.keepAlive).toBe(false);
  });

  it('reads chunked bodies with extensions and trailers', () => {
    const raw =
      `POST /up HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n` +
      `5;name=value\r\nhello\r\n6 ; q="a \\"b\\"" ;x\r\n world\r\n0\r\nX-Checksum: 42\r\n\r\n`;
    const r = parseBothWays(raw);
    expect(r.error).toBeUndefined();
    expect(r.heads[0]!.framing).toEqual({ kind: 'chunked' });
    expect(r.bodies).toEqual(['hello world']);
    expect(r.trailers).toEqual([['X-Checksum: 42']]);
  });

  it('accepts upper-case chunk hex and Transfer-Encoding in any case', () => {
    const r = parseBothWays(`POST / HTTP/1.1\r\n${H}transfer-encoding: CHUNKED\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n`);
    expect(r.bodies).toEqual(['0123456789']);
  });

  it('HTTP/1.0 closes unless keep-alive is asked for; Host is optional there', () => {
    expect(parseBothWays('GET / HTTP/1.0\r\n\r\n').heads[0]!.keepAlive).toBe(false);
    expect(parseBothWays('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n').heads[0]!.keepAlive).toBe(true);
  });

  it('recognises Expect: 100-continue and upgrades', () => {
    const e = parseBothWays(`PUT /f HTTP/1.1\r\n${H}Expect: 100-Continue\r\nContent-Length: 1\r\n\r\nx`);
    expect(e.heads[0]!.expectContinue).toBe(true);
    const u = parseBothWays(`GET /ws HTTP/1.1\r\n${H}Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    expect(u.heads[0]!.upgrade).toBe('websocket');
    const noConn = parseBothWays(`GET /ws HTTP/1.1\r\n${H}Upgrade: websocket\r\n\r\n`);
    expect(noConn.heads[0]!.upgrade).toBeNull();
  });

  it('ignores a few empty lines before the request line', () => {
    expect(parseBothWays(`\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`).heads).toHaveLength(1);
  });

  it('stops at CONNECT and leaves the tunnel bytes untouched', () => {
    const p = new Http1RequestParser();
    p.feed(Buffer.from('CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n\x16\x03\x01'));
    const ev = p.next();
    expect(ev?.type).toBe('head');
    expect(p.takeBuffered().toString('latin1')).toBe('\x16\x03\x01');
  });
});

describe('strict HTTP/1.1 request parser — smuggling and malformed framing (threats.md class 10)', () => {
  it('rejects Content-Length together with Transfer-Encoding', () => {
    expect(rejects(`POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`)).toMatch(
      /Content-Length and Transfer-Encoding/,
    );
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n`);
  });

  it.each([
    ['chunked,', 'chunked,'],
    ['chunked with a tab inside', 'chunked\t,'],
    ['chunked followed by a tab', 'chunked\t'],
    ['a list ending in chunked', 'gzip, chunked'],
    ['chunked then identity', 'chunked, identity'],
    ['an unknown coding', 'xyz'],
    ['identity alone', 'identity'],
    ['chunked with a parameter', 'chunked;q=1'],
    ['a leading comma', ', chunked'],
    ['a quoted chunked', '"chunked"'],
    ['a vertical tab', 'chunked\x0b'],
  ])('rejects Transfer-Encoding: %s', (_name, value) => {
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: ${value}\r\n\r\n0\r\n\r\n`);
  });

  it('rejects two Transfer-Encoding fields, and any on HTTP/1.0', () => {
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
    rejects(`POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
  });

  it.each([
    ['duplicate, same value', 'Content-Length: 3\r\nContent-Length: 3'],
    ['duplicate, different', 'Content-Length: 3\r\nContent-Length: 4'],
    ['a list', 'Content-Length: 3, 3'],
    ['a plus sign', 'Content-Length: +3'],
    ['a minus sign', 'Content-Length: -3'],
    ['hex', 'Content-Length: 0x3'],
    ['inner space', 'Content-Length: 1 0'],
    ['empty', 'Content-Length: '],
    ['too many digits', 'Content-Length: 1234567890123456'],
  ])('rejects Content-Length %s', (_name, fields) => {
    rejects(`POST / HTTP/1.1\r\n${H}${fields}\r\n\r\nabc`);
  });

  it('rejects obs-fold in headers and trailers', () => {
    expect(rejects(`GET / HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n`)).toMatch(/folding/);
    expect(rejects(`GET / HTTP/1.1\r\n${H}X-A: b\r\n\tc\r\n\r\n`)).toMatch(/folding/);
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n\r\n`);
  });

  it('rejects a header line that starts the section with whitespace (hidden first field)', () => {
    rejects(`GET / HTTP/1.1\r\n Transfer-Encoding: chunked\r\n${H}\r\n`);
  });

  it('rejects bare LF and bare CR', () => {
    expect(rejects(`GET / HTTP/1.1\n${H}\r\n`)).toMatch(/bare LF/);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: b\n\r\n`);
    rejects(`GET / HTTP/1.1\r\n${H}X-A: b\rc\r\n\r\n`);
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n`);
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n`);
  });

  it.each([
    ['whitespace before the colon', 'Transfer-Encoding : chunked'],
    ['no colon', 'Garbage'],
    ['empty name', ': x'],
    ['a space in the name', 'X A: b'],
    ['NUL in the value', 'X-A: a\x00b'],
    ['DEL in the value', 'X-A: a\x7fb'],
  ])('rejects a field line with %s', (_name, line) => {
    rejects(`GET / HTTP/1.1\r\n${H}${line}\r\n\r\n`);
  });

  it.each([
    ['0x prefix', '0x3'],
    ['a sign', '+3'],
    ['leading space', ' 3'],
    ['empty size', ''],
    ['non-hex', 'g'],
    ['17 hex digits', '00000000000000003'],
    ['a bare semicolon', '3;'],
    ['an extension without a name', '3;=x'],
    ['an unterminated quoted extension', '3;a="x'],
    ['garbage after the size', '3 x'],
  ])('rejects a chunk size line with %s', (_name, line) => {
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${line}\r\nabc\r\n0\r\n\r\n`);
  });

  it('rejects chunk data longer than its size (no CRLF where one must be)', () => {
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n`);
    rejects(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n`);
  });

  it('rejects a missing or repeated Host on HTTP/1.1', () => {
    expect(rejects('GET / HTTP/1.1\r\n\r\n')).toMatch(/missing Host/);
    expect(rejects(`GET / HTTP/1.1\r\n${H}Host: evil.example\r\n\r\n`)).toMatch(/more than one Host/);
  });

  it('rejects malformed request lines and unknown versions', () => {
    rejects(`GET  / HTTP/1.1\r\n${H}\r\n`);
    rejects(`GET / HTTP/1.1 \r\n${H}\r\n`);
    rejects(`GET /a b HTTP/1.1\r\n${H}\r\n`);
    rejects(`GET /#frag HTTP/1.1\r\n${H}\r\n`);
    rejects(`G(T / HTTP/1.1\r\n${H}\r\n`);
    rejects(`GET / http/1.1\r\n${H}\r\n`);
    rejects(`GET / HTTP/1.2\r\n${H}\r\n`, 505);
    rejects(`GET / HTTP/2.0\r\n${H}\r\n`, 505);
    rejects(`GET /\xe9 HTTP/1.1\r\n${H}\r\n`);
  });

  it('rejects an expectation other than 100-continue with 417', () => {
    rejects(`GET / HTTP/1.1\r\n${H}Expect: something\r\n\r\n`, 417);
  });

  it('rejects CONNECT with content', () => {
    rejects('CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nContent-Length: 3\r\n\r\nabc');
  });

  it('enforces size limits: long request line 414, large header section and many fields 431', () => {
    rejects(`GET /${'a'.repeat(20_000)} HTTP/1.1\r\n${H}\r\n`, 414);
    rejects(`GET / HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(70_000)}\r\n\r\n`, 431);
    rejects(`GET / HTTP/1.1\r\n${H}${'X-A: b\r\n'.repeat(300)}\r\n`, 431);
    // Without a line end the parser must give up instead of buffering forever.
    const p = new Http1RequestParser();
    p.feed(Buffer.alloc(20_000, 0x61));
    expect(p.next()).toMatchObject({ type: 'error', status: 414 });
  });

  it('after an error the parser is dead: later bytes produce nothing', () => {
    const p = new Http1RequestParser();
    p.feed(Buffer.from(`GET / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 1\r\n\r\nx`));
    expect(p.next()?.type).toBe('error');
    p.feed(Buffer.from(`GET / HTTP/1.1\r\n${H}\r\n`));
    expect(p.next()).toBeNull();
    expect(p.failed).toBe(true);
  });
});

describe('strict HTTP/1.1 request parser — properties', () => {
  it('chunked framing round-trips any body cut into any chunks at any packet boundary', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { maxLength: 6 }),
        fc.integer({ min: 1, max: 23 }),
        (chunks, step) => {
          const body = Buffer.concat(chunks.map((c) => Buffer.from(c)));
          const wire = Buffer.concat([
            Buffer.from(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`),
            ...chunks.map((c) => Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), Buffer.from(c), Buffer.from('\r\n')])),
            Buffer.from('0\r\n\r\n'),
          ]);
          const r = parse(wire, step);
          expect(r.error).toBeUndefined();
          expect(r.bodies).toEqual([body.toString('latin1')]);
        },
      ),
    );
  });

  it('a head buffered whole (read in one pass) parses exactly as one fed byte by byte (read line by line)', () => {
    // Heads built from the bytes that matter to line and field parsing, so
    // bare CR/LF, obs-fold, empty lines, colons and bad characters are common.
    const piece = fc.constantFrom('\r\n', '\r', '\n', ' ', '\t', ':', 'Host: a.example', 'Content-Length: 3', 'Transfer-Encoding: chunked', 'X-A', 'b', '\x00', '\xff', 'GET / HTTP/1.1');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 24 }), fc.constantFrom('GET / HTTP/1.1\r\n', '\r\nGET / HTTP/1.1\r\n', 'GET / HTTP/1.0\r\n', ''), (pieces, start) => {
        // What is accepted, what it means, the status and the reason: all the same whatever the packet boundaries.
        const same = (a: unknown, b: unknown) => expect(JSON.stringify(a)).toEqual(JSON.stringify(b));
        const raw = `${start}${pieces.join('')}\r\n\r\nabc`;
        same(parse(raw), parse(raw, 1));
        const responses = `HTTP/1.1 200 OK\r\n${pieces.join('')}\r\n\r\n`;
        same(parseResponses(responses, ['GET'], { close: true }), parseResponses(responses, ['GET'], { close: true, step: 1 }));
      }),
      { numRuns: 2000 },
    );
  });

  it('a bare CR near the request-line limit gets the same answer whole or byte by byte', () => {
    const max = 16 * 1024;
    for (const at of [max - 2, max - 1, max, max + 1]) {
      const line = `GET /${'a'.repeat(at - 5)}\rb HTTP/1.1\r\n`; // the CR at offset `at`
      expect(line.indexOf('\r')).toBe(at);
      rejects(`${line}${H}\r\n`, at >= max ? 414 : 400);
    }
    expect(rejects(`GET /a\rb\nc HTTP/1.1\r\n${H}\r\n`)).toBe('bare CR in message');
    expect(rejects(`GET /a\nb\rc HTTP/1.1\r\n${H}\r\n`)).toMatch(/^bare LF/);
  });

  it('a head over the limits is refused the same whole or byte by byte', () => {
    const longLine = `GET /${'a'.repeat(16 * 1024)} HTTP/1.1\r\n${H}\r\n`;
    expect(rejects(longLine, 414)).toMatch(/too long/);
    const manyFields = `GET / HTTP/1.1\r\n${H}${'X-A: b\r\n'.repeat(256)}\r\n`;
    expect(rejects(manyFields, 431)).toMatch(/too many/);
    const bigHead = `GET / HTTP/1.1\r\n${H}X-A: ${'b'.repeat(64 * 1024 - 45)}\r\n\r\n`;
    rejects(bigHead, 431);
  });

  it('never throws on arbitrary bytes; either events or one error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 50 }), (bytes, step) => {
        const prefix = Buffer.from(`POST / HTTP/1.1\r\n${H}`);
        const r = parse(Buffer.concat([prefix, Buffer.from(bytes)]), step);
        if (r.error) expect([400, 413, 414, 417, 431, 505]).toContain(r.error.status);
      }),
    );
  });
});

// ───────────────────────────── responses ─────────────────────────────


/**
 * Feed responses to the requests `methods` (one response each, in order),
 * `step` bytes at a time, then the close when `close` is set.
 */
function parseResponses(raw: string, methods: string[], opts: { step?: number; close?: boolean; upgrade?: boolean } = {}): Omit<Collected<ResponseHead>, 'error'> & { error?: string } {
  const bytes = Buffer.from(raw, 'latin1');
  const p = new Http1ResponseParser();
  const { out, drain } = collector(p);
  let m = 0;
  p.expect(methods[0]!, { upgrade: opts.upgrade ?? false });
  const next = () => {
    if (++m < methods.length) p.expect(methods[m]!);
  };
  const step = Math.max(1, opts.step || bytes.length);
  for (let i = 0; i < bytes.length && !out.error; i += step) {
    p.feed(bytes.subarray(i, i + step));
    drain(next);
  }
  if (opts.close && !out.error) {
    p.feedEnd();
    drain(next);
  }
  return { ...out, error: out.error?.reason };
}

describe('Http1ResponseParser', () => {
  it('reads Content-Length, chunked (with trailers) and keep-alive responses in sequence, byte by byte or whole', () => {
    const raw =
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello' +
      'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Sum: 9\r\n\r\n' +
      'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n';
    for (const step of [0, 1, 7]) {
      const r = parseResponses(raw, ['GET', 'POST', 'GET'], { step });
      expect(r.error).toBeUndefined();
      expect(r.heads.map((h) => [h.status, h.reason, h.framing.kind, h.keepAlive])).toEqual([
        [200, 'OK', 'length', true],
        [201, 'Created', 'chunked', true],
        [404, 'Not Found', 'none', true],
      ]);
      expect(r.bodies).toEqual(['hello', 'abcde', '']);
      expect(r.trailers[1]).toEqual(['X-Sum: 9']);
    }
  });

  it('no body after HEAD, 204, 304 whatever the fields say; the next response follows at once', () => {
    const raw = 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' + 'HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n' + 'HTTP/1.1 304 Not Modified\r\n\r\n';
    const r = parseResponses(raw, ['HEAD', 'DELETE', 'GET']);
    expect(r.error).toBeUndefined();
    expect(r.heads.map((h) => h.status)).toEqual([200, 204, 304]);
    expect(r.bodies).toEqual(['', '', '']);
  });

  it('interim 1xx responses are skipped; a 101 is a head only for an upgrade request', () => {
    const r = parseResponses('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', ['POST']);
    expect(r.heads.map((h) => h.status)).toEqual([200]);
    expect(r.bodies).toEqual(['ok']);
    const up = parseResponses('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n', ['GET'], { upgrade: true });
    expect(up.heads.map((h) => [h.status, h.keepAlive])).toEqual([[101, false]]);
    expect(parseResponses('HTTP/1.1 101 Switching Protocols\r\n\r\n', ['GET']).error).toMatch(/asked for no upgrade/);
  });

  it('a body delimited by the close ends with it, and the connection is not reusable', () => {
    const r = parseResponses('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed until the end', ['GET'], { step: 4, close: true });
    expect(r.error).toBeUndefined();
    expect(r.heads[0]).toMatchObject({ framing: { kind: 'close' }, keepAlive: false });
    expect(r.bodies).toEqual(['streamed until the end']);
  });

  it('Connection: close and HTTP/1.0 make the connection single-use', () => {
    expect(parseResponses('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n', ['GET']).heads[0]!.keepAlive).toBe(false);
    expect(parseResponses('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n', ['GET']).heads[0]!.keepAlive).toBe(false);
  });

  it.each([
    ['Content-Length with Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', /ambiguous framing/],
    ['two Content-Length fields', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc', /more than one Content-Length/],
    ['a transfer coding besides chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', /Transfer-Encoding/],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n', /line folding/],
    ['a malformed status line', 'HTTP/1.1 20 OK\r\n\r\n', /malformed status line/],
    ['HTTP/2 on an HTTP/1.1 connection', 'HTTP/2 200\r\n\r\n', /malformed status line/],
    ['bare LF', 'HTTP/1.1 200 OK\nContent-Length: 0\n\n', /bare LF/],
    ['a chunk longer than its size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n0\r\n\r\n', /CRLF/],
  ])('refused: %s', (_name, raw, reason) => {
    expect(parseResponses(raw, ['GET']).error).toMatch(reason);
  });

  it('a connection closed in the middle of a response is an error, not a short body', () => {
    expect(parseResponses('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc', ['GET'], { close: true }).error).toMatch(/closed in the middle of the response/);
    expect(parseResponses('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n', ['GET'], { close: true }).error).toMatch(/closed in the middle/);
    expect(parseResponses('HTTP/1.1 200 OK\r\nContent-', ['GET'], { close: true }).error).toMatch(/closed in the middle/);
  });

  it('property: any split of a valid response sequence gives the same heads, bodies and trailers', () => {
    const raw =
      'HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world' +
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nA: 1\r\nB: 2\r\n\r\n';
    const whole = parseResponses(raw, ['GET', 'GET']);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: raw.length }), (step) => {
        const r = parseResponses(raw, ['GET', 'GET'], { step });
        expect(r.bodies).toEqual(whole.bodies);
        expect(r.trailers).toEqual(whole.trailers);
        expect(r.heads.map((h) => h.status)).toEqual([200, 200]);
      }),
    );
  });
});
