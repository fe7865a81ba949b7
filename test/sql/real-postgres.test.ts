/**
 * Differential test against a real PostgreSQL 15: every statement runs on a
 * fresh schema, and whatever the database actually did (rows removed, added,
 * changed; tables created, dropped) must be covered by the analysis — the
 * effect's verb is in `verbs` and `verb` ranks at least as high — unless the
 * message contains code the gateway cannot see into (`do`, …), which ranks
 * at the top anyway. Over-reporting is allowed; under-reporting is a bypass.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  analyzeSql,
  initSqlParser,
  mergeAnalyses,
  verbDanger,
  type SqlAnalysis,
} from '../../src/protocols/postgres/sql.js';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';

let pg: PgCluster;
/** The state RESET leaves, taken once. */
let initial: Map<string, string>;

beforeAll(async () => {
  await initSqlParser();
  pg = await startPgCluster();
  pg.sql('CREATE DATABASE diff');
  pg.sql('ALTER DATABASE diff SET search_path = w');
  pg.sql(RESET, 'diff');
  initial = snapshot();
});

afterAll(async () => {
  await pg?.stop();
});

const RESET = `DROP SCHEMA IF EXISTS w CASCADE; CREATE SCHEMA w;
  CREATE TABLE w.t (id int PRIMARY KEY, v int); INSERT INTO w.t VALUES (1, 10), (2, 20);
  CREATE TABLE w.users (id int, v int); INSERT INTO w.users VALUES (1, 10);`;

/** table → "rows:sum(v)" for every table of schema w. */
function snapshot(): Map<string, string> {
  const out = pg.sql(
    `SELECT c.relname || '=' || (xpath('/row/s/text()', query_to_xml(format('SELECT count(*) || '':'' || coalesce(sum(v), 0) AS s FROM w.%I', c.relname), false, true, '')))[1]::text
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'w' AND c.relkind = 'r'`,
    'diff',
  );
  return new Map(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split('=') as [string, string]),
  );
}

type Effect = { what: string; verbs: string[] };

function effects(before: Map<string, string>, after: Map<string, string>): Effect[] {
  const found: Effect[] = [];
  for (const [table, state] of before) {
    const now = after.get(table);
    if (now === undefined) {
      found.push({ what: `dropped ${table}`, verbs: ['drop'] });
      continue;
    }
    const [rows, sum] = state.split(':').map(Number) as [number, number];
    const [rowsNow, sumNow] = now.split(':').map(Number) as [number, number];
    if (rowsNow < rows) found.push({ what: `removed rows of ${table}`, verbs: ['delete', 'truncate', 'merge'] });
    else if (rowsNow > rows) found.push({ what: `added rows to ${table}`, verbs: ['insert', 'copy', 'merge'] });
    else if (sumNow !== sum) found.push({ what: `changed rows of ${table}`, verbs: ['update', 'merge'] });
  }
  for (const table of after.keys()) {
    if (!before.has(table)) found.push({ what: `created ${table}`, verbs: ['create'] });
  }
  return found;
}

/** What the Postgres engine decides on: EXECUTE merged with what the name was prepared as (docs/sql-facts.md). */
function engineView(a: SqlAnalysis): SqlAnalysis {
  if (!a.inspected || a.executes.length === 0) return a;
  const bodies = a.executes.flatMap((name) => a.prepares.filter((p) => p.name === name).map((p) => p.analysis));
  return mergeAnalyses([a, ...bodies]);
}

/** Code the gateway cannot see into: these rank at or above everything a statement can do. */
const OPAQUE = ['do', 'unknown', 'call', 'load', 'function_call'];

const STATEMENTS = [
  'SELECT * FROM t',
  'SELECT 1; DROP TABLE users',
  'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
  'WITH u AS (UPDATE t SET v = v + 1 RETURNING id) SELECT count(*) FROM u',
  'EXPLAIN ANALYZE DELETE FROM t',
  'EXPLAIN DELETE FROM t',
  'EXPLAIN (ANALYZE off) DELETE FROM t',
  'EXPLAIN (ANALYZE 0) DELETE FROM t',
  'EXPLAIN (ANALYZE, ANALYZE false) DELETE FROM t',
  "EXPLAIN (ANALYZE 'true', COSTS off) UPDATE t SET v = 0",
  'EXPLAIN ANALYZE WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
  'SELECT * INTO stolen FROM users',
  'CREATE TABLE c AS SELECT * FROM t',
  'COPY (DELETE FROM t RETURNING id) TO STDOUT',
  "COPY t FROM PROGRAM 'echo 3,30' WITH (FORMAT csv)",
  'CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM users',
  'CREATE VIEW v AS SELECT * FROM t',
  'CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DELETE FROM t $$',
  'DO $$ BEGIN DELETE FROM t; END $$',
  "DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'users'; END $$",
  "DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'users'); END $$",
  'DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE $q$DELETE FROM t RETURNING *$q$ LOOP END LOOP; END $$',
  "DO $$ DECLARE n int; BEGIN n := (SELECT count(*) FROM users); UPDATE t SET v = n; END $$",
  'PREPARE p AS DELETE FROM t',
  'PREPARE p AS DELETE FROM t; EXECUTE p',
  'PREPARE p AS SELECT * FROM t; CREATE TABLE n AS EXECUTE p',
  'SELECT 1 --x\r; DROP TABLE users',
  'SELECT 1 -- ; DROP TABLE users',
  'SELECT /* /* nested */ ; DROP TABLE users; */ 1',
  'SELECT $tag$; DROP TABLE users; $tag$',
  "SELECT E'\\'; DROP TABLE users; --'",
  "SELECT '\\'; DROP TABLE users; --'",
  'DELETE/*x*/FROM t',
  'dElEtE\tfRoM\nU&"\\0075sers"',
  'INSERT INTO t VALUES (3, 30) ON CONFLICT DO NOTHING',
  'INSERT INTO t VALUES (1, 99) ON CONFLICT (id) DO UPDATE SET v = excluded.v',
  'INSERT INTO t SELECT id + 10, v FROM users',
  'UPDATE t SET v = 0',
  'TRUNCATE t',
  'MERGE INTO t USING users u ON t.id = u.id WHEN MATCHED THEN DELETE',
  'BEGIN; DELETE FROM t; COMMIT',
  'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) INSERT INTO t SELECT n + 100, n FROM r',
];

describe('real PostgreSQL 15 never does more than the analysis says', () => {
  it.each(STATEMENTS.map((s) => [JSON.stringify(s), s] as const))('%s', (_title, statement) => {
    try {
      pg.sql(statement, 'diff');
    } catch {
      // An error is an outcome too: whatever ran before it is still checked.
    }
    const done = effects(initial, snapshot());
    pg.sql(RESET, 'diff');
    const a = engineView(analyzeSql(statement));
    expect(a.inspected, statement).toBe(true);
    for (const effect of done) {
      const named = effect.verbs.filter((v) => a.verbs.includes(v));
      if (named.length === 0) {
        expect(a.verbs.filter((v) => OPAQUE.includes(v)), `${effect.what}, but verbs are ${a.verbs}`).not.toEqual([]);
        expect(verbDanger(a.verb)).toBeGreaterThanOrEqual(verbDanger('drop'));
      } else {
        const least = Math.min(...named.map((v) => verbDanger(v)));
        expect(verbDanger(a.verb), `${effect.what}, but verb is ${a.verb}`).toBeGreaterThanOrEqual(least);
      }
    }
  });

  it('the differential run saw real effects (the harness works)', () => {
    expect([...initial]).toEqual([
      ['t', '2:30'],
      ['users', '1:10'],
    ]);
    pg.sql('DELETE FROM t WHERE id = 1; DROP TABLE users; CREATE TABLE z (v int)', 'diff');
    expect(effects(initial, snapshot()).map((e) => e.what)).toEqual(['removed rows of t', 'dropped users', 'created z']);
    pg.sql(RESET, 'diff');
  });
});
