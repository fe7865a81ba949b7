/**
 * `raw` fixtures replay wire bytes through the engine's real parser (the
 * registration in src/protocols/http/raw-fixture.ts), via the same
 * `runFixture` that `clawpatrol test` uses.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPolicy, type CompiledPolicy } from '../../src/policy/index.js';
import { parseFixture, runFixture, actionsFromFixture, isFixtureError, type Fixture } from '../../src/policy/fixtures.js';
import '../../src/protocols/http/raw-fixture.js';

const POLICY = `
schema_version = 1
gateway {
  limits {
    body_buffer = "4KiB"
  }
}
endpoint "https" "api" {
  hosts = ["api.test"]
}
credential "bearer_token" "api" {
  endpoint = https.api
}
profile "agent" {
  credentials = [{ credential = bearer_token.api, placeholder = "PH_api" }]
}
rule "no-admin" {
  endpoint  = https.api
  condition = "http.path.startsWith('/admin')"
  verdict   = "deny"
  reason    = "no admin"
}
rule "no-big-transfers" {
  endpoint  = https.api
  condition = "http.path == '/v1/transfers' && http.body_json.amount > 1000"
  verdict   = "deny"
  reason    = "too big"
}
`;

let dir: string;
let policy: CompiledPolicy;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'clawpatrol-rawfx-'));
  writeFileSync(join(dir, 'p.hcl'), POLICY);
  const r = await loadPolicy(join(dir, 'p.hcl'));
  if (!r.ok) throw new Error(JSON.stringify(r.diagnostics));
  policy = r.policy;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fixture(raw: Buffer | string, match: Record<string, unknown>): Fixture {
  const f = parseFixture(
    { action: { host: 'api.test', port: 443, profile: 'agent', raw: Buffer.from(raw).toString('base64') }, match },
    'inline.json',
  );
  if (isFixtureError(f)) throw new Error(f.error);
  return f;
}

describe('raw HTTP fixtures', () => {
  it('dot segments in the raw bytes are resolved as live traffic resolves them', async () => {
    const f = fixture('GET /v1/%2e%2e/admin/users HTTP/1.1\r\nHost: api.test\r\n\r\n', { verdict: 'deny', rule: 'no-admin' });
    const r = await runFixture(policy, f);
    expect(r.ok, JSON.stringify(r)).toBe(true);
  });

  it('gzip bodies are decoded and placeholders select the credential', async () => {
    const body = zlib.gzipSync('{"amount": 5000}');
    const raw = Buffer.concat([
      Buffer.from(`POST /v1/transfers HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer PH_api\r\nContent-Encoding: gzip\r\nContent-Length: ${body.length}\r\n\r\n`),
      body,
    ]);
    const f = fixture(raw, { verdict: 'deny', rule: 'no-big-transfers', credential: 'bearer_token.api' });
    const prepared = await actionsFromFixture(f, policy);
    expect(prepared.ok).toBe(true);
    if (prepared.ok) {
      expect(prepared.actions[0]!.placeholders).toEqual(['PH_api']);
      expect(prepared.actions[0]!.facts.http!.body_json).toEqual({ amount: 5000 });
    }
    expect((await runFixture(policy, f)).ok).toBe(true);
  });

  it('pipelined requests become one action each; the most severe decision counts', async () => {
    const f = fixture('GET /v1/items HTTP/1.1\r\nHost: api.test\r\n\r\nGET /admin HTTP/1.1\r\nHost: api.test\r\n\r\n', { verdict: 'deny', rule: 'no-admin' });
    const prepared = await actionsFromFixture(f, policy);
    expect(prepared.ok && prepared.actions.map((a) => a.facts.http!.path)).toEqual(['/v1/items', '/admin']);
    expect((await runFixture(policy, f)).ok).toBe(true);
  });

  it('smuggling bytes are refused with the live parser’s reason', async () => {
    const f = fixture('POST /v1/items HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', { verdict: 'allow' });
    const prepared = await actionsFromFixture(f, policy);
    expect(prepared.ok).toBe(false);
    if (!prepared.ok) expect(prepared.error).toContain('both Content-Length and Transfer-Encoding');
  });

  it('truncated bytes are an error, not a partial request', async () => {
    const prepared = await actionsFromFixture(fixture('POST /v1/items HTTP/1.1\r\nHost: api.test\r\nContent-Length: 10\r\n\r\nabc', { verdict: 'allow' }), policy);
    expect(prepared.ok).toBe(false);
  });
});
