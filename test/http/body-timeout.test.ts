/**
 * threats.md (slow clients): an agent that stops sending in the middle of a
 * request body must not hold its connection, a buffered prefix or an
 * upstream request for ever. A body read that gets no bytes for the idle
 * limit is refused with 408, on HTTP/1.1 and HTTP/2, whether the body was
 * being read for a rule or streamed upstream; a slow body that keeps
 * sending is not cut.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import { rawExchange, startEnv, tlsToGateway, type Env } from './support/env.js';
import { GATEWAY_IP } from './support/gateway.js';

const IDLE_MS = 400;
let env: Env;

beforeAll(async () => {
  env = await startEnv({ bodyIdleTimeoutMs: IDLE_MS });
}, 60_000);
afterAll(async () => {
  await env?.close();
});

/** A POST head announcing 100 body bytes, followed by only `sent` of them. */
function stalledPost(host: string, path: string, sent: string): string {
  return `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer PH_api\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n${sent}`;
}

describe('a request body that stops arriving', () => {
  it('read for a rule (HTTP/1.1): 408 after the idle limit, the upstream never sees the request, and it is audited', async () => {
    const before = env.api.seen.length;
    const started = Date.now();
    const out = await rawExchange(() => tlsToGateway(env, 'api.test', env.api.port), stalledPost('api.test', '/v1/transfers', '{"amount":'), 10_000);
    const took = Date.now() - started;
    expect(out).toMatch(/^HTTP\/1\.1 408 /);
    expect(out).toContain(`no body bytes from the agent for ${IDLE_MS / 1000} s`);
    expect(took).toBeGreaterThanOrEqual(IDLE_MS - 50);
    expect(took).toBeLessThan(8_000); // answered and closed, not left to the test's own timeout
    expect(env.api.seen.slice(before).map((r) => r.url)).not.toContain('/v1/transfers');
    const records = await env.gw.audit.waitFor(1);
    expect(records).toContainEqual(expect.objectContaining({ status: '408', outcome: 'deny' }));
  });

  it('streamed upstream (HTTP/1.1, no rule reads the body): 408 to the agent, the upstream gets no complete request', async () => {
    const before = env.h2.seen.length;
    const out = await rawExchange(() => tlsToGateway(env, 'h2.test', env.h2.port), stalledPost('h2.test', '/upload', 'x'.repeat(30)), 10_000);
    expect(out).toMatch(/^HTTP\/1\.1 408 /);
    expect(out).toContain('no body bytes from the agent');
    // The upstream may have seen the request start; it never saw it complete.
    await new Promise((r) => setTimeout(r, 200));
    expect(env.h2.seen.slice(before).filter((r) => r.url === '/upload' && r.complete)).toEqual([]);
  });

  it('HTTP/2: a stream whose DATA stops gets :status 408, and the connection keeps serving other streams', async () => {
    const session = http2.connect(`https://h2.test:${env.h2.port}`, {
      ca: env.gw.ca.caCertPem,
      lookup: (_h, _o, cb) => cb(null, [{ address: GATEWAY_IP, family: 4 }]),
    } as http2.SecureClientSessionOptions);
    session.on('error', () => undefined);
    try {
      const stalled = session.request({ ':method': 'POST', ':path': '/upload', 'content-length': '100', authorization: 'Bearer PH_api' });
      stalled.write('y'.repeat(20)); // and nothing more
      const status = await new Promise<number>((resolve, reject) => {
        stalled.on('response', (h) => resolve(Number(h[':status'])));
        stalled.on('error', reject);
      });
      expect(status).toBe(408);
      stalled.destroy();
      const ok = session.request({ ':method': 'GET', ':path': '/hello', authorization: 'Bearer PH_api' });
      const okStatus = await new Promise<number>((resolve, reject) => {
        ok.on('response', (h) => resolve(Number(h[':status'])));
        ok.on('error', reject);
      });
      ok.resume();
      expect(okStatus).toBe(200);
    } finally {
      session.close();
    }
  });

  it('a slow body that keeps sending (a chunk every half idle limit, longer than the limit in all) is not cut', async () => {
    const sock = tlsToGateway(env, 'api.test', env.api.port);
    let out = '';
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (out += d));
    sock.on('error', () => undefined);
    await new Promise((r) => sock.once('secureConnect', r));
    const body = JSON.stringify({ amount: 5, note: 'n'.repeat(80) });
    sock.write(`POST /v1/transfers HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer PH_api\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
    const parts = 6; // 6 × 200 ms = 1.2 s of body, three times the idle limit
    const step = Math.ceil(body.length / parts);
    for (let i = 0; i < body.length; i += step) {
      await new Promise((r) => setTimeout(r, IDLE_MS / 2));
      sock.write(body.slice(i, i + step));
    }
    await new Promise((r) => sock.once('close', r));
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(env.api.seen.at(-1)).toMatchObject({ url: '/v1/transfers', complete: true });
  });
});

describe('gateway { limits { body_idle_timeout } }', () => {
  let policyEnv: Env;
  beforeAll(async () => {
    policyEnv = await startEnv({ bodyIdleTimeout: '1s' });
  }, 60_000);
  afterAll(async () => {
    await policyEnv?.close();
  });

  it('sets the idle limit when the engine is given none', async () => {
    const started = Date.now();
    const out = await rawExchange(() => tlsToGateway(policyEnv, 'api.test', policyEnv.api.port), stalledPost('api.test', '/v1/transfers', '{'), 10_000);
    expect(out).toMatch(/^HTTP\/1\.1 408 /);
    expect(out).toContain('no body bytes from the agent for 1 s');
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
  });
});
