import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Action, Facts } from '../../src/policy/types.js';
import { openStore, type Store } from '../../src/store/index.js';
import { openVault, type Vault } from '../../src/vault/index.js';
import { AuditLog, AUDIT_KEY_PURPOSE, auditRows, createFactsRedactor, redactFacts, verifyStore } from '../../src/audit/index.js';
import { withBodyCut } from '../../src/audit/redact.js';
import { credential, modelOf } from '../vault/model.js';
import { record } from './records.js';

const CANARY = 'ghp_' + randomBytes(16).toString('hex');
const model = modelOf(
  credential('bearer_token', 'github'),
  credential('header_token', 'internal', { header: 'X-Internal-Token', prefix: 'Tok ' }),
  credential('postgres_credential', 'pg', { user: 'app' }),
);

function httpAction(): Action {
  return {
    family: 'http',
    host: 'api.github.com',
    facts: {
      http: {
        method: 'POST',
        path: '/echo',
        raw_path: '/echo?t=' + encodeURIComponent(CANARY),
        host: 'api.github.com',
        query: { t: [CANARY] },
        headers: {
          authorization: 'Bearer PH_github',
          cookie: 'session=abc',
          'proxy-authorization': 'Basic eHg6eXk=',
          'x-internal-token': 'Tok PH_internal',
          'x-forwarded-token': Buffer.from(CANARY).toString('base64'),
          'content-type': 'application/json',
        },
        body: JSON.stringify({ note: `my token is ${CANARY}` }),
        body_json: { note: `my token is ${CANARY}`, nested: [{ hex: Buffer.from(CANARY).toString('hex') }] },
      },
    },
  };
}

describe('redactFacts', () => {
  it('masks sensitive and configured headers, scrubs vault values everywhere, leaves the action alone', () => {
    const action = httpAction();
    const before = JSON.stringify(action);
    const out = redactFacts(action, [CANARY], { headers: ['X-Internal-Token'] });
    expect(out.http!.headers).toEqual({
      authorization: '***',
      cookie: '***',
      'proxy-authorization': '***',
      'x-internal-token': '***',
      // 36 bytes encode to 48 base64 characters, every one determined by the secret alone
      'x-forwarded-token': '*'.repeat(48),
      'content-type': 'application/json',
    });
    const text = JSON.stringify(out);
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain(Buffer.from(CANARY).toString('hex'));
    expect(text).not.toContain(encodeURIComponent(CANARY));
    expect(out.http!.method).toBe('POST');
    expect(JSON.stringify(action)).toBe(before);
  });

  it('records the body once: body_json, which the HTTP engine parses from body, is left out', () => {
    const action = httpAction();
    const out = redactFacts(action, [CANARY]);
    expect(out.http).not.toHaveProperty('body_json');
    expect(JSON.parse(out.http!.body)).toEqual({ note: `my token is ${'*'.repeat(CANARY.length)}` });
    expect(action.facts.http!.body_json).toBeDefined(); // the action itself is untouched
  });

  it('scrubs SQL statements and k8s commands', () => {
    const out = redactFacts(
      {
        facts: {
          sql: { verb: 'alter', verbs: ['alter'], tables: [], functions: [], statement: `ALTER ROLE app PASSWORD '${CANARY}'`, database: 'db', user: 'app', inspected: true },
          k8s: { verb: 'connect', resource: 'pods/exec', namespace: 'x', name: 'y', params: {}, subresource: 'exec', api_group: '', api_version: 'v1', command: ['sh', '-c', `curl -H 'Authorization: ${CANARY}'`] },
        },
      },
      [CANARY],
    );
    expect(out.sql!.statement).toBe(`ALTER ROLE app PASSWORD '${'*'.repeat(CANARY.length)}'`);
    expect(JSON.stringify(out)).not.toContain(CANARY);
  });
});

describe('audit records never hold secrets (real vault, real audit log, bytes on disk)', () => {
  let root: string;
  let stateDir: string;
  let store: Store;
  let vault: Vault;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'clawpatrol-redact-'));
    stateDir = join(root, 'state');
    store = await openStore({ stateDir });
    vault = await openVault({ store, stateDir, model: () => model, env: {}, refreshMs: 0 });
    await vault.set('bearer_token.github', undefined, CANARY);
  });
  afterAll(async () => {
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('scans the database, WAL and every neighbour for the canary after recording actions that carried it', async () => {
    const redact = createFactsRedactor({ model: () => model, secrets: vault });
    const log = new AuditLog({ store, key: vault.subkey(AUDIT_KEY_PURPOSE) });
    for (let i = 0; i < 50; i++) {
      log.append(record(i, { facts: redact(httpAction()), reason: 'upstream said: ok' }));
    }
    await log.flush();
    const rows = [];
    for await (const r of auditRows(store)) rows.push(r);
    expect(rows).toHaveLength(50);
    expect(rows[0]!.record).toContain('"authorization":"***"');
    expect(rows[0]!.record).toContain('"x-internal-token":"***"');
    const forms = [CANARY, Buffer.from(CANARY).toString('base64'), Buffer.from(CANARY).toString('hex'), encodeURIComponent(CANARY)];
    for (const f of readdirSync(stateDir)) {
      const bytes = readFileSync(join(stateDir, f));
      for (const form of forms) expect(bytes.includes(Buffer.from(form)), `${f} contains ${form}`).toBe(false);
    }
    expect(await verifyStore(store, vault.subkey(AUDIT_KEY_PURPOSE))).toMatchObject({ ok: true, count: 50 });
    await log.close();
  });
});

describe('gateway.audit_body_limit: the recorded body cut to a size', () => {
  const withBody = (body: string): Facts => ({ http: { method: 'POST', path: '/v1/x', raw_path: '/v1/x', host: 'h', query: {}, headers: {}, body, body_json: {} } });

  it('cuts at a character boundary and records the whole size; a body within the limit is left as it is', () => {
    const text = 'aé€😀'.repeat(50); // 1 + 2 + 3 + 4 bytes per repeat
    const total = Buffer.byteLength(text);
    for (let limit = 0; limit <= 25; limit++) {
      const cut = withBodyCut(withBody(text), limit).http as unknown as { body: string; body_total_bytes: number };
      expect(cut.body.includes('\uFFFD')).toBe(false);
      expect(Buffer.byteLength(cut.body)).toBeLessThanOrEqual(limit);
      expect(Buffer.byteLength(cut.body)).toBeGreaterThan(limit - 4);
      expect(text.startsWith(cut.body)).toBe(true);
      expect(cut.body_total_bytes).toBe(total);
    }
    const small = withBody('short');
    expect(withBodyCut(small, 5)).toBe(small);
    expect(withBodyCut(small, 15)).toBe(small); // short enough not to need encoding to tell
    expect(withBodyCut(withBody('€€€'), 8).http).toMatchObject({ body: '€€', body_total_bytes: 9 });
    expect(withBodyCut(withBody(''), 0).http).not.toHaveProperty('body_total_bytes');
  });

  it('cuts after scrubbing: a secret across the limit leaves no part of itself behind', () => {
    const secret = 'sk_live_' + randomBytes(16).toString('hex');
    const body = `${'x'.repeat(20)}${secret} tail`;
    const redact = createFactsRedactor({ model: () => ({ ...model, gateway: { auditBodyLimit: 30 } }), secrets: { allValues: () => [secret] } });
    const out = redact({ family: 'http', host: 'h', facts: withBody(body) }).http as unknown as { body: string; body_total_bytes: number };
    expect(out.body).toBe(`${'x'.repeat(20)}${'*'.repeat(10)}`);
    expect(out.body_total_bytes).toBe(Buffer.byteLength(body));
    // Without the setting the whole (scrubbed) body is kept.
    const whole = createFactsRedactor({ model: () => model, secrets: { allValues: () => [secret] } });
    expect(whole({ family: 'http', host: 'h', facts: withBody(body) }).http!.body).toBe(`${'x'.repeat(20)}${'*'.repeat(secret.length)} tail`);
  });
});
