/**
 * Adversarial QA of the Postgres gateway (issue #7): real psql, pg and raw
 * frames through the real listener to a real PostgreSQL 15, probing where
 * the gateway's picture of the session could drift from the server's.
 */
import { execFileSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { RawClient } from './support/raw-client.js';
import { psql, startGatewayFixture, type GatewayFixture } from './support/gateway-fixture.js';
import { makeHarness, oneCredentialPolicy, settle } from './support/harness.js';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { readyForQuery } from '../../src/protocols/postgres/backend-messages.js';
import { initSqlParser } from '../../src/protocols/postgres/sql.js';

/**
 * Rules keyed on what a message runs (`sql.verb`), as docs/sql-facts.md
 * describes it: `PREPARE p AS DELETE …` is a `prepare`, `EXECUTE p` a `delete`.
 */
const RULES = `
rule "no-deletes" {
  endpoint  = postgres.db
  priority  = 50
  condition = "sql.verb == 'delete' || sql.verb == 'drop' || sql.verb == 'truncate'"
  verdict   = "deny"
  reason    = "agents do not delete"
}
rule "item-inserts-need-approval" {
  endpoint  = postgres.db
  priority  = 40
  condition = "sql.verb == 'insert' && 'items' in sql.tables"
  approve   = [builtin.dashboard]
  reason    = "new items need a human"
}
`;

const RESTORE_ACCOUNTS = "INSERT INTO accounts SELECT g, 'owner' || g, g * 10 FROM generate_series(1, 100) g ON CONFLICT DO NOTHING";

let f: GatewayFixture;
beforeAll(async () => {
  f = await startGatewayFixture(RULES);
});
afterAll(async () => {
  await f?.stop();
});

describe('the gateway forgets a prepared statement only when the server did', () => {
  let raw: RawClient | null = null;

  afterEach(() => {
    raw?.close();
    raw = null;
    f.pg.sql(RESTORE_ACCOUNTS);
  });

  /** A raw session with `p` prepared (SQL level, allowed: it is a `prepare`) as a DELETE of every account. */
  const withPreparedDelete = async (): Promise<RawClient> => {
    raw = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    raw.send(serialize.query('PREPARE p AS DELETE FROM accounts'));
    await raw.readyCount(2);
    return raw;
  };
  /** Re-prepare `p` harmlessly (the server refuses: p still exists), then run p at the protocol level. */
  const reprepareAndExecute = async (c: RawClient, readySoFar: number): Promise<void> => {
    c.send(serialize.parse({ name: 'p', text: 'SELECT 1' }), serialize.sync());
    c.send(serialize.bind({ statement: 'p' }), serialize.execute({}), serialize.sync());
    const got = await c.readyCount(readySoFar + 2);
    expect(got.find((m) => m.name === 'error' && m.code === '42P05'), 'the server kept the old p').toBeDefined();
    expect(got.at(-2)).toMatchObject({ name: 'error', code: '42501', message: 'agents do not delete' });
    expect(f.count('accounts')).toBe(100);
  };

  it('a DEALLOCATE behind a failing statement of the same Query never ran: EXECUTE p is still the DELETE', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: f.port, user: 'PH_scram', database: 'postgres' });
    await c.connect();
    try {
      await c.query('PREPARE p AS DELETE FROM accounts');
      await expect(c.query('SELECT 1/0; DEALLOCATE p')).rejects.toMatchObject({ code: '22012' });
      await expect(c.query('PREPARE p AS SELECT 1')).rejects.toMatchObject({ code: '42P05' });
      await expect(c.query('EXECUTE p')).rejects.toMatchObject({ code: '42501', message: 'agents do not delete' });
      expect(f.count('accounts')).toBe(100);
    } finally {
      await c.end();
    }
  });

  it('a DEALLOCATE in an aborted transaction never ran', async () => {
    const c = await withPreparedDelete();
    c.send(serialize.query('BEGIN; SELECT 1/0'), serialize.query('DEALLOCATE p'), serialize.query('ROLLBACK'));
    const got = await c.readyCount(5);
    expect(got.filter((m) => m.name === 'error').map((m) => m.code)).toEqual(['22012', '25P02']);
    await reprepareAndExecute(c, 5);
  });

  it('a Close the server skipped (an earlier Execute of the batch failed) closed nothing', async () => {
    const c = await withPreparedDelete();
    c.send(serialize.parse({ text: 'SELECT 1/0' }), serialize.bind({}), serialize.execute({}), serialize.close({ type: 'S', name: 'p' }), serialize.sync());
    await c.readyCount(3);
    await reprepareAndExecute(c, 3);
  });

  it('a Parse of "DEALLOCATE p" that is never executed deallocates nothing', async () => {
    const c = await withPreparedDelete();
    c.send(serialize.parse({ text: 'DEALLOCATE p' }), serialize.sync());
    await c.readyCount(3);
    await reprepareAndExecute(c, 3);
  });

  it('a DEALLOCATE or Close that did run lets the name be prepared afresh', async () => {
    const c = await withPreparedDelete();
    c.send(serialize.query('DEALLOCATE p'), serialize.query('PREPARE p AS SELECT 1 AS one'), serialize.query('EXECUTE p'));
    c.send(serialize.close({ type: 'S', name: 'p' }), serialize.parse({ name: 'p', text: 'SELECT 2 AS two' }), serialize.sync());
    c.send(serialize.bind({ statement: 'p' }), serialize.execute({}), serialize.sync());
    const got = await c.readyCount(7);
    expect(got.filter((m) => m.name === 'error')).toEqual([]);
    expect(got.filter((m) => m.name === 'commandComplete').map((m) => m.text)).toEqual(['PREPARE', 'DEALLOCATE', 'PREPARE', 'SELECT 1', 'SELECT 1']);
  });
});

describe('a Parse the server skipped does not replace the statement the gateway decides on', () => {
  it('an approved INSERT in the unnamed statement cannot be run again without approval', async () => {
    let approvals = 0;
    f.h.approve = async () => {
      approvals++;
      return { verdict: 'allow', reason: 'approved in test', stages: [] };
    };
    const c = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    try {
      c.send(serialize.parse({ text: "INSERT INTO items VALUES (1, 'approved once')" }), serialize.bind({}), serialize.execute({}), serialize.sync());
      await c.readyCount(2);
      expect(approvals).toBe(1);
      // The Execute fails, so the server skips the Parse behind it: its unnamed statement is still the INSERT.
      c.send(
        serialize.parse({ name: 'x', text: 'SELECT 1/0' }),
        serialize.bind({ statement: 'x' }),
        serialize.execute({}),
        serialize.parse({ text: 'SELECT 2' }),
        serialize.sync(),
      );
      await c.readyCount(3);
      f.h.approve = async () => {
        approvals++;
        return { verdict: 'deny', reason: 'not twice', stages: [] };
      };
      c.send(serialize.bind({}), serialize.execute({}), serialize.sync());
      const got = await c.readyCount(4);
      expect(approvals).toBe(2);
      expect(got.at(-2)).toMatchObject({ name: 'error', code: '42501' });
      expect(f.count('items')).toBe(1);
    } finally {
      c.close();
      f.pg.sql('DELETE FROM items');
    }
  });
});

describe('psql ON_ERROR_ROLLBACK around a denied statement', () => {
  it('the savepoint psql sets before each statement undoes only the denial: the transaction commits the rest', async () => {
    try {
      const r = await psql(f.port, ['-v', 'ON_ERROR_ROLLBACK=on', '-v', 'ON_ERROR_STOP=0'], {
        input: "BEGIN;\nUPDATE accounts SET balance = 0 WHERE id = 1;\nDELETE FROM accounts;\nUPDATE accounts SET balance = 0 WHERE id = 2;\nCOMMIT;\n",
      });
      expect(r.stderr).toContain('ERROR:  agents do not delete');
      expect(r.stdout.trim().split('\n')).toEqual(['BEGIN', 'UPDATE 1', 'UPDATE 1', 'COMMIT']);
      expect(f.pg.sql('SELECT count(*) FILTER (WHERE balance = 0) || \'/\' || count(*) FROM accounts').trim()).toBe('2/100');
    } finally {
      f.pg.sql('UPDATE accounts SET balance = id * 10');
    }
  });
});

describe('the agent vanishes mid-statement: nothing of it reaches the database', () => {
  const noSessionLeft = async (): Promise<void> => {
    const sessions = (): string => f.pg.sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_scram'").trim();
    for (let i = 0; i < 100 && sessions() !== '0'; i++) await settle(50);
    expect(sessions()).toBe('0');
  };

  it('mid-COPY FROM STDIN: the rows already sent are not committed', async () => {
    const c = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    c.send(serialize.query('COPY items FROM STDIN'));
    await c.until((ms) => ms.some((m) => m.name === 'copyInResponse'));
    c.send(serialize.copyData(Buffer.from('1\tone\n2\ttwo\n')));
    await settle(100);
    c.close();
    await noSessionLeft();
    expect(f.count('items')).toBe(0);
  });

  it('mid-approval: the statement is not run when the approval comes after the agent left', async () => {
    let approvalAsked!: () => void;
    const asked = new Promise<void>((resolve) => (approvalAsked = resolve));
    f.h.approve = async () => {
      approvalAsked();
      await settle(300);
      return { verdict: 'allow', reason: 'approved too late', stages: [] };
    };
    const c = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    c.send(serialize.query("INSERT INTO items VALUES (1, 'after the agent left')"));
    await asked;
    c.close();
    await settle(400);
    await noSessionLeft();
    expect(f.count('items')).toBe(0);
  });
});

describe('the server dies in the middle of a result', () => {
  // Its own cluster: killing a backend makes the postmaster restart every session.
  let dying: GatewayFixture;

  beforeAll(async () => {
    dying = await startGatewayFixture(RULES);
  });
  afterAll(async () => {
    await dying?.stop();
  });

  it('the agent sees the connection end at once (no hang), and the gateway keeps no socket of it', async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: dying.port, user: 'PH_scram', database: 'postgres' });
    c.on('error', () => {});
    await c.connect();
    const pid = Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    const rows: unknown[] = [];
    const query = new Promise<unknown>((resolve) => {
      const q = c.query(new pg.Query('SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 5000000) g'));
      q.on('row', (r: unknown) => rows.push(r));
      q.on('error', resolve);
      q.on('end', () => resolve(null));
    });
    while (rows.length < 1000) await settle(5);
    // SIGKILL: the backend vanishes without a word (the postmaster then restarts the cluster).
    execFileSync('kill', ['-9', String(pid)]);
    // The server's last bytes end mid-message (it writes 8 KiB blocks): nothing can be appended to them, so the
    // agent's client reports the lost connection itself, as it would without the gateway.
    await expect(query).resolves.toMatchObject({ message: 'Connection terminated unexpectedly' });
    expect(rows.length).toBeLessThan(5_000_000);
    for (let i = 0; i < 100 && dying.listener.connections > 0; i++) await settle(20);
    expect(dying.listener.connections).toBe(0);
    await c.end().catch(() => {});
  });
});

describe('portals are forgotten when the server drops them', () => {
  it('a named Bind per transaction does not grow the session for ever', async () => {
    await initSqlParser();
    const h = await makeHarness(oneCredentialPolicy({ host: 'db.test:5432', credential: 'db', user: 'app' }), {
      'postgres_credential.db': { password: 'vault-pw-0123' },
    });
    try {
      const session = new PostgresSession(
        { endpointId: 'postgres.db', host: 'db.test', port: 5432, user: 'app', database: 'app', maxBuffered: 65536, credentialId: 'postgres_credential.db', scrubber: null },
        { toAgent: () => {}, toUpstream: () => {}, decide: (a) => h.enforcer.enforceNow!(a) ?? undefined, close: () => {} },
      );
      const bindComplete = Buffer.from([0x32, 0, 0, 0, 4]);
      for (let i = 0; i < 500; i++) {
        session.fromAgent(Buffer.concat([serialize.bind({ portal: `portal_${i}`, statement: 's' }), serialize.sync()]));
        // Outside a transaction block the server drops the portal at Sync.
        session.fromUpstream(Buffer.concat([bindComplete, readyForQuery('I')]));
      }
      expect(session.memory.portalCount).toBe(0);
      // Inside a transaction the portal lives on, and so does the gateway's memory of it.
      session.fromAgent(Buffer.concat([serialize.bind({ portal: 'held', statement: 's' }), serialize.sync()]));
      session.fromUpstream(Buffer.concat([bindComplete, readyForQuery('T')]));
      expect(session.memory.portalCount).toBe(1);
    } finally {
      h.cleanup();
    }
  });
});
