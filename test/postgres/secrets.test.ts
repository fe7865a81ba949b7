/**
 * The vault password never reaches the agent: not during login (SCRAM,
 * MD5, cleartext), not in errors, not when the database itself hands it
 * back in a row, not when the login fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import type { Action } from '../../src/policy/types.js';
import { openStore } from '../../src/store/index.js';
import { openVault } from '../../src/vault/index.js';
import { createFactsRedactor, redactFacts } from '../../src/audit/redact.js';
import { makeHarness, oneCredentialPolicy } from './support/harness.js';
import fc from 'fast-check';
import { scrubberFor, secretForms } from '../../src/vault/scrub.js';
import { RawClient } from './support/raw-client.js';
import { PASSWORDS, startGatewayFixture, type GatewayFixture } from './support/gateway-fixture.js';

function leaks(bytes: Buffer, secret: string): string[] {
  return secretForms(secret)
    .filter((form) => bytes.includes(form))
    .map((form) => form.toString('latin1'));
}

describe('the vault password never appears in anything the agent receives', () => {
  let f: GatewayFixture;
  beforeAll(async () => {
    f = await startGatewayFixture(`
rule "no-drop" {
  endpoint  = postgres.db
  condition = "sql.verb == 'drop'"
  verdict   = "deny"
  reason    = "no"
}
`);
    // The database itself holds the secrets (think: a config table an operator filled in).
    for (const pw of Object.values(PASSWORDS)) f.pg.sql(`INSERT INTO secrets VALUES ('${pw}'), ('${Buffer.from(pw).toString('base64')}'), ('${Buffer.from(pw).toString('hex')}')`);
  });
  afterAll(() => f?.stop());

  for (const [ph, key] of [
    ['PH_scram', 'scram'],
    ['PH_md5', 'md5'],
    ['PH_plain', 'plain'],
  ] as const) {
    it(`${ph}: login, rows echoing the secret, errors and denials carry no form of it`, async () => {
      const c = await RawClient.connect(f.port, { user: ph, database: 'postgres' });
      try {
        expect(c.messages.some((m) => m.name === 'readyForQuery')).toBe(true);
        c.send(
          serialize.query('SELECT value FROM secrets'),
          serialize.query("SELECT value || ' and more' FROM secrets"),
          serialize.query('SELECT * FROM no_such_table'),
          serialize.query('DROP TABLE secrets'),
        );
        const got = await c.readyCount(5);
        expect(got.filter((m) => m.name === 'dataRow').length).toBe(18);
        expect(got.filter((m) => m.name === 'error').map((m) => m.code)).toEqual(['42P01', '42501']);
        const bytes = c.allBytes();
        expect(leaks(bytes, PASSWORDS[key])).toEqual([]);
        // Same-length redaction: the rows are still well-formed, just starred out.
        expect(bytes.includes(Buffer.from('*'.repeat(PASSWORDS[key].length)))).toBe(true);
      } finally {
        c.close();
      }
    });
  }

  it('a failed upstream login reports the failure without the password', async () => {
    f.pg.sql("ALTER ROLE app_plain PASSWORD 'rotated-elsewhere'");
    try {
      const c = await RawClient.connect(f.port, { user: 'PH_plain', database: 'postgres' });
      await c.until(() => c.closed);
      expect(c.messages.map((m) => [m.name, m.code])).toEqual([['error', '28P01']]);
      expect(leaks(c.allBytes(), PASSWORDS.plain)).toEqual([]);
      c.close();
    } finally {
      f.pg.sql(`ALTER ROLE app_plain PASSWORD '${PASSWORDS.plain}'`);
    }
  });
});

describe('audit records of statements never hold a vault secret', () => {
  it('the facts redactor follows the vault: a secret set or rotated after it was built is redacted from the next record', async () => {
    const root = mkdtempSync(join(tmpdir(), 'cp-pg-redact-'));
    const store = await openStore({ stateDir: root });
    try {
      const loaded = await makeHarness(oneCredentialPolicy({ host: 'db.test:5432', credential: 'db', user: 'app' }), {});
      const model = loaded.policy.model;
      loaded.cleanup();
      const vault = await openVault({ store, stateDir: root, model: () => model, env: {}, refreshMs: 0 });
      const redact = createFactsRedactor({ model: () => model, secrets: vault });
      const statement = (secret: string): Action => ({
        family: 'sql',
        host: 'db.test',
        facts: {
          sql: {
            verb: 'select',
            verbs: ['select'],
            tables: [],
            functions: [],
            statement: `SELECT '${secret}', '${Buffer.from(secret).toString('base64')}'`,
            database: 'app',
            user: 'app',
            inspected: true,
          },
        },
      });
      const first = 'first-Vault-Pass-1234';
      const second = 'second-Vault-Pass-5678';
      expect(JSON.stringify(redact(statement(first)))).toContain(first); // not a secret yet
      await vault.set('postgres_credential.db', 'password', first);
      const r1 = JSON.stringify(redact(statement(first)));
      expect(r1).not.toContain(first);
      expect(r1).not.toContain(Buffer.from(first).toString('base64'));
      await vault.set('postgres_credential.db', 'password', second);
      const r2 = JSON.stringify(redact(statement(second)));
      expect(r2).not.toContain(second);
      expect(r2).toContain('*'.repeat(second.length));
    } finally {
      await store.close();
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('the redactor skips the copy only when scrubbing would change nothing', () => {
  it('property: redactFacts equals the exact deep scrub for facts with and without secret forms, anywhere', () => {
    const secret = 'prop-Vault-Pass-4242';
    const forms = secretForms(secret).map((f) => f.toString('utf8'));
    const scrubber = scrubberFor([secret]);
    const text = fc.oneof(
      fc.string({ maxLength: 12 }),
      fc.tuple(fc.string({ maxLength: 6 }), fc.constantFrom(...forms), fc.string({ maxLength: 6 })).map(([a, f, b]) => a + f + b),
      // Halves of a form in two neighbouring strings must not be redacted (and must not break the fast path).
      fc.constantFrom(...forms).map((f) => f.slice(0, Math.floor(f.length / 2))),
      fc.constantFrom(...forms).map((f) => f.slice(Math.floor(f.length / 2))),
    );
    const tree = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' }, text, fc.integer(), fc.boolean(), fc.array(tie('node'), { maxLength: 4 }), fc.dictionary(text, tie('node'), { maxKeys: 4 })),
    })).node;
    fc.assert(
      fc.property(fc.array(text, { maxLength: 5 }), text, tree, (tables, statement, extra) => {
        const facts = {
          sql: { verb: 'select', verbs: ['select'], tables, functions: [], statement, database: 'app', user: 'u', inspected: true },
          extra,
        } as unknown as Action['facts'];
        const got = redactFacts({ facts }, scrubber);
        expect(got).toEqual(scrubber.scrubDeep(facts));
        expect(JSON.stringify(got)).not.toContain(secret);
      }),
      { numRuns: 3000 },
    );
  });
});
