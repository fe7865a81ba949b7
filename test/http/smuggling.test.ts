/**
 * threats.md class 10 — request smuggling, sent as raw bytes over a real TLS
 * connection to the gateway (and over the proxy listener): ambiguous framing
 * is refused with 400 and the connection closed; nothing reaches the
 * upstream; what does go upstream is framed by the gateway.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { PLACEHOLDER, CANARY, rawExchange, startEnv, tlsToGateway, type Env } from './support/env.js';
import { GATEWAY_IP } from './support/gateway.js';

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env?.close();
});

const host = () => `api.test:${env.api.port}`;
const overTls = (bytes: string, ms?: number) => rawExchange(() => tlsToGateway(env, 'api.test', env.api.port), bytes, ms);
const overProxy = (bytes: string) => rawExchange(() => net.connect(env.gw.proxyPort, '127.0.0.1'), bytes);

/** Status lines of every response in a raw byte stream (bodies need not end in CRLF). */
function statusLines(out: string): string[] {
  return [...out.matchAll(/HTTP\/1\.1 \d{3} [A-Za-z -]+/g)].map((m) => m[0]);
}

const smuggles: Array<[string, (h: string) => string]> = [
  ['Content-Length with Transfer-Encoding', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: ${h}\r\n\r\n`],
  ['Transfer-Encoding: chunked,', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: ${h}\r\n\r\n`],
  ['Transfer-Encoding: chunked<TAB>', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: ${h}\r\n\r\n`],
  ['Transfer-Encoding: xchunked', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\nabcd`],
  ['gzip, chunked', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`],
  ['duplicate Content-Length', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: ${h}\r\n\r\n`],
  ['Content-Length list', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 0, 44\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: ${h}\r\n\r\n`],
  ['obs-fold hiding Transfer-Encoding', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nX-Pad: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`],
  ['space before the colon', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`],
  ['bare LF line ends', (h) => `GET /v1/items HTTP/1.1\nHost: ${h}\n\n`],
  ['bad chunk size', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n`],
  ['chunk longer than its size', (h) => `POST /v1/items HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nhello\r\n0\r\n\r\n`],
  ['two Host headers', (h) => `GET /v1/items HTTP/1.1\r\nHost: ${h}\r\nHost: evil.test\r\n\r\n`],
  ['Transfer-Encoding on HTTP/1.0', (h) => `POST /v1/items HTTP/1.0\r\nHost: ${h}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
];

describe('request smuggling through the TLS ingress', () => {
  it.each(smuggles)('%s → 400, connection closed, nothing forwarded, refusal audited', async (_name, build) => {
    const seenBefore = env.api.seen.length;
    const recordsBefore = env.gw.audit.records.length;
    const out = await overTls(build(host()));
    expect(statusLines(out)).toEqual([expect.stringMatching(/^HTTP\/1\.1 400 /)]);
    expect(out).toContain('connection: close');
    expect(env.api.seen.length).toBe(seenBefore);
    const reason = /clawpatrol: (.*)\n/.exec(out)?.[1];
    const rec = await env.gw.audit.waitForRecord((r) => env.gw.audit.records.indexOf(r) >= recordsBefore && r.status === '400');
    expect(rec).toMatchObject({ peer: 'test-agent', host: 'api.test', family: 'http', verdict: 'deny', outcome: 'deny', rule: '', failClosed: true, reason });
  });

  it('also on the proxy listener (absolute-form)', async () => {
    const seenBefore = env.plain.seen.length;
    const h = `plain.test:${env.plain.port}`;
    const out = await overProxy(
      `POST http://${h}/v1/items HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://${h}/admin HTTP/1.1\r\nHost: ${h}\r\n\r\n`,
    );
    expect(statusLines(out)).toEqual([expect.stringMatching(/^HTTP\/1\.1 400 /)]);
    expect(env.plain.seen.length).toBe(seenBefore);
  });
});

describe('re-framing', () => {
  it('a chunked request is forwarded with the gateway’s own framing, body intact, and a pipelined request after it is a separate request', async () => {
    const seenBefore = env.api.seen.length;
    const body = 'GET /admin/x HTTP/1.1\r\nHost: api.test\r\n\r\n';
    const chunked = `${body.length.toString(16)};ext=1\r\n${body}\r\n0\r\nX-Trailer: t\r\n\r\n`;
    const out = await overTls(
      `POST /v1/items HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer ${PLACEHOLDER}\r\n\r\n${chunked}` +
        `GET /v1/second HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`,
    );
    expect(statusLines(out)).toEqual([expect.stringMatching(/ 200 /), expect.stringMatching(/ 200 /)]);
    const seen = env.api.seen.slice(seenBefore);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['POST /v1/items', 'GET /v1/second']);
    expect(seen[0]!.body.toString()).toBe(body);
    // One framing header, written by the gateway; the agent's trailer follows the body as a trailer, never as a header.
    const framing = seen[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase()).filter((n) => n === 'transfer-encoding' || n === 'content-length');
    expect(framing).toHaveLength(1);
    expect(JSON.stringify(seen[0]!.rawHeaders)).not.toMatch(/x-trailer/i);
    expect(seen[0]!.trailers).toEqual({ 'x-trailer': 't' });
    expect(seen[0]!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    expect(env.api.seen.some((s) => s.url === '/admin/x')).toBe(false);
  });

  it('a chunked body on GET and DELETE reaches the upstream as that request\'s body, never as a request of its own', async () => {
    for (const method of ['GET', 'DELETE']) {
      const seenBefore = env.api.seen.length;
      const body = `GET /admin/smuggled-${method} HTTP/1.1\r\nHost: api.test\r\n\r\n`;
      const out = await overTls(
        `${method} /v1/things HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      );
      expect(statusLines(out)).toEqual([expect.stringMatching(/ 200 /)]);
      const seen = env.api.seen.slice(seenBefore);
      expect(seen.map((s) => `${s.method} ${s.url} ${s.body.toString()}`)).toEqual([`${method} /v1/things ${body}`]);
    }
    expect(env.api.seen.some((s) => s.url.startsWith('/admin/smuggled'))).toBe(false);
  });

  it('request trailers that could override the decision (credentials, framing, routing) refuse the request with the reason', async () => {
    const seenBefore = env.api.seen.length;
    const recordsBefore = env.gw.audit.records.length;
    const out = await overTls(
      `POST /v1/items HTTP/1.1\r\nHost: ${host()}\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer ${PLACEHOLDER}\r\n\r\n4\r\ndata\r\n0\r\nAuthorization: Bearer agent-own-token\r\n\r\n`,
    );
    expect(statusLines(out)).toEqual([expect.stringMatching(/^HTTP\/1\.1 400 /)]);
    expect(out).toContain('request trailer "Authorization" is not accepted');
    // The upstream saw the body start but never a complete request.
    expect(env.api.seen.length).toBe(seenBefore);
    const rec = await env.gw.audit.waitForRecord((r) => env.gw.audit.records.indexOf(r) >= recordsBefore && r.status === '400');
    expect(rec).toMatchObject({ host: 'api.test', outcome: 'allow' });
  });

  it('keep-alive: pipelined requests are answered in order on one connection', async () => {
    const out = await overTls(
      `GET /v1/a HTTP/1.1\r\nHost: ${host()}\r\n\r\nGET /admin/b HTTP/1.1\r\nHost: ${host()}\r\n\r\nGET /v1/c HTTP/1.1\r\nHost: ${host()}\r\nConnection: close\r\n\r\n`,
    );
    expect(statusLines(out).map((l) => l.split(' ')[1])).toEqual(['200', '403', '200']);
    expect(out.indexOf('"/v1/a"')).toBeLessThan(out.indexOf('"/v1/c"'));
  });

  it('Expect: 100-continue is answered by the gateway before it reads the body', async () => {
    const sock = tlsToGateway(env, 'api.test', env.api.port);
    const got = await new Promise<string>((resolve) => {
      let out = '';
      sock.setEncoding('latin1');
      sock.once('secureConnect', () =>
        sock.write(`PUT /v1/items HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`),
      );
      sock.on('data', (d: string) => {
        out += d;
        if (out === 'HTTP/1.1 100 Continue\r\n\r\n') sock.write('hello');
      });
      sock.on('close', () => resolve(out));
    });
    expect(got.startsWith('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n')).toBe(true);
    expect(env.api.seen.at(-1)!.body.toString()).toBe('hello');
    // The upstream is not asked to send 100 itself.
    expect(env.api.seen.at(-1)!.headers['expect']).toBeUndefined();
  });

  it('a client that stops mid-body does not produce a forwarded request', async () => {
    const seenBefore = env.api.seen.length;
    await overTls(`POST /v1/transfers HTTP/1.1\r\nHost: ${host()}\r\nContent-Length: 100\r\n\r\n{"amount":`, 500);
    await new Promise((r) => setTimeout(r, 100));
    expect(env.api.seen.length).toBe(seenBefore);
  });
});

describe('h2c upgrade smuggling (an HTTP/1.1 `Upgrade: h2c` past the proxy)', () => {
  // A proxy that forwarded the upgrade would leave the agent talking HTTP/2
  // straight to the upstream, every later request unseen by the policy.
  const upgradeRequest = (h: string) =>
    `GET /v1/items HTTP/1.1\r\nHost: ${h}\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings, close\r\nAuthorization: Bearer ${PLACEHOLDER}\r\n\r\n`;

  it.each([
    ['the TLS ingress', () => overTls(upgradeRequest(host())), () => env.api],
    ['plain HTTP to a declared endpoint', () => rawExchange(() => net.connect(env.plain.port, GATEWAY_IP), upgradeRequest(`plain.test:${env.plain.port}`)), () => env.plain],
  ] as const)('over %s: an ordinary decided request, no upgrade reaches the upstream, no 101 comes back', async (_name, send, upstream) => {
    const before = upstream().seen.length;
    const out = await send();
    expect(statusLines(out)).toEqual([expect.stringMatching(/^HTTP\/1\.1 200 /)]);
    expect(out).not.toMatch(/ 101 /);
    const seen = upstream().seen.slice(before);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual(['GET /v1/items']);
    expect(seen[0]!.headers['upgrade']).toBeUndefined();
    expect(seen[0]!.headers['http2-settings']).toBeUndefined();
    expect(String(seen[0]!.headers['connection'] ?? '')).not.toMatch(/upgrade|http2-settings/i);
    expect(seen[0]!.headers['authorization']).toBe(`Bearer ${CANARY}`);
  });
});
