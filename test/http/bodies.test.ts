/**
 * threats.md class 13 — bodies: content encodings, chunked, multipart, JSON
 * as octet-stream, bodies on GET/DELETE, limits. Sent with undici through the
 * real TLS ingress; the original bytes are what the upstream receives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { createHash } from 'node:crypto';
import tls from 'node:tls';
import { Readable } from 'node:stream';
import http2 from 'node:http2';
import { Agent, request } from 'undici';
import { startEnv, type Env } from './support/env.js';
import { GATEWAY_IP, lookupTo } from './support/gateway.js';

let env: Env;
let agent: Agent;
beforeAll(async () => {
  env = await startEnv({ bodyBuffer: '64KiB' });
  agent = new Agent({ connect: { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP) } });
});
afterAll(async () => {
  await agent?.close();
  await env?.close();
});

async function send(
  method: string,
  path: string,
  body: Buffer | string | AsyncIterable<Buffer> | undefined,
  headers: Record<string, string> = {},
  host = 'api.test',
): Promise<{ status: number; text: string }> {
  const port = host === 'h2.test' ? env.h2.port : env.api.port;
  // An async iterable goes as a stream: undici sends it chunked.
  const payload = body === undefined || typeof body === 'string' || Buffer.isBuffer(body) ? body : Readable.from(body);
  const res = await request(`https://${host}:${port}${path}`, { method: method as 'POST', body: payload, headers, dispatcher: agent });
  return { status: res.statusCode, text: await res.body.text() };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

describe('content encodings are decoded for the rules, forwarded as sent', () => {
  it.each([
    ['gzip', (b: Buffer) => zlib.gzipSync(b)],
    ['deflate', (b: Buffer) => zlib.deflateSync(b)],
    ['br', (b: Buffer) => zlib.brotliCompressSync(b)],
    ['gzip, br', (b: Buffer) => zlib.brotliCompressSync(zlib.gzipSync(b))],
  ] as const)('%s: a hidden big transfer is denied, a small one passes byte for byte', async (enc, compress) => {
    const big = await send('POST', '/v1/transfers', compress(json({ amount: 5000 })), { 'content-encoding': enc, 'content-type': 'application/json' });
    expect(big.status).toBe(403);
    expect(big.text).toContain('transfers over 1000 are not allowed');
    const smallBytes = compress(json({ amount: 5 }));
    const small = await send('POST', '/v1/transfers', smallBytes, { 'content-encoding': enc, 'content-type': 'application/json' });
    expect(small.status).toBe(200);
    expect(JSON.parse(small.text).bodySha256).toBe(sha(smallBytes));
  });

  it('the audit record keeps the decoded body once (no body_json beside it)', async () => {
    await send('POST', '/v1/transfers', zlib.gzipSync(json({ amount: 4242 })), { 'content-encoding': 'gzip', 'content-type': 'application/json' });
    const rec = await env.gw.audit.waitForRecord((r) => (r.facts as { http?: { body?: string } }).http?.body === '{"amount":4242}');
    expect(rec?.outcome).toBe('deny');
    expect((rec?.facts as { http: Record<string, unknown> }).http).not.toHaveProperty('body_json');
  });

  it('a gzip bomb past the decode cap fails closed for the rule that reads the body', async () => {
    const bomb = zlib.gzipSync(Buffer.concat([Buffer.from('{"amount":1,"pad":"'), Buffer.alloc(8 * 1024 * 1024, 0x61), Buffer.from('"}')]));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const r = await send('POST', '/v1/transfers', bomb, { 'content-encoding': 'gzip' });
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/no-big-transfers|could not be evaluated|fail closed/);
  });

  it('an unknown content coding is unknown to the rules: fail closed', async () => {
    const r = await send('POST', '/v1/transfers', json({ amount: 5 }), { 'content-encoding': 'zstd' });
    expect(r.status).toBe(403);
  });
});

describe('framing and types', () => {
  it('chunked JSON is inspected like any other', async () => {
    async function* chunks() {
      yield Buffer.from('{"amo');
      yield Buffer.from('unt": 50');
      yield Buffer.from('00}');
    }
    const r = await send('POST', '/v1/transfers', chunks());
    expect(r.status).toBe(403);
  });

  it('JSON sent as application/octet-stream is still JSON to the rules', async () => {
    const r = await send('PUT', '/v1/transfers', json({ amount: 99999 }), { 'content-type': 'application/octet-stream' });
    expect(r.status).toBe(403);
  });

  it('duplicate JSON keys are ambiguous: fail closed', async () => {
    const r = await send('POST', '/v1/transfers', '{"amount":1,"amount":5000}', { 'content-type': 'application/json' });
    expect(r.status).toBe(403);
    expect(r.text).toContain('no-big-transfers');
  });

  it('multipart bodies are visible as text', async () => {
    const body = '--b\r\nContent-Disposition: form-data; name="mode"\r\n\r\npurge\r\n--b--\r\n';
    const r = await send('DELETE', '/v1/things', body, { 'content-type': 'multipart/form-data; boundary=b' });
    expect(r.status).toBe(403);
  });
});

describe('bodies on every method', () => {
  it('GET and DELETE bodies are read and decided on', async () => {
    expect((await send('GET', '/v1/things', 'please purge')).status).toBe(403);
    expect((await send('DELETE', '/v1/things', 'please purge')).status).toBe(403);
    const ok = await send('DELETE', '/v1/things', 'just one');
    expect(ok.status).toBe(200);
    expect(env.api.seen.at(-1)!.body.toString()).toBe('just one');
  });
});

describe('request trailers from an HTTP/2 agent', () => {
  /** POST with a trailer over HTTP/2 through the TLS ingress; resolves with the status. */
  async function postWithTrailer(host: string, port: number, trailer: Record<string, string>, headers: Record<string, string> = {}): Promise<number> {
    const session = http2.connect(`https://${host}:${port}`, { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP) } as http2.SecureClientSessionOptions);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/v1/items', ...headers }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers(trailer));
      stream.end('payload');
      const status = await new Promise<number>((resolve, reject) => {
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', reject);
      });
      stream.resume();
      await new Promise((r) => stream.on('close', r));
      return status;
    } finally {
      await new Promise<void>((r) => session.close(() => r()));
    }
  }

  it('are forwarded to an HTTP/2 upstream and, chunked, to an HTTP/1.1 upstream', async () => {
    expect(await postWithTrailer('h2.test', env.h2.port, { 'x-checksum': 'sha256=abc' })).toBe(200);
    expect(env.h2.seen.at(-1)).toMatchObject({ url: '/v1/items', trailers: { 'x-checksum': 'sha256=abc' } });
    expect(env.h2.seen.at(-1)!.body.toString()).toBe('payload');
    expect(await postWithTrailer('api.test', env.api.port, { 'x-checksum': 'sha256=def' })).toBe(200);
    expect(env.api.seen.at(-1)).toMatchObject({ url: '/v1/items', trailers: { 'x-checksum': 'sha256=def' } });
  });

  it('a credential trailer refuses the request (400)', async () => {
    const before = env.h2.seen.length;
    expect(await postWithTrailer('h2.test', env.h2.port, { authorization: 'Bearer agent-own' })).toBe(400);
    // The upstream's stream was reset: no complete request reached it.
    expect(env.h2.seen.slice(before).filter((s) => s.complete)).toEqual([]);
  });

  it('after a Content-Length body an HTTP/1.1 upstream cannot carry trailers: refused (400), never dropped', async () => {
    const before = env.api.seen.length;
    expect(await postWithTrailer('api.test', env.api.port, { 'x-checksum': 'sha256=abc' }, { 'content-length': '7' })).toBe(400);
    expect(env.api.seen.length).toBe(before);
  });
});

describe('large bodies on one keep-alive connection', () => {
  it('after an upload the agent connection stays open for the next request (the upstream answers as the last byte lands)', async () => {
    const sock = tls.connect({ host: GATEWAY_IP, port: env.api.port, servername: 'api.test', ca: env.gw.ca.caCertPem, ALPNProtocols: ['http/1.1'] });
    await new Promise((r) => sock.once('secureConnect', r));
    let got = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (got += d));
    const responses = async (n: number) => {
      const until = Date.now() + 10_000;
      while ((got.match(/HTTP\/1\.1 \d{3}/g) ?? []).length < n && !sock.destroyed && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      return (got.match(/HTTP\/1\.1 \d{3}/g) ?? []).length;
    };
    try {
      for (let i = 1; i <= 4; i++) {
        const payload = Buffer.alloc(2 * 1024 * 1024, 0x60 + i);
        sock.write(`POST /v1/uploads HTTP/1.1\r\nHost: api.test:${env.api.port}\r\nContent-Length: ${payload.length}\r\n\r\n`);
        sock.write(payload);
        expect(await responses(i)).toBe(i);
        expect(got).toContain(sha(payload));
      }
      expect(got).not.toContain('connection: close');
    } finally {
      sock.destroy();
    }
  });
});

describe('limits', () => {
  it('over limits.body_buffer: rules that read the body fail closed', async () => {
    const big = json({ amount: 5, pad: 'x'.repeat(100 * 1024) });
    const r = await send('POST', '/v1/transfers', big, { 'content-type': 'application/json' });
    expect(r.status).toBe(403);
    expect(r.text).toContain('no-big-transfers');
  });

  it('over the limit where no rule matches: forwarded whole (buffered prefix + stream)', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 0x42);
    const r = await send('POST', '/v1/upload', big);
    expect(r.status).toBe(200);
    const echoed = JSON.parse(r.text);
    expect(echoed.bodyLength).toBe(big.length);
    expect(echoed.bodySha256).toBe(sha(big));
  });

  it('an endpoint whose rules never read the body streams it without buffering', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 0x43);
    const r = await send('POST', '/v1/upload', big, {}, 'h2.test');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).bodySha256).toBe(sha(big));
    const rec = await env.gw.audit.waitForRecord((x) => x.endpoint === 'https.h2' && x.bytesIn > 2 * 1024 * 1024);
    expect((rec!.facts as { http: { body_truncated?: boolean } }).http.body_truncated).toBe(true);
  });
});

describe('keep-alive with large bodies', () => {
  it('many 1 MiB uploads on 4 kept-alive connections all succeed (the forwarder never hangs on drain)', async () => {
    const pool = new Agent({ connections: 4, connect: { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP) } });
    const big = Buffer.alloc(1024 * 1024, 0x44);
    const results = await Promise.all(
      Array.from({ length: 24 }, async () => {
        const res = await request(`https://h2.test:${env.h2.port}/upload`, { method: 'POST', body: big, dispatcher: pool });
        return { status: res.statusCode, sha: JSON.parse(await res.body.text()).bodySha256 as string };
      }),
    );
    expect(results.every((r) => r.status === 200 && r.sha === sha(big))).toBe(true);
    await pool.close();
  });
});

describe('refusing a body that is already on its way', () => {
  it('a 4 MiB upload denied before its body is read still gets a clean 403 (no reset)', async () => {
    const { curl, viaTunnel } = await import('./support/env.js');
    const file = `${env.dir}/big-upload.bin`;
    (await import('node:fs')).writeFileSync(file, Buffer.alloc(4 * 1024 * 1024, 0x45));
    for (let i = 0; i < 3; i++) {
      const r = await curl([...viaTunnel(env, 'h2.test', env.h2.port), '--http1.1', '-H', 'Expect:', '-i', '--data-binary', `@${file}`, `https://h2.test:${env.h2.port}/admin/upload`]);
      expect(r.stdout).toMatch(/^HTTP\/1\.1 403 /);
      expect(r.stdout).toContain('agents may not use the admin API');
    }
  });
});
