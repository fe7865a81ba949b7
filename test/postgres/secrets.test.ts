/**
 * The vault password never reaches the agent: not during login (SCRAM,
 * MD5, cleartext), not in errors, not when the database itself hands it
 * back in a row, not when the login fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { secretForms } from '../../src/vault/scrub.js';
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
