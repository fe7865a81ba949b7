/**
 * Random pipelined client traffic (simple and extended protocol, named and
 * unnamed statements and portals, errors, denials, transactions, Flush,
 * Sync) through the real gateway to a real PostgreSQL 15. Whatever the mix,
 * the gateway must stay in step with the server (no "lost sync"), the session
 * must still answer afterwards, and a denied statement must never have run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { RawClient } from './support/raw-client.js';
import { startGatewayFixture, type GatewayFixture } from './support/gateway-fixture.js';

const SQL = [
  'SELECT 1',
  'SELECT id FROM items',
  "INSERT INTO items VALUES (1, 'fuzz')",
  'DELETE FROM accounts',
  'UPDATE accounts SET balance = 0',
  'BEGIN',
  'COMMIT',
  'ROLLBACK',
  'SELECT no_such_column',
  'SELECT 1; SELECT 2',
  '',
  'SELECT pg_sleep(0.001)',
  'COPY (SELECT 1) TO STDOUT',
  'SELECT generate_series(1, 50)',
];
const NAMES = ['', 's1', 's2'];
const PORTALS = ['', 'p1'];

const frontend = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...SQL).map((sql) => serialize.query(sql)) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.constantFrom(...NAMES), fc.constantFrom(...SQL.filter((s) => !s.includes(';'))))
      .map(([name, text]) => serialize.parse({ name, text })),
  },
  {
    weight: 4,
    arbitrary: fc.tuple(fc.constantFrom(...PORTALS), fc.constantFrom(...NAMES)).map(([portal, statement]) => serialize.bind({ portal, statement })),
  },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom(...PORTALS), fc.constantFrom(0, 1, 5)).map(([portal, rows]) => serialize.execute({ portal, rows })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('S' as const, 'P' as const), fc.constantFrom(...NAMES)).map(([type, name]) => serialize.describe({ type, name })) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('S' as const, 'P' as const), fc.constantFrom(...NAMES)).map(([type, name]) => serialize.close({ type, name })) },
  { weight: 3, arbitrary: fc.constant(serialize.sync()) },
  { weight: 1, arbitrary: fc.constant(serialize.flush()) },
);

describe('random protocol traffic through the gateway', () => {
  let f: GatewayFixture;
  beforeAll(async () => {
    f = await startGatewayFixture(`
rule "no-writes-to-accounts" {
  endpoint  = postgres.db
  condition = "'accounts' in sql.tables && sql.verb != 'select'"
  verdict   = "deny"
  reason    = "accounts are read-only"
}
`);
  });
  afterAll(() => f?.stop());

  it('stays in step with the server and never runs a denied statement (150 sequences)', async () => {
    let client = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    let checked = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(frontend, { minLength: 1, maxLength: 25 }), async (frames) => {
        if (client.closed) client = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
        const since = client.messages.length;
        // Whatever came before: end the batch, leave any transaction, then ask a known question.
        client.send(...frames, serialize.sync(), serialize.query('ROLLBACK'), serialize.query("SELECT 'still-in-step'"));
        await client.until(
          (ms) => ms.slice(since).some((m) => m.name === 'dataRow' && m.fields?.[0] === 'still-in-step') || ms.slice(since).some((m) => m.severity === 'FATAL'),
          15_000,
        );
        const got = client.messages.slice(since);
        const fatal = got.find((m) => m.severity === 'FATAL');
        expect(fatal, JSON.stringify(fatal)).toBeUndefined();
        expect(got.some((m) => m.name === 'dataRow' && m.fields?.[0] === 'still-in-step')).toBe(true);
        // Let the final ReadyForQuery arrive before the next sequence.
        await client.until((ms) => ms.length > since && ms[ms.length - 1]!.name === 'readyForQuery', 5_000);
        expect(f.count('accounts')).toBe(100);
        expect(Number(f.pg.sql('SELECT coalesce(sum(balance), 0) FROM accounts').trim())).toBe(50500);
        checked++;
      }),
      { numRuns: 150 },
    );
    client.close();
    expect(checked).toBe(150);
    f.pg.sql('DELETE FROM items');
  }, 300_000);
});
