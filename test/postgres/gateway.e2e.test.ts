/**
 * The Postgres gateway end to end: real PostgreSQL 15, real psql and pg,
 * the real listener, policy and enforcer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { RawClient } from './support/raw-client.js';
import { psql, startGatewayFixture, type GatewayFixture } from './support/gateway-fixture.js';
import { settle } from './support/harness.js';

const RULES = `
rule "banned-functions" {
  endpoint  = postgres.db
  priority  = 100
  condition = "sql.copy_program || sets.intersects(sql.functions, ['pg_read_file', 'pg_ls_dir', 'lo_export', 'set_config'])"
  verdict   = "deny"
  reason    = "this function is not available to agents"
}
rule "no-destruction" {
  endpoint  = postgres.db
  priority  = 50
  condition = "sets.intersects(sql.verbs, ['drop', 'truncate', 'delete', 'alter', 'grant', 'do'])"
  verdict   = "deny"
  reason    = "destructive statements are not for agents"
}
rule "account-inserts-need-approval" {
  endpoint  = postgres.db
  priority  = 40
  condition = "sql.verb == 'insert' && 'accounts' in sql.tables"
  approve   = [builtin.dashboard]
  reason    = "new accounts need a human"
}
rule "startup-options-md5" {
  endpoint  = postgres.db
  priority  = 30
  condition = "sql.verb == 'set' && sql.user == 'PH_md5'"
  verdict   = "allow"
}
`;

describe('Postgres gateway end to end (PostgreSQL 15, psql, pg)', () => {
  let f: GatewayFixture;
  const client = async (user = 'PH_scram'): Promise<pg.Client> => {
    const c = new pg.Client({ host: '127.0.0.1', port: f.port, user, database: 'postgres' });
    await c.connect();
    return c;
  };

  beforeAll(async () => {
    f = await startGatewayFixture(RULES);
  });
  afterAll(async () => {
    await f?.stop();
  });

  it('psql logs in through the gateway as SCRAM, MD5 and cleartext upstream users without a password', async () => {
    for (const [ph, role] of [
      ['PH_scram', 'app_scram'],
      ['PH_md5', 'app_md5'],
      ['PH_plain', 'app_plain'],
    ]) {
      const r = await psql(f.port, ['-c', 'SELECT current_user'], { user: ph });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(role);
    }
    const connects = f.h.audit.filter((a) => a.reason.startsWith('session start'));
    expect(connects.map((a) => a.credential)).toEqual(
      expect.arrayContaining(['postgres_credential.scram', 'postgres_credential.md5', 'postgres_credential.plain']),
    );
  });

  it('psql sslmode=require gets TLS from the gateway; verify-full checks the gateway CA leaf for the endpoint host', async () => {
    const r = await psql(f.port, ['-c', '\\conninfo'], { sslmode: 'require' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/SSL connection \(protocol: TLSv1\.[23]/);
    const plain = await psql(f.port, ['-c', '\\conninfo'], { sslmode: 'disable' });
    expect(plain.stdout).not.toMatch(/SSL connection/);
    const r2 = await psql(f.port, ['-c', 'SELECT 1'], { sslmode: 'verify-full', env: { PGSSLROOTCERT: f.ca.certPath } });
    expect(r2.stderr).toBe('');
    expect(r2.stdout.trim()).toBe('1');
    const wrongRoot = await psql(f.port, ['-c', 'SELECT 1'], { sslmode: 'verify-full', env: { PGSSLROOTCERT: '/etc/ssl/certs/ca-certificates.crt' } });
    expect(wrongRoot.code).not.toBe(0);
    expect(wrongRoot.stderr).toMatch(/certificate verify failed/);
  });

  it('pg: simple and extended protocol, unnamed and named statements', async () => {
    const c = await client();
    try {
      expect((await c.query('SELECT count(*)::int AS n FROM accounts')).rows).toEqual([{ n: 100 }]);
      expect((await c.query('SELECT owner FROM accounts WHERE id = $1', [7])).rows).toEqual([{ owner: 'owner7' }]);
      const before = f.h.actions.length;
      const named = { name: 'balance-by-id', text: 'SELECT balance FROM accounts WHERE id = $1' };
      expect((await c.query({ ...named, values: [3] })).rows).toEqual([{ balance: 30 }]);
      expect((await c.query({ ...named, values: [4] })).rows).toEqual([{ balance: 40 }]);
      // First run: one decision at Parse (it covers its Execute). Second run: B/E only → one decision at Execute.
      const decided = f.h.actions.slice(before).map((a) => a.facts.sql!.statement);
      expect(decided).toEqual([named.text, named.text]);
    } finally {
      await c.end();
    }
  });

  it('pg: a denied statement fails with 42501 and the rule reason; the session stays usable', async () => {
    const c = await client();
    try {
      const err = await c.query('DROP TABLE accounts').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: '42501', message: 'destructive statements are not for agents' });
      const err2 = await c.query('SELECT * FROM accounts WHERE id = $1 AND pg_read_file($2) IS NOT NULL', [1, '/etc/passwd']).catch((e: unknown) => e);
      expect(err2).toMatchObject({ code: '42501', message: 'this function is not available to agents' });
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      expect(f.count('accounts')).toBe(100);
    } finally {
      await c.end();
    }
  });

  it('a denial inside a transaction fails it: later statements get 25P02 and nothing commits', async () => {
    const c = await client();
    try {
      await c.query('BEGIN');
      await c.query("INSERT INTO items VALUES (1, 'a')");
      await expect(c.query('DELETE FROM items')).rejects.toMatchObject({ code: '42501' });
      await expect(c.query("INSERT INTO items VALUES (2, 'b')")).rejects.toMatchObject({ code: '25P02' });
      const commit = await c.query('COMMIT');
      expect(commit.command).toBe('ROLLBACK');
      expect(f.count('items')).toBe(0);
      // and the session continues normally
      await c.query("INSERT INTO items VALUES (3, 'c')");
      expect(f.count('items')).toBe(1);
    } finally {
      f.pg.sql('DELETE FROM items');
      await c.end();
    }
  });

  it('pipelined P B E P B E P B E S with the middle statement denied: later statements never run, the batch rolls back', async () => {
    const c = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    try {
      const since = c.messages.length;
      c.send(
        serialize.parse({ text: "INSERT INTO items VALUES (10, 'first')" }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.parse({ text: 'DELETE FROM accounts' }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.parse({ text: "INSERT INTO items VALUES (11, 'never')" }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
      );
      const got = await c.readyCount(1, since);
      expect(got.map((m) => m.name)).toEqual(['parseComplete', 'bindComplete', 'commandComplete', 'error', 'readyForQuery']);
      expect(got[3]).toMatchObject({ code: '42501', message: 'destructive statements are not for agents' });
      // PostgreSQL rolls back the implicit transaction of the failed batch: the first INSERT too.
      expect(f.count('items')).toBe(0);
      expect(f.count('accounts')).toBe(100);
      // The next batch runs normally.
      c.send(serialize.parse({ text: "INSERT INTO items VALUES (12, 'later')" }), serialize.bind({}), serialize.execute({}), serialize.sync());
      await c.readyCount(2, since);
      expect(f.count('items')).toBe(1);
    } finally {
      f.pg.sql('DELETE FROM items');
      c.close();
    }
  });

  it('COPY in and out through psql, COPY … PROGRAM denied', async () => {
    const load = await psql(f.port, ['-c', '\\copy items FROM STDIN'], { input: '20\ttwenty\n21\ttwenty-one\n\\.\n' });
    expect(load.stderr).toBe('');
    expect(f.count('items')).toBe(2);
    const dump = await psql(f.port, ['-c', '\\copy (SELECT id, label FROM items ORDER BY id) TO STDOUT']);
    expect(dump.stdout).toBe('20\ttwenty\n21\ttwenty-one\n');
    const prog = await psql(f.port, ['-c', "COPY items FROM PROGRAM 'id'"]);
    expect(prog.stderr).toMatch(/ERROR: {2}this function is not available to agents/);
    expect(f.count('items')).toBe(2);
    f.pg.sql('DELETE FROM items');
  });

  it('LISTEN/NOTIFY between two sessions', async () => {
    const a = await client();
    const b = await client('PH_md5');
    try {
      const got = new Promise<pg.Notification>((resolve) => a.on('notification', resolve));
      await a.query('LISTEN jobs');
      await b.query("NOTIFY jobs, 'hello'");
      const n = await got;
      expect(n).toMatchObject({ channel: 'jobs', payload: 'hello' });
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('cancel: psql Ctrl-C reaches the running query through the gateway key mapping', async () => {
    const started = Date.now();
    const r = await psql(f.port, ['-c', 'SELECT pg_sleep(20)'], {
      onSpawn: (pid) => setTimeout(() => process.kill(pid, 'SIGINT'), 1500),
    });
    expect(r.stderr).toMatch(/canceling statement due to user request/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('cancel while the statement waits for approval: 57014 and nothing runs', async () => {
    const saved = f.h.approve;
    f.h.approve = (_a, _d, signal) =>
      new Promise((resolve) => {
        signal?.addEventListener('abort', () => resolve({ verdict: 'deny', reason: 'aborted', stages: [] }));
      });
    try {
      const r = await psql(f.port, ['-c', "INSERT INTO accounts VALUES (500, 'x', 1)"], {
        onSpawn: (pid) => setTimeout(() => process.kill(pid, 'SIGINT'), 1500),
      });
      expect(r.stderr).toMatch(/canceling statement due to user request/);
      expect(f.count('accounts')).toBe(100);
    } finally {
      f.h.approve = saved;
    }
  });

  it('an approval holds only its own session; approved, the statement runs', async () => {
    let release!: () => void;
    const saved = f.h.approve;
    f.h.approve = () =>
      new Promise((resolve) => {
        release = () => resolve({ verdict: 'allow', reason: 'ok by test', stages: [] });
      });
    const a = await client();
    const b = await client();
    try {
      const pending = a.query("INSERT INTO accounts VALUES (501, 'approved', 1)");
      await settle(200);
      // The other session is not affected by the wait.
      expect((await b.query('SELECT count(*)::int AS n FROM accounts')).rows).toEqual([{ n: 100 }]);
      release();
      await pending;
      expect(f.count('accounts')).toBe(101);
    } finally {
      f.h.approve = saved;
      f.pg.sql('DELETE FROM accounts WHERE id = 501');
      await a.end();
      await b.end();
    }
  });

  it('large results stream through', async () => {
    const c = await client();
    try {
      const r = await c.query("SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100000) g");
      expect(r.rows).toHaveLength(100000);
      expect(r.rows[99999]).toEqual({ g: 100000, pad: 'x'.repeat(200) });
    } finally {
      await c.end();
    }
  });

  it('startup options are forwarded only when a rule allows the SET they amount to', async () => {
    const from = f.h.audit.length;
    const refused = await psql(f.port, ['-c', 'SHOW search_path'], { user: 'PH_scram', env: { PGOPTIONS: '-c search_path=pg_catalog' } });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/startup options \(SET search_path TO 'pg_catalog'\) refused: no rule allows startup options/);
    // The refusal is the policy's decision (the SQL backstop), so the audit record says what the agent saw.
    expect(f.h.audit.slice(from).map((a) => [a.rule, a.outcome, a.reason])).toEqual([
      ['', 'deny', 'no rule allows startup options'],
      ['', 'allow', expect.stringMatching(/^session start/)],
    ]);
    const allowed = await psql(f.port, ['-c', 'SHOW search_path'], { user: 'PH_md5', env: { PGOPTIONS: '-c search_path=pg_catalog' } });
    expect(allowed.stderr).toBe('');
    expect(allowed.stdout.trim()).toBe('pg_catalog');
  });

  it('every statement produces an audit record with its decision', async () => {
    const from = f.h.audit.length;
    const c = await client();
    await c.query('SELECT 1');
    await c.query('TRUNCATE accounts').catch(() => {});
    await c.end();
    await settle(50);
    const recs = f.h.audit.slice(from).map((a) => [a.rule === '' && a.status === 'ok' ? 'session start' : (a.facts as { sql: { verb: string } }).sql.verb, a.outcome, a.status]);
    expect(recs).toEqual([
      ['session start', 'allow', 'ok'],
      ['select', 'allow', 'SELECT 1'],
      ['truncate', 'deny', '42501'],
    ]);
  });
});
