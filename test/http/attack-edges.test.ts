/**
 * Adversarial edges of the HTTP engine that the other suites do not cover:
 * what an agent under prompt injection (or an upstream that reflects what it
 * got) can try against the real gateway with real curl and node:http2.
 *
 * - the secret reflected as a response header or trailer *name*, in a
 *   compressed body (scrubbing reads the bytes as sent), in an interim 1xx;
 * - HTTP/2 requests the HTTP/1.1 parser would refuse (`#` in `:path`), and
 *   cookies split across HTTP/2 fields on their way to an HTTP/1.1 upstream;
 * - JSON bodies in UTF-16/32, which servers decode and a UTF-8 reading
 *   turns into `{}`;
 * - lower-case methods, an HTTP/2 content-length the DATA frames contradict,
 *   an HTTP/2 header list past the limits.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import tls from 'node:tls';
import zlib from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CANARY, PLACEHOLDER, curl, rawExchange, startEnv, tlsToGateway, viaTunnel, type Env } from './support/env.js';
import { GATEWAY_IP, UPSTREAM_IP, lookupTo } from './support/gateway.js';

let env: Env;
/** An upstream of endpoint `api` (HTTP/2 and HTTP/1.1) that reflects the credential where scrubbing might not look. */
let reflector: http2.Http2SecureServer;
let port = 0;
/** What the reflector received (its accept-encoding, cookies, url). */
const seen: Array<{ url: string; headers: http2.IncomingHttpHeaders; rawHeaders: string[] }> = [];
/** An HTTP/1.1 upstream of endpoint `api` written byte for byte: interim responses, one-byte chunks. */
let rawUpstream: tls.Server;
let rawPort = 0;

/** Answers each request head it reads with the bytes `/early` or `/bytes` call for, quoting the bearer token. */
function serveRaw(socket: tls.TLSSocket): void {
  let head = '';
  socket.on('error', () => undefined);
  socket.on('data', (d: Buffer) => {
    head += d.toString('latin1');
    if (!head.includes('\r\n\r\n')) return;
    const token = /authorization: Bearer (\S+)/i.exec(head)?.[1] ?? '';
    const path = head.split(' ')[1];
    head = '';
    if (path === '/early') {
      socket.write(`HTTP/1.1 103 Early Hints\r\nlink: </${token}.css>; rel=preload\r\nx-${token}: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n`);
      return;
    }
    void (async () => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n');
      for (const ch of `data: ${token} end\n\n`) {
        socket.write(`1\r\n${ch}\r\n`);
        await new Promise((r) => setTimeout(r, 2));
      }
      socket.write('0\r\n\r\n');
    })();
  });
}

beforeAll(async () => {
  env = await startEnv();
  reflector = http2.createSecureServer({ cert: env.pki.serverCertPem, key: env.pki.serverKeyPem, allowHTTP1: true }, (req, res) => {
    seen.push({ url: req.url, headers: req.headers, rawHeaders: req.rawHeaders });
    const token = String(req.headers['authorization'] ?? '').replace(/^Bearer /, '');
    if (req.url === '/name') {
      res.setHeader(`x-${token}`, 'reflected');
      res.addTrailers({ [`x-t-${token}`]: 'reflected' });
      res.write('ok');
      res.end();
    } else if (req.url === '/gzip-if-asked') {
      // Like real servers: compress only when the client accepts gzip.
      const page = `<html>invalid token ${token}</html>`;
      res.statusCode = 401;
      if (/gzip/.test(String(req.headers['accept-encoding'] ?? ''))) {
        res.setHeader('content-encoding', 'gzip');
        res.end(zlib.gzipSync(page));
      } else {
        res.end(page);
      }
    } else if (req.url === '/gzip-always' || req.url === '/zstd-always') {
      // Compressed whatever the client accepts (pre-compressed files, misconfigured servers).
      const zstd = req.url === '/zstd-always';
      res.statusCode = 401;
      res.setHeader('content-encoding', zstd ? 'zstd' : 'gzip');
      res.end(zstd ? Buffer.from(`not really zstd ${token}`) : zlib.gzipSync(`<html>invalid token ${token}</html>`));
    } else {
      res.end('ok');
    }
  });
  await new Promise<void>((r) => reflector.listen(0, UPSTREAM_IP, r));
  port = (reflector.address() as AddressInfo).port;
  await env.gw.tlsIngress(port);
  rawUpstream = tls.createServer({ cert: env.pki.serverCertPem, key: env.pki.serverKeyPem, ALPNProtocols: ['http/1.1'] }, serveRaw);
  await new Promise<void>((r) => rawUpstream.listen(0, UPSTREAM_IP, r));
  rawPort = (rawUpstream.address() as AddressInfo).port;
  await env.gw.tlsIngress(rawPort);
});
afterAll(async () => {
  rawUpstream?.close();
  await new Promise<void>((r) => {
    reflector?.close(() => r());
    // Gateway sessions to the reflector end with the gateway.
    void env?.close();
  });
});

interface H2Answer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: string;
  rstCode: number;
}

/** One HTTP/2 request on its own session through the TLS ingress, everything the agent receives collected. */
async function h2Request(host: string, hostPort: number, headers: http2.OutgoingHttpHeaders, body?: string): Promise<H2Answer> {
  const session = http2.connect(`https://${host}:${hostPort}`, { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP) } as http2.SecureClientSessionOptions);
  session.on('error', () => undefined);
  try {
    return await new Promise<H2Answer>((resolve) => {
      const stream = session.request(headers, { endStream: body === undefined });
      const out: H2Answer = { headers: {}, trailers: {}, body: '', rstCode: 0 };
      stream.setEncoding('latin1');
      stream.on('response', (h) => (out.headers = h));
      stream.on('trailers', (t) => (out.trailers = t));
      stream.on('data', (d: string) => (out.body += d));
      stream.on('error', () => undefined);
      stream.on('close', () => resolve({ ...out, rstCode: stream.rstCode ?? 0 }));
      if (body !== undefined) stream.end(body);
    });
  } finally {
    session.destroy();
  }
}

describe('the secret reflected where a value scrubber does not look', () => {
  it.each(['--http1.1', '--http2'] as const)('as a response header name (%s): the field is dropped', async (proto) => {
    const r = await curl([...viaTunnel(env, 'api.test', port), proto, '-i', '-H', `Authorization: Bearer ${PLACEHOLDER}`, `https://api.test:${port}/name`]);
    // The upstream did get the real token (and reflected it).
    expect(seen.at(-1)!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    expect(r.stdout).toMatch(/ 200/);
    expect(r.stdout).not.toContain(CANARY);
    expect(r.stdout).not.toMatch(/: reflected/);
  });

  it('as a trailer name over HTTP/2 end to end: the trailer is dropped', async () => {
    const a = await h2Request('api.test', port, { ':path': '/name', authorization: `Bearer ${PLACEHOLDER}` });
    expect(a.headers[':status']).toBe(200);
    expect(a.body).toBe('ok');
    expect(JSON.stringify([a.headers, a.trailers])).not.toContain(CANARY);
    expect(Object.values(a.trailers)).not.toContain('reflected');
  });

  it('in a gzip-compressed 401 page: the gateway asks the upstream for identity, so the page is scrubbed', async () => {
    const r = await curl([...viaTunnel(env, 'api.test', port), '--compressed', '-i', '-H', `Authorization: Bearer ${PLACEHOLDER}`, `https://api.test:${port}/gzip-if-asked`]);
    expect(seen.at(-1)!.headers['accept-encoding']).toBe('identity');
    expect(r.stdout).toMatch(/ 401/);
    expect(r.stdout).toContain('invalid token ****');
    expect(r.stdout).not.toContain(CANARY);
  });

  it.each(['--http1.1', '--http2'] as const)('in a body compressed although identity was asked for (%s): decoded, scrubbed, sent uncompressed', async (proto) => {
    const r = await curl([...viaTunnel(env, 'api.test', port), proto, '-i', '-H', 'accept-encoding: gzip', '-H', `Authorization: Bearer ${PLACEHOLDER}`, `https://api.test:${port}/gzip-always`]);
    expect(r.stdout).toMatch(/ 401/);
    expect(r.stdout).not.toMatch(/content-encoding/i);
    expect(r.stdout).toContain('<html>invalid token ****');
    expect(r.stdout).not.toContain(CANARY);
  });

  it('in a content coding the gateway cannot decode: 502 with the reason, the body never reaches the agent', async () => {
    const r = await curl([...viaTunnel(env, 'api.test', port), '-i', '-H', `Authorization: Bearer ${PLACEHOLDER}`, `https://api.test:${port}/zstd-always`]);
    expect(r.stdout).toMatch(/ 502/);
    expect(r.stdout).toContain('content coding the gateway cannot decode (zstd)');
    expect(r.stdout).not.toContain('not really zstd');
  });

  it.each(['--http1.1', '--http2'] as const)('in a 103 Early Hints, and one byte per chunk (%s): never reaches the agent', async (proto) => {
    const args = [...viaTunnel(env, 'api.test', rawPort), proto, '-i', '-H', `Authorization: Bearer ${PLACEHOLDER}`];
    const early = await curl([...args, `https://api.test:${rawPort}/early`]);
    expect(early.stdout).toMatch(/ 204/);
    expect(early.stdout).not.toContain(CANARY);
    const bytes = await curl([...args, '-N', `https://api.test:${rawPort}/bytes`]);
    expect(bytes.stdout).toContain(`data: ${'*'.repeat(CANARY.length)} end`);
    expect(bytes.stdout).not.toContain(CANARY);
  });
});

describe('HTTP/2 requests translated for an HTTP/1.1 world', () => {
  it('`#` in :path is refused as HTTP/1.1 refuses it: POST /v1/refunds#x cannot skip the approval rule', async () => {
    const before = env.api.seen.length;
    const a = await h2Request('api.test', env.api.port, { ':method': 'POST', ':path': '/v1/refunds#x', 'content-length': '0' }, '');
    expect(a.headers[':status']).toBe(400);
    expect(a.body).toContain('invalid request-target');
    expect(env.api.seen.length).toBe(before);
    expect(env.gw.approvals.pending.length).toBe(0);
  });

  it('cookies split across HTTP/2 fields reach an HTTP/1.1 upstream as one field joined with "; "', async () => {
    const a = await h2Request('api.test', env.api.port, { ':path': '/v1/items', cookie: ['a=1', 'b=2'] });
    expect(a.headers[':status']).toBe(200);
    const raw = env.api.seen.at(-1)!.rawHeaders;
    const cookies = raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'cookie');
    expect(cookies).toEqual(['a=1; b=2']);
  });

  it('a header list past the limits (an HPACK bomb of 100 × 8 KB fields) refuses that stream and never reaches the upstream', async () => {
    const session = http2.connect(`https://api.test:${env.api.port}`, { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP), maxHeaderListPairs: 1000 } as http2.SecureClientSessionOptions);
    session.on('error', () => undefined);
    const bomb: http2.OutgoingHttpHeaders = { ':path': '/v1/bomb' };
    for (let i = 0; i < 100; i++) bomb[`x-h${i}`] = 'a'.repeat(8000);
    try {
      const rst = await new Promise<number>((resolve) => {
        const s = session.request(bomb);
        s.on('response', () => resolve(-1));
        s.on('error', () => undefined);
        s.on('close', () => resolve(s.rstCode ?? 0));
      });
      expect(rst).toBe(http2.constants.NGHTTP2_REFUSED_STREAM);
    } finally {
      session.destroy();
    }
    expect(env.api.seen.some((s) => s.url === '/v1/bomb')).toBe(false);
    // The gateway is unharmed: the next connection is served.
    const after = await h2Request('api.test', env.api.port, { ':path': '/v1/after-bomb' });
    expect(after.headers[':status']).toBe(200);
  });

  it('a content-length the DATA frames contradict resets the stream; the upstream never sees a complete request', async () => {
    const before = env.api.seen.length;
    const a = await h2Request('api.test', env.api.port, { ':method': 'POST', ':path': '/v1/items', 'content-length': '100' }, 'short');
    expect(a.headers[':status']).toBeUndefined();
    expect(a.rstCode).toBe(http2.constants.NGHTTP2_PROTOCOL_ERROR);
    expect(env.api.seen.slice(before).filter((s) => s.complete)).toEqual([]);
  });
});

describe('JSON bodies in encodings other than UTF-8 (rule: has(http.body_json.model) && … == "claude-forbidden")', () => {
  const forbidden = '{"model":"claude-forbidden","max_tokens":1}';
  const send = async (bytes: Buffer, contentType: string) => {
    const file = join(env.dir, 'body.bin');
    writeFileSync(file, bytes);
    const r = await curl([...viaTunnel(env, 'anthropic.test', env.api.port), '-i', '-H', `content-type: ${contentType}`, '--data-binary', `@${file}`, `https://anthropic.test:${env.api.port}/v1/messages`]);
    return r.stdout;
  };
  const utf16be = (s: string) => Buffer.from(s, 'utf16le').swap16();

  it.each([
    ['UTF-16LE with a BOM', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(forbidden, 'utf16le')]), 'application/json'],
    ['UTF-16BE with a BOM', Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(forbidden)]), 'application/json'],
    ['charset=utf-16le, no BOM', Buffer.from(forbidden, 'utf16le'), 'application/json; charset=utf-16le'],
    ['charset="UTF-16BE", no BOM', utf16be(forbidden), 'application/json; charset="UTF-16BE"'],
  ])('%s is decoded: the rule sees the model and denies', async (_name, bytes, type) => {
    const before = env.api.seen.length;
    const out = await send(bytes, type);
    expect(out).toMatch(/ 403/);
    expect(out).toContain('that model is not allowed');
    expect(env.api.seen.length).toBe(before);
  });

  it.each([
    ['charset=utf-16 without a BOM (byte order guessed differently by servers)', Buffer.from(forbidden, 'utf16le'), 'application/json; charset=utf-16'],
    ['UTF-32 with a BOM', Buffer.concat([Buffer.from([0xff, 0xfe, 0, 0]), Buffer.from([...forbidden].flatMap((c) => [c.charCodeAt(0), 0, 0, 0]))]), 'application/json'],
  ])('%s cannot be read: unknown, the rule fails closed', async (_name, bytes, type) => {
    const before = env.api.seen.length;
    const out = await send(bytes, type);
    expect(out).toMatch(/ 403/);
    expect(env.api.seen.length).toBe(before);
  });

  it('plain UTF-8 with an allowed model still passes', async () => {
    const out = await send(Buffer.from('{"model":"claude-ok"}'), 'application/json; charset=utf-8');
    expect(out).toMatch(/ 200/);
  });
});

describe('method spelling', () => {
  it('a lower-case method is still the method the rule names (post /v1/transfers is denied)', async () => {
    const before = env.api.seen.length;
    const body = '{"amount":5000}';
    const out = await rawExchange(
      () => tlsToGateway(env, 'api.test', env.api.port),
      `post /v1/transfers HTTP/1.1\r\nHost: api.test:${env.api.port}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(out).toMatch(/^HTTP\/1\.1 403/);
    expect(out).toContain('transfers over 1000 are not allowed');
    expect(env.api.seen.length).toBe(before);
  });
});
