/**
 * threats.md class 20 — the injected secret (a canary) never reaches the
 * agent: not in echoed headers, bodies, a 401 page, split across chunks, in
 * base64/hex, over HTTP/1.1 or HTTP/2; credential-bearing response headers
 * are removed; the audit log holds no secret either.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CANARY, PLACEHOLDER, curl, startEnv, viaTunnel, type Env } from './support/env.js';

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env?.close();
});

const b64 = Buffer.from(CANARY).toString('base64');
const hex = Buffer.from(CANARY).toString('hex');

/** Everything the agent received: status line, headers and body. */
async function fetchAll(path: string, proto: '--http1.1' | '--http2'): Promise<string> {
  const r = await curl([...viaTunnel(env, 'api.test', env.api.port), proto, '-i', '-H', `Authorization: Bearer ${PLACEHOLDER}`, `https://api.test:${env.api.port}${path}`]);
  expect(r.stderr).toBe('');
  return r.stdout;
}

function assertClean(out: string): void {
  expect(out).not.toContain(CANARY);
  expect(out).not.toContain(b64.slice(4, -4));
  expect(out).not.toContain(hex.slice(4, -4));
}

describe.each(['--http1.1', '--http2'] as const)('canary over %s', (proto) => {
  it('echoed in response headers and body (raw, base64, hex): scrubbed; Set-Cookie, Bearer challenges, Alt-Svc removed', async () => {
    const out = await fetchAll('/echo-secret', proto);
    // The upstream really did echo it: the scrubber had something to do.
    expect(env.api.seen.at(-1)!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    assertClean(out);
    expect(out).toMatch(/x-echo-auth: Bearer \*+/i);
    expect(out).not.toMatch(/set-cookie/i);
    expect(out).not.toMatch(/www-authenticate/i);
    expect(out).not.toMatch(/alt-svc/i);
    const body = JSON.parse(out.slice(out.indexOf('{')));
    expect(body.auth).toMatch(/^Bearer \*+$/);
  });

  it('in a 401 page: scrubbed; a Basic realm challenge survives', async () => {
    const out = await fetchAll('/401', proto);
    expect(out).toMatch(/^HTTP\/[12](\.1)? 401/);
    assertClean(out);
    expect(out).toContain('Invalid credentials: ');
    expect(out).toMatch(/www-authenticate: Basic realm="api"/i);
  });

  it('split across two chunks written 30 ms apart: scrubbed', async () => {
    const out = await fetchAll('/split', proto);
    assertClean(out);
    expect(out).toMatch(/token starts \*+ and ends/);
  });
});

describe('response header policy', () => {
  it('keeps a Basic realm with charset, drops cookies', async () => {
    const out = await fetchAll('/cookie-and-basic', '--http1.1');
    expect(out).toMatch(/www-authenticate: Basic realm="files", charset="UTF-8"/i);
    expect(out).not.toMatch(/set-cookie/i);
  });

  it('a compressed response passes through untouched (not decoded, not re-encoded)', async () => {
    const r = await curl([...viaTunnel(env, 'api.test', env.api.port), '--compressed', `https://api.test:${env.api.port}/gzip`]);
    expect(JSON.parse(r.stdout)).toEqual({ compressed: true });
  });
});

describe('audit', () => {
  it('no record contains the secret; sensitive headers are redacted', async () => {
    await fetchAll('/echo-secret', '--http1.1');
    const records = await env.gw.audit.waitFor(1);
    const text = JSON.stringify(records);
    expect(text).not.toContain(CANARY);
    const rec = records.find((r) => (r.facts as { http?: { path?: string } }).http?.path === '/echo-secret');
    expect((rec!.facts as { http: { headers: Record<string, string> } }).http.headers['authorization']).toBe('***');
  });
});
