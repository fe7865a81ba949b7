/**
 * End to end through the real engine with real clients: curl over the TLS
 * ingress and through the explicit proxy; decisions, injection, audit.
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

const url = (path: string) => `https://api.test:${env.api.port}${path}`;

describe('TLS ingress with curl', () => {
  it('allows a read, injects the real token in place of the placeholder, and audits it', async () => {
    const before = env.gw.audit.records.length;
    const r = await curl([...viaTunnel(env, 'api.test', env.api.port), '-H', `Authorization: Bearer ${PLACEHOLDER}`, url('/v1/items?x=1')]);
    expect(r.stderr).toBe('');
    const body = JSON.parse(r.stdout);
    expect(body.url).toBe('/v1/items?x=1');
    const seen = env.api.seen.at(-1)!;
    expect(seen.headers['authorization']).toBe(`Bearer ${CANARY}`);
    expect(JSON.stringify(seen.rawHeaders)).not.toContain(PLACEHOLDER);
    // The echo carries the injected header back: scrubbed before the agent sees it.
    expect(r.stdout).not.toContain(CANARY);
    const records = await env.gw.audit.waitFor(before + 1);
    const rec = records.at(-1)!;
    expect(rec).toMatchObject({ outcome: 'allow', endpoint: 'https.api', credential: 'bearer_token.api', status: '200', peer: 'test-agent', profile: 'agent' });
    expect(rec.bytesOut).toBeGreaterThan(100);
    expect(JSON.stringify(rec)).not.toContain(CANARY);
  });

  it('denies by rule with 403 and the reason (JSON when the client accepts JSON)', async () => {
    const text = await curl([...viaTunnel(env, 'api.test', env.api.port), '-i', url('/admin/users')]);
    expect(text.stdout).toMatch(/^HTTP\/2 403/);
    expect(text.stdout).toContain('agents may not use the admin API');
    const json = await curl([...viaTunnel(env, 'api.test', env.api.port), '-H', 'Accept: application/json', url('/admin/users')]);
    expect(JSON.parse(json.stdout)).toEqual({
      error: { type: 'permission_denied', message: 'clawpatrol: agents may not use the admin API' },
      rule: 'no-admin',
    });
    expect(env.api.seen.some((s) => s.url.startsWith('/admin'))).toBe(false);
  });

  it('speaks HTTP/1.1 when asked', async () => {
    const r = await curl([...viaTunnel(env, 'api.test', env.api.port), '--http1.1', '-i', url('/v1/items')]);
    expect(r.stdout).toMatch(/^HTTP\/1\.1 200 OK/);
  });
});

describe('explicit proxy with curl -x', () => {
  it('CONNECT to a declared endpoint is terminated and decided like the tunnel', async () => {
    const proxy = `http://127.0.0.1:${env.gw.proxyPort}`;
    const ok = await curl(['-x', proxy, '--cacert', env.gatewayCaPath, url('/v1/items')]);
    expect(ok.stderr).toBe('');
    expect(JSON.parse(ok.stdout).headers.authorization).toMatch(/^Bearer \*+$/);
    const denied = await curl(['-x', proxy, '--cacert', env.gatewayCaPath, '-i', url('/admin')]);
    expect(denied.stdout).toContain('403');
    expect(denied.stdout).toContain('agents may not use the admin API');
  });

  it('CURL_CA_BUNDLE works as well as --cacert', async () => {
    const r = await new Promise<string>((resolve) => {
      import('node:child_process').then(({ execFile }) =>
        execFile(
          'curl',
          ['-sS', '-x', `http://127.0.0.1:${env.gw.proxyPort}`, url('/v1/items')],
          { env: { ...process.env, CURL_CA_BUNDLE: env.gatewayCaPath } },
          (_e, out, err) => resolve(out + err),
        ),
      );
    });
    expect(JSON.parse(r).url).toBe('/v1/items');
  });
});
