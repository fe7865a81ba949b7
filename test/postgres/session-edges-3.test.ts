/**
 * Adversarial QA of the Postgres gateway, round 3 (issue #7): startup and TLS
 * from the agent, cancels, extended-protocol volume and COPY edges, through
 * the real listener to a real PostgreSQL 15.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect as tlsConnect } from 'node:tls';
import { serialize } from 'pg-protocol';
import { NO_DELETES_RULE, RawClient, outcomes, type BackendMsg } from './support/raw-client.js';
import { startGatewayFixture, type GatewayFixture } from './support/gateway-fixture.js';
import { settle } from './support/harness.js';
import { startPostgresListener } from '../../src/protocols/postgres/listener.js';
import type { PostgresEngineDeps } from '../../src/protocols/postgres/connection.js';

const RULES = `${NO_DELETES_RULE}rule "account-inserts-need-approval" {
  endpoint  = postgres.db
  priority  = 40
  condition = "sql.verb == 'insert' && 'accounts' in sql.tables"
  approve   = [builtin.dashboard]
  reason    = "new accounts need a human"
}
`;

let f: GatewayFixture;
let raw: RawClient | null = null;
beforeAll(async () => {
  f = await startGatewayFixture(RULES);
});
afterAll(async () => {
  await f?.stop();
});
afterEach(() => {
  raw?.close();
  raw = null;
});
const connect = async (): Promise<RawClient> => {
  raw = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
  return raw;
};

/** A second listener on the fixture's policy and cluster, with its own engine options. */
const withListener = async (opts: Partial<PostgresEngineDeps>, run: (port: number) => Promise<void>): Promise<void> => {
  const l = await startPostgresListener({
    endpoint: 'postgres.db',
    listen: '127.0.0.1:0',
    enforcer: f.h.enforcer,
    policy: () => f.h.policy,
    ca: { leaf: (host) => f.ca.leaf(host) },
    cancels: f.cancels,
    profile: 'default',
    ...opts,
  });
  try {
    await run(l.address.port);
  } finally {
    await l.close();
  }
};

describe('startup and TLS from the agent', () => {
  it('an agent answered S that never completes the TLS handshake is dropped at the startup deadline', async () => {
    await withListener({ startupTimeoutMs: 300 }, async (port) => {
      for (const afterAnswer of [Buffer.alloc(0), Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])]) {
        const c = await RawClient.connect(port);
        raw = c;
        c.send(serialize.requestSsl());
        await c.until(() => c.allBytes().length >= 1);
        expect(c.allBytes().toString('latin1')).toBe('S');
        c.send(afterAnswer); // nothing, or the first bytes of a ClientHello
        await c.until(() => c.closed, 5_000);
        expect(c.closed).toBe(true);
        c.close();
      }
    });
  });
});

describe('cancel', () => {
  it('a pipeline with a statement running upstream and the next waiting for approval: a cancel stops both', async () => {
    const saved = f.h.approve;
    f.h.approve = (_a, _d, signal) =>
      new Promise((resolve) => signal?.addEventListener('abort', () => resolve({ verdict: 'deny', reason: 'aborted', stages: [] })));
    try {
      const c = await connect();
      const key = c.messages.find((m) => m.name === 'backendKeyData')!;
      const since = c.messages.length;
      c.send(
        serialize.parse({ text: 'SELECT pg_sleep(6)' }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.parse({ text: "INSERT INTO accounts VALUES (900, 'held', 1)" }), // waits for approval meanwhile
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
      );
      await c.until(() => f.h.actions.some((a) => a.facts.sql?.tables?.includes('accounts') && a.facts.sql.verb === 'insert'));
      await settle(200);
      const cancel = await RawClient.connect(f.port);
      cancel.send(serialize.cancel(key.processID!, key.secretKey!));
      await cancel.until(() => cancel.closed);
      const got = await c.readyCount(1, since, 15_000);
      // As PostgreSQL: the running sleep is canceled and the rest of the batch skipped (before, the sleep ran to its end).
      expect(outcomes(got)).toEqual(['57014']);
      expect(f.count('accounts')).toBe(100);
    } finally {
      f.h.approve = saved;
    }
  }, 30_000);
});

describe('COPY edges: the gateway never loses count of the ReadyForQuery it waits for', () => {
  const RESTORE_ACCOUNTS = "INSERT INTO accounts SELECT g, 'owner' || g, g * 10 FROM generate_series(1, 100) g ON CONFLICT DO NOTHING";

  /**
   * Runs `copyPart` (which sends a Sync answered a second after the COPY ends),
   * then a SET standard_conforming_strings = off whose ParameterStatus comes
   * only with its own ReadyForQuery a second later, then a Query that is a
   * SELECT of two literals with the setting on (how the gateway reads it) and
   * a DELETE with it off. Counting the Sync's ReadyForQuery as the SET's would
   * let that Query through before the gateway learns of the SET.
   */
  const expectNoEarlyQuery = async (copyPart: Buffer[]): Promise<void> => {
    const c = await connect();
    c.send(serialize.parse({ name: 'slow', text: 'SELECT pg_sleep(1)' }), serialize.sync());
    await c.readyCount(2);
    try {
      c.send(
        ...copyPart,
        serialize.query('SET standard_conforming_strings = off; SELECT pg_sleep(1)'),
        serialize.query("SELECT 'a\\' , '; DELETE FROM accounts; --'"),
      );
      await c.until(() => c.closed, 15_000);
      await settle(300); // a DELETE forwarded before the session ended would have run by now
      expect(c.messages.at(-1)).toMatchObject({ name: 'error', severity: 'FATAL' });
      expect(f.count('accounts')).toBe(100);
    } finally {
      f.pg.sql(RESTORE_ACCOUNTS);
    }
  };
  const slowThenSync = [serialize.bind({ statement: 'slow' }), serialize.execute({}), serialize.sync()];

  it('64 CopyDones behind the one that ends the COPY (ignored by the server)', async () => {
    await expectNoEarlyQuery([
      serialize.query('COPY items FROM STDIN'),
      serialize.copyDone(), // ends the COPY: the Sync behind it is answered
      ...slowThenSync,
      ...Array.from({ length: 64 }, () => serialize.copyDone()),
    ]);
  }, 30_000);

  it('a COPY that fails on its data, with a Sync sent before its CopyDone (answered: the COPY is over)', async () => {
    await expectNoEarlyQuery([
      serialize.query('COPY accounts FROM STDIN'),
      serialize.copyData(Buffer.from('not-a-number\tx\t1\n')),
      ...slowThenSync,
      serialize.copyDone(),
    ]);
  }, 30_000);
});
