import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Action } from '../../src/policy/types.js';
import { openStore, type Store } from '../../src/store/index.js';
import { openVault, type Vault } from '../../src/vault/index.js';
import { AuditLog, AUDIT_KEY_PURPOSE, auditRows, createFactsRedactor, redactFacts, verifyStore } from '../../src/audit/index.js';
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
