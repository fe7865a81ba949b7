/**
 * Adversarial QA of the Postgres gateway, round 2 (issue #7): real pg and raw
 * frames through the real listener to a real PostgreSQL 15, probing where the
 * gateway's idea of what a name stands for can drift from the server's —
 * here through client and server encodings other than UTF-8.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { NO_DELETES_RULE, RawClient, outcomes, type BackendMsg } from './support/raw-client.js';
import { startGatewayFixture, type GatewayFixture } from './support/gateway-fixture.js';
import { makeHarness, oneCredentialPolicy } from './support/harness.js';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { errorResponse, readyForQuery } from '../../src/protocols/postgres/backend-messages.js';
import { MAX_REMEMBERED_STATEMENTS } from '../../src/protocols/postgres/statements.js';
import { initSqlParser } from '../../src/protocols/postgres/sql.js';

const RULES = NO_DELETES_RULE;

const RESTORE_ACCOUNTS = "INSERT INTO accounts SELECT g, 'owner' || g, g * 10 FROM generate_series(1, 100) g ON CONFLICT DO NOTHING";

/** A simple Query whose text is exactly `bytes` (serialize.query would UTF-8-encode a string). */
function queryBytes(bytes: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write('Q');
  head.writeInt32BE(bytes.length + 5, 1);
  return Buffer.concat([head, bytes, Buffer.from([0])]);
}
const latin1 = (text: string): Buffer => queryBytes(Buffer.from(text, 'latin1'));
const utf8 = (text: string): Buffer => queryBytes(Buffer.from(text, 'utf8'));

let f: GatewayFixture;
let raw: RawClient | null = null;
beforeAll(async () => {
  f = await startGatewayFixture(RULES);
  f.pg.sql(`
    CREATE DATABASE latin1db ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
  `);
  f.pg.sql(
    `CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL);
     ${RESTORE_ACCOUNTS};
     GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO app_scram;`,
    'latin1db',
  );
});
afterAll(async () => {
  await f?.stop();
});
afterEach(() => {
  raw?.close();
  raw = null;
  f.pg.sql(RESTORE_ACCOUNTS);
});

const connect = async (database = 'postgres'): Promise<RawClient> => {
  raw = await RawClient.connect(f.port, { user: 'PH_scram', database });
  return raw;
};
const accountsIn = (database: string): number => Number(f.pg.sql('SELECT count(*) FROM accounts', database).trim());

/** The hidden DELETE was refused by policy and never ran. */
const expectDeleteDenied = (got: BackendMsg[], accountsLeft: number): void => {
  expect(outcomes(got)).not.toContain('DELETE 100');
  expect(outcomes(got).at(-1)).toBe('42501');
  expect(accountsLeft).toBe(100);
};

/** Under UTF-8, "é" (bytes c3 a9) is harmless and "Ã©" (c3 83 c2 a9) a DELETE; read as LATIN1, the bytes c3 a9 are "Ã©". */
const withEncodingTwins = async (): Promise<RawClient> => {
  const c = await connect();
  c.send(utf8('PREPARE "é" AS SELECT 1'), utf8('PREPARE "Ã©" AS DELETE FROM accounts'));
  await c.readyCount(3);
  return c;
};

describe('prepared-statement names under encodings other than UTF-8', () => {
  it('client_encoding LATIN1: two names the gateway read as one cannot hide a DELETE behind a harmless twin', async () => {
    const c = await connect();
    // Read as UTF-8, "\xe9" and "\xe8" are both U+FFFD; upstream they are é and è, two statements.
    c.send(
      latin1("SET client_encoding TO 'LATIN1'"),
      latin1('PREPARE "\xe9" AS DELETE FROM accounts'),
      latin1('PREPARE "\xe8" AS SELECT 1'),
      latin1('DEALLOCATE "\xe8"'),
      latin1('PREPARE "\xe8" AS SELECT 1'),
      latin1('EXECUTE "\xe9"'),
    );
    const got = await c.readyCount(7);
    expectDeleteDenied(got, f.count('accounts'));
  });

  it('a Bind pipelined right behind SET client_encoding names the statement the server will find', async () => {
    const c = await withEncodingTwins();
    c.send(
      utf8("SET client_encoding TO 'LATIN1'"),
      serialize.bind({ statement: 'é' }), // pg-protocol writes names as UTF-8: bytes c3 a9
      serialize.execute({}),
      serialize.sync(),
    );
    const got = await c.readyCount(5);
    expectDeleteDenied(got, f.count('accounts'));
  });

  it('nor a Bind behind a SET client_encoding executed earlier in the same batch (reported only at Sync)', async () => {
    const c = await withEncodingTwins();
    c.send(
      serialize.parse({ text: "SET client_encoding TO 'LATIN1'" }),
      serialize.bind({}),
      serialize.execute({}),
      serialize.bind({ statement: 'é' }),
      serialize.execute({}),
      serialize.sync(),
    );
    const got = await c.readyCount(4);
    expect(outcomes(got).slice(-2)).toEqual(['SET', '42501']);
    expect(f.count('accounts')).toBe(100);
  });

  it('a Close under LATIN1 does not make the gateway forget the UTF-8 statement of the same bytes', async () => {
    const c = await connect();
    c.send(utf8('PREPARE "é" AS DELETE FROM accounts'), utf8("SET client_encoding TO 'LATIN1'"));
    await c.readyCount(3);
    // Upstream this closes "Ã©" (nothing: CloseComplete all the same); "é" stays.
    c.send(serialize.close({ type: 'S', name: 'é' }), serialize.sync());
    await c.readyCount(4);
    c.send(utf8("SET client_encoding TO 'UTF8'"), utf8('PREPARE "é" AS SELECT 1'), utf8('EXECUTE "é"'));
    const got = await c.readyCount(7);
    expect(outcomes(got).slice(-2)).toEqual(['42P05', '42501']);
    expect(f.count('accounts')).toBe(100);
  });

  it('server_encoding LATIN1: names that share their first 63 UTF-8 bytes are still two statements upstream', async () => {
    const c = await connect('latin1db');
    // 'x' + 31 × é is 63 bytes in UTF-8 (where the gateway's parser truncates) but 32 in LATIN1.
    const stem = `x${'é'.repeat(32)}`;
    const [a, b] = [`"${stem}a"`, `"${stem}b"`];
    c.send(
      utf8(`PREPARE ${a} AS DELETE FROM accounts`),
      utf8(`PREPARE ${b} AS SELECT 1`),
      utf8(`DEALLOCATE ${b}`),
      utf8(`PREPARE ${b} AS SELECT 1`),
      utf8(`EXECUTE ${a}`),
    );
    const got = await c.readyCount(6);
    expectDeleteDenied(got, accountsIn('latin1db'));
  });

  it('plain UTF-8 sessions keep non-ASCII names working, pipelined or not', async () => {
    const c = await connect();
    c.send(
      serialize.parse({ name: 'état', text: 'SELECT 1 AS one' }),
      serialize.sync(),
      serialize.bind({ statement: 'état', portal: 'curseur_é' }),
      serialize.execute({ portal: 'curseur_é' }),
      serialize.sync(),
      utf8('PREPARE "été" AS SELECT 2'),
      utf8('EXECUTE "été"'),
    );
    const got = await c.readyCount(5);
    expect(outcomes(got)).toEqual(['SELECT 1', 'PREPARE', 'SELECT 1']);
  });
});

describe('a portal bound at the protocol level runs its statement wherever it is run from', () => {
  /** In a transaction block (portals live until its end): `s` is a DELETE … RETURNING, prepared (allowed: a `prepare`). */
  const withDeletePortalStatement = async (): Promise<RawClient> => {
    const c = await connect();
    c.send(utf8('PREPARE s AS DELETE FROM accounts RETURNING id'), utf8('PREPARE t AS SELECT 1'), utf8('BEGIN'));
    await c.readyCount(4);
    return c;
  };

  it('SQL FETCH / MOVE of the portal is decided as the statement it runs', async () => {
    const c = await withDeletePortalStatement();
    c.send(serialize.bind({ statement: 's', portal: 'c' }), serialize.sync(), utf8('MOVE ALL IN c'), utf8('ROLLBACK'));
    c.send(utf8('BEGIN'), serialize.bind({ statement: 's', portal: 'c' }), serialize.sync(), utf8('FETCH ALL FROM c'), utf8('COMMIT'));
    // A cursor DECLAREd in SQL is a query, decided when it was declared: fetching from it stays allowed.
    c.send(utf8('BEGIN'), utf8('DECLARE k CURSOR FOR SELECT id FROM accounts'), utf8('FETCH 2 FROM k'), utf8('COMMIT'));
    const got = await c.readyCount(15);
    expect(outcomes(got).slice(3)).toEqual(['42501', 'ROLLBACK', 'BEGIN', '42501', 'ROLLBACK', 'BEGIN', 'DECLARE CURSOR', 'FETCH 2', 'COMMIT']);
    expect(f.count('accounts')).toBe(100);
  });

  it('a Bind the server refused (the portal exists) does not replace what the gateway knows of the portal', async () => {
    const c = await withDeletePortalStatement();
    c.send(serialize.bind({ statement: 's', portal: 'c' }), serialize.sync());
    // The second Bind fails (42P03 cursor "c" already exists); ROLLBACK TO keeps c, bound in the outer transaction.
    c.send(utf8('SAVEPOINT sp'), serialize.bind({ statement: 't', portal: 'c' }), serialize.sync(), utf8('ROLLBACK TO sp'));
    c.send(serialize.execute({ portal: 'c' }), serialize.sync(), utf8('COMMIT'));
    const got = await c.readyCount(10);
    expect(outcomes(got).slice(3)).toEqual(['SAVEPOINT', '42P03', 'ROLLBACK', '42501', 'ROLLBACK']);
    expect(f.count('accounts')).toBe(100);
  });
});

describe('DISCARD ALL deallocates every prepared statement, upstream and in the gateway', () => {
  it('a name prepared afresh after DISCARD ALL is what it now is, not what it was', async () => {
    const c = await connect();
    c.send(utf8('PREPARE p AS DELETE FROM accounts'), utf8('DISCARD ALL'), utf8('PREPARE p AS SELECT 1'), utf8('EXECUTE p'));
    const got = await c.readyCount(5);
    expect(outcomes(got)).toEqual(['PREPARE', 'DISCARD ALL', 'PREPARE', 'SELECT 1']);
  });

  it('a DISCARD ALL the server refused (inside a transaction block) forgets nothing', async () => {
    const c = await connect();
    c.send(
      utf8('PREPARE p AS DELETE FROM accounts'),
      utf8('BEGIN'),
      utf8('DISCARD ALL'),
      utf8('ROLLBACK'),
      utf8('PREPARE p AS SELECT 1'),
      utf8('EXECUTE p'),
    );
    const got = await c.readyCount(7);
    expect(outcomes(got)).toEqual(['PREPARE', 'BEGIN', '25001', 'ROLLBACK', '42P05', '42501']);
    expect(f.count('accounts')).toBe(100);
  });
});

describe('the gateway never remembers more statements than a session is allowed', () => {
  it('PREPAREs the server refused cannot grow the gateway without bound: past the limit the session ends', async () => {
    await initSqlParser();
    const h = await makeHarness(oneCredentialPolicy({ host: 'db.test:5432', credential: 'db', user: 'app' }), {
      'postgres_credential.db': { password: 'vault-pw-0123' },
    });
    try {
      const toAgent: Buffer[] = [];
      let closed: string | null = null;
      const session = new PostgresSession(
        { endpointId: 'postgres.db', host: 'db.test', port: 5432, user: 'app', database: 'app', maxBuffered: 65536, credentialId: 'postgres_credential.db', scrubber: null },
        { toAgent: (b) => toAgent.push(b), toUpstream: () => {}, decide: (a) => h.enforcer.enforceNow!(a) ?? undefined, close: (r) => (closed = r) },
      );
      // The server stores none of these (the table does not exist); the gateway remembers each name.
      const refused = Buffer.concat([errorResponse({ severity: 'ERROR', code: '42P01', message: 'relation "missing" does not exist' }), readyForQuery('I')]);
      for (let i = 0; i <= MAX_REMEMBERED_STATEMENTS && closed === null; i++) {
        session.fromAgent(serialize.query(`PREPARE p_${i} AS SELECT * FROM missing`));
        session.fromUpstream(refused);
      }
      expect(session.memory.preparedNames().length).toBe(MAX_REMEMBERED_STATEMENTS + 1);
      expect(closed).toMatch(/more than 10000 prepared statements/);
      const last: BackendMsg[] = [];
      new Parser().parse(toAgent.at(-1)!, (m) => last.push(m as unknown as BackendMsg));
      expect(last).toMatchObject([{ name: 'error', severity: 'FATAL', code: '54000' }]);
    } finally {
      h.cleanup();
    }
  });
});

