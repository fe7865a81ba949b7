/**
 * threats.md classes 1–9, each sent over the wire through the real gateway
 * to a real PostgreSQL 15, each followed by a check that the database is
 * unchanged (row counts, catalog).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import { serialize } from 'pg-protocol';
import { RawClient } from './support/raw-client.js';
import { startGatewayFixture, type GatewayFixture } from './support/gateway-fixture.js';

const RULES = `
rule "banned-functions" {
  endpoint  = postgres.db
  priority  = 100
  condition = <<-EOT
    sql.copy_program || sets.intersects(sql.functions, [
      'pg_read_file', 'pg_read_binary_file', 'pg_ls_dir', 'lo_import', 'lo_export',
      'dblink', 'dblink_exec', 'set_config'
    ])
  EOT
  verdict   = "deny"
  reason    = "function not available to agents"
}
rule "reads-only" {
  endpoint  = postgres.db
  priority  = 10
  condition = "sets.contains(['select', 'show', 'begin', 'commit', 'rollback', 'set', 'listen', 'explain'], sql.verbs)"
  verdict   = "allow"
}
rule "default-deny" {
  endpoint = postgres.db
  priority = -100
  verdict  = "deny"
  reason   = "read-only for agents"
}
`;

describe('threats.md classes 1–9 over the wire', () => {
  let f: GatewayFixture;
  let c: pg.Client;
  let snapshot: string;

  /** Everything an attack could change: row counts and the catalog of user objects. */
  const state = (): string =>
    f.pg.sql(`
      SELECT (SELECT count(*) FROM accounts) || '|' ||
             (SELECT count(*) FROM items) || '|' ||
             (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace) || '|' ||
             (SELECT count(*) FROM pg_rules WHERE schemaname = 'public') || '|' ||
             (SELECT count(*) FROM pg_largeobject_metadata) || '|' ||
             (SELECT rolsuper::text FROM pg_roles WHERE rolname = 'app_scram')`).trim();

  const denied = async (sql: string): Promise<void> => {
    const err = await c.query(sql).catch((e: unknown) => e);
    expect(err, sql).toMatchObject({ code: '42501' });
  };

  beforeAll(async () => {
    f = await startGatewayFixture(RULES, { bodyBuffer: '4KiB' });
    f.pg.sql("INSERT INTO items VALUES (1, 'one')");
    snapshot = state();
    c = new pg.Client({ host: '127.0.0.1', port: f.port, user: 'PH_scram', database: 'postgres' });
    await c.connect();
  });
  afterAll(async () => {
    await c?.end().catch(() => {});
    await f?.stop();
  });
  beforeEach(() => {
    expect(state()).toBe(snapshot);
  });

  it('1. several statements in one message: the most dangerous counts', async () => {
    await denied('SELECT 1; DROP TABLE accounts');
    await denied('SELECT count(*) FROM accounts; DELETE FROM accounts');
    expect((await c.query('SELECT 1 AS a; SELECT 2 AS b')) as unknown as unknown[]).toHaveLength(2);
    expect(state()).toBe(snapshot);
  });

  it('2. writes hidden inside reads', async () => {
    await denied('WITH d AS (DELETE FROM accounts RETURNING *) SELECT * FROM d');
    await denied('EXPLAIN ANALYZE DELETE FROM accounts');
    await denied('SELECT * INTO stolen FROM accounts');
    await denied('COPY (DELETE FROM accounts RETURNING id) TO STDOUT');
    await denied('CREATE RULE r AS ON INSERT TO items DO INSTEAD DELETE FROM accounts');
    await denied('DO $$ BEGIN DELETE FROM accounts; END $$');
    expect(state()).toBe(snapshot);
  });

  it('3. named statements: EXECUTE carries what PREPARE defined (SQL and protocol level)', async () => {
    const prep = await c.query('PREPARE p AS DELETE FROM accounts').catch((e: unknown) => e);
    if (!(prep instanceof Error)) await denied('EXECUTE p');
    // Protocol level: a named Parse of a DELETE, executed later.
    const raw = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    try {
      const since = raw.messages.length;
      raw.send(serialize.parse({ name: 'wipe', text: 'DELETE FROM accounts' }), serialize.sync());
      raw.send(serialize.bind({ statement: 'wipe' }), serialize.execute({}), serialize.sync());
      const got = await raw.readyCount(2, since);
      // The Parse is denied; the later Bind names a statement that therefore never existed upstream.
      const codes = got.filter((m) => m.name === 'error').map((m) => m.code);
      expect(codes[0]).toBe('42501');
      expect(codes.slice(1).every((code) => code === '26000' || code === '42501')).toBe(true);
    } finally {
      raw.close();
    }
    expect(state()).toBe(snapshot);
  });

  it('4. comments, quoting and whitespace', async () => {
    for (const sql of [
      'DELETE/*x*/FROM accounts',
      'DELETE /* /* nested */ still comment */ FROM accounts',
      'SELECT $tag$ ; $tag$; DELETE FROM accounts',
      "SELECT E'\\''; DELETE FROM accounts",
      'DELETE FROM U&"\\0061ccounts"',
      // `--` ends at a carriage return, so the DELETE is a statement of its own
      'SELECT 1 --\r; DELETE FROM accounts',
      'select 1;\n\tdelete\n\tfrom\taccounts',
    ]) {
      await denied(sql);
    }
    // An unterminated comment is not "SELECT 1": it does not parse, so it is denied.
    await denied('SELECT 1 /* unterminated');
    expect(state()).toBe(snapshot);
  });

  it('5. extended protocol: pipelined batch with a denied statement — one error, one ReadyForQuery, nothing queued runs', async () => {
    const raw = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    try {
      const since = raw.messages.length;
      raw.send(
        serialize.parse({ name: 'a', text: 'SELECT 1' }),
        serialize.bind({ statement: 'a', portal: 'pa' }),
        serialize.execute({ portal: 'pa' }),
        serialize.parse({ text: 'TRUNCATE items' }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.parse({ text: "INSERT INTO items VALUES (2, 'queued')" }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
        serialize.query('SELECT 2'),
      );
      const got = await raw.readyCount(2, since);
      const names = got.map((m) => m.name);
      expect(names.filter((n) => n === 'error')).toHaveLength(1);
      expect(names.filter((n) => n === 'readyForQuery')).toHaveLength(2);
      expect(got.find((m) => m.name === 'error')).toMatchObject({ code: '42501' });
    } finally {
      raw.close();
    }
    expect(state()).toBe(snapshot);
  });

  it('6. messages without SQL: FunctionCall by OID, COPY data, CancelRequest with a foreign key', async () => {
    const oid = Number(f.pg.sql("SELECT 'pg_read_file(text)'::regprocedure::oid").trim());
    const raw = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
    try {
      const since = raw.messages.length;
      const arg = Buffer.from('/etc/passwd');
      const body = Buffer.alloc(4 + 2 + 2 + 4 + arg.length + 2);
      body.writeInt32BE(oid, 0);
      body.writeInt16BE(0, 4); // no format codes
      body.writeInt16BE(1, 6); // one argument
      body.writeInt32BE(arg.length, 8);
      arg.copy(body, 12);
      body.writeInt16BE(0, 12 + arg.length);
      const fc = Buffer.concat([Buffer.from('F'), Buffer.alloc(4), body]);
      fc.writeInt32BE(4 + body.length, 1);
      raw.send(fc);
      const got = await raw.readyCount(1, since);
      expect(got.map((m) => m.name)).toEqual(['error', 'readyForQuery']);
      expect(got[0]).toMatchObject({ code: '42501' });
      expect(raw.allBytes().includes(Buffer.from('root:'))).toBe(false);
      // COPY data is not SQL: a COPY the policy denies never starts, and the data that follows is dropped by the server.
      raw.send(serialize.query('COPY items FROM STDIN'), serialize.copyData(Buffer.from("3\tsmuggled\n")), serialize.copyDone());
      await raw.readyCount(2, since);
    } finally {
      raw.close();
    }
    // A CancelRequest with a key the gateway never issued does nothing.
    const sleeper = new pg.Client({ host: '127.0.0.1', port: f.port, user: 'PH_scram', database: 'postgres' });
    await sleeper.connect();
    try {
      const q = sleeper.query('SELECT pg_sleep(1.5) AS slept');
      const cancel = await RawClient.connect(f.port);
      cancel.send(serialize.cancel(12345, 67890));
      await cancel.until(() => cancel.closed);
      expect((await q).rows).toHaveLength(1);
    } finally {
      await sleeper.end();
    }
    expect(state()).toBe(snapshot);
  });

  it('7. side effects through functions, qualified and quoted', async () => {
    for (const sql of [
      "SELECT pg_read_file('/etc/passwd')",
      "SELECT pg_catalog.pg_read_file('/etc/passwd')",
      `SELECT "pg_read_file"('/etc/passwd')`,
      'SELECT * FROM pg_ls_dir(\'.\')',
      "SELECT lo_export(0, '/tmp/x')",
      "SELECT set_config('role', 'postgres', false)",
      "SELECT upper(PG_CATALOG.PG_READ_FILE('/etc/hostname'))",
    ]) {
      await denied(sql);
    }
    expect(state()).toBe(snapshot);
  });

  it('8. malformed framing: rejected, never read as SQL', async () => {
    const cases: Buffer[] = [
      // Query whose length says 9 but whose text has no NUL, followed by a real DROP
      Buffer.concat([Buffer.from([0x51, 0, 0, 0, 9]), Buffer.from('SELE'), serialize.query('DROP TABLE items')]),
      // Query with a NUL in the middle: the rest would be a second statement to a lenient parser
      Buffer.concat([Buffer.from([0x51, 0, 0, 0, 30]), Buffer.from('SELECT 1\0DROP TABLE items\0')]),
      // Parse claiming 3 parameter types but carrying 1
      Buffer.concat([Buffer.from([0x50, 0, 0, 0, 20]), Buffer.from('\0SELECT 1\0'), Buffer.from([0, 3, 0, 0, 0, 23])]),
      // Bind whose value length runs past the frame
      Buffer.concat([Buffer.from([0x42, 0, 0, 0, 18]), Buffer.from('\0\0'), Buffer.from([0, 0, 0, 1, 0, 0, 1, 0, 0x41, 0x42, 0, 0])]),
    ];
    for (const bytes of cases) {
      const raw = await RawClient.connect(f.port, { user: 'PH_scram', database: 'postgres' });
      const since = raw.messages.length;
      raw.send(bytes);
      await raw.until(() => raw.closed);
      const got = raw.messages.slice(since);
      expect(got.map((m) => [m.name, m.code])).toEqual([['error', '08P01']]);
      raw.close();
    }
    expect(state()).toBe(snapshot);
  });

  it('9. a statement over the inspection limit is denied by the rule that needs its text', async () => {
    const padding = ' '.repeat(5000);
    const err = await c.query(`DELETE FROM accounts${padding}`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: '42501' });
    expect((err as { hint?: string }).hint).toMatch(/could not inspect this statement: statement of \d+ bytes is over limits\.body_buffer \(4096 bytes\)/);
    // Also through Parse (extended protocol).
    const err2 = await c.query(`DELETE FROM accounts WHERE id = $1${padding}`, [1]).catch((e: unknown) => e);
    expect(err2).toMatchObject({ code: '42501' });
    expect(state()).toBe(snapshot);
  });
});
