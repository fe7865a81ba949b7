/**
 * analyzeSql() cost, side by side with the raw parser in one run.
 *
 *   node --import tsx bench/sql/analyze.bench.ts [--seconds 1] [--rounds 5]
 *
 * Cases (each over the same workload, interleaved round by round so machine
 * noise hits all of them alike; the median round is reported; cost is CPU
 * time of this process, so other load on the machine inflates it less):
 *   baseline: libpg-query parseSync   the real parser alone (wasm + JSON.parse) — the floor
 *   analyzeSql, cold                  parse + tree walk + facts, cache disabled
 *   analyzeSql, cached                the same statements again with the cache warm
 * Workloads:
 *   agent mix   40 distinct statements an agent typically sends (reads, joins,
 *               CTEs, writes, DDL, a DO block, session statements), 25–300 bytes
 *   bulk insert one INSERT of 1,000 rows (~40 KB)
 */
import { loadModule, parseSync } from 'libpg-query';
import {
  DEFAULT_SQL_CACHE_BYTES,
  analyzeSql,
  clearSqlCache,
  configureSqlCache,
  initSqlParser,
} from '../../src/protocols/postgres/sql.js';

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const SECONDS = arg('--seconds', 1);
const ROUNDS = arg('--rounds', 5);

const agentMix = [
  'SELECT 1',
  'SELECT id, email, created_at FROM users WHERE id = $1',
  'SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 50',
  "SELECT count(*) FROM events WHERE created_at > now() - interval '1 hour'",
  'SELECT u.id, u.name, count(o.id) AS orders FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.id, u.name HAVING count(o.id) > 3',
  "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
  'SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1',
  'SELECT * FROM pg_catalog.pg_stat_activity WHERE state <> $1',
  'SELECT p.* FROM products p WHERE p.price BETWEEN 10 AND 20 AND p.tags @> ARRAY[$1]::text[]',
  'WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval \'7 days\') SELECT customer_id, sum(total) FROM recent GROUP BY 1 ORDER BY 2 DESC',
  'WITH RECURSIVE tree AS (SELECT id, parent_id FROM nodes WHERE id = $1 UNION ALL SELECT n.id, n.parent_id FROM nodes n JOIN tree t ON n.parent_id = t.id) SELECT * FROM tree',
  'SELECT * FROM users WHERE id IN (SELECT user_id FROM sessions WHERE expires_at > now())',
  "SELECT jsonb_build_object('id', id, 'name', name) FROM customers WHERE lower(email) = lower($1)",
  'SELECT date_trunc($1, created_at) AS bucket, count(*) FROM signups GROUP BY 1 ORDER BY 1',
  'EXPLAIN SELECT * FROM orders WHERE customer_id = 42',
  'EXPLAIN ANALYZE SELECT * FROM orders WHERE total > 100',
  "INSERT INTO audit_log (actor, action, payload) VALUES ($1, $2, $3::jsonb) RETURNING id",
  'INSERT INTO counters (k, v) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET v = counters.v + 1',
  'UPDATE users SET last_seen = now() WHERE id = $1',
  'UPDATE orders SET status = $1 FROM customers c WHERE c.id = orders.customer_id AND c.tier = $2',
  'DELETE FROM sessions WHERE expires_at < now()',
  'WITH moved AS (DELETE FROM inbox WHERE processed RETURNING *) INSERT INTO archive SELECT * FROM moved',
  'MERGE INTO stock s USING deliveries d ON s.item = d.item WHEN MATCHED THEN UPDATE SET qty = s.qty + d.qty WHEN NOT MATCHED THEN INSERT VALUES (d.item, d.qty)',
  'CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, body text NOT NULL, created_at timestamptz DEFAULT now())',
  'CREATE INDEX IF NOT EXISTS notes_created ON notes (created_at)',
  'ALTER TABLE notes ADD COLUMN IF NOT EXISTS author text',
  'DROP TABLE IF EXISTS scratch',
  'BEGIN',
  'COMMIT',
  "SET statement_timeout = '5s'",
  'SHOW search_path',
  'SELECT 1; SELECT 2; SELECT 3',
  "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN CREATE ROLE app; END IF; END $$",
  "COPY (SELECT * FROM users) TO STDOUT WITH (FORMAT csv)",
  'PREPARE q(int) AS SELECT * FROM users WHERE id = $1',
  'EXECUTE q(1)',
  'DEALLOCATE q',
  "SELECT pg_catalog.set_config('search_path', '', false)",
  'SELECT * FROM generate_series(1, 10) g CROSS JOIN LATERAL (SELECT g * 2 AS d) x',
  'VACUUM ANALYZE orders',
];
const bulkInsert = [
  `INSERT INTO items (id, name, price, created_at) VALUES ${Array.from(
    { length: 1000 },
    (_, i) => `(${i}, 'item number ${i}', ${(i * 1.25).toFixed(2)}, now())`,
  ).join(', ')}`,
];

type Case = { name: string; setup: () => void; run: (sql: string) => unknown };
const cases: Case[] = [
  { name: 'baseline: libpg-query parseSync', setup: () => undefined, run: (sql) => parseSync(sql) },
  {
    name: 'analyzeSql, cold (cache off)',
    setup: () => configureSqlCache({ maxBytes: 0 }),
    run: (sql) => analyzeSql(sql),
  },
  {
    name: 'analyzeSql, cached',
    setup: () => {
      configureSqlCache({ maxBytes: DEFAULT_SQL_CACHE_BYTES });
      clearSqlCache();
    },
    run: (sql) => analyzeSql(sql),
  },
];

/**
 * Statements per CPU-second of this process over about `seconds`, cycling
 * through the workload. CPU time rather than wall time: the benchmark
 * machine is shared, and time spent descheduled is not the code's cost.
 */
function measure(c: Case, workload: string[], seconds: number): number {
  c.setup();
  for (const sql of workload) c.run(sql); // warm (fills the cache for the cached case)
  let count = 0;
  const deadline = performance.now() + seconds * 1000;
  const cpu = process.cpuUsage();
  while (performance.now() < deadline) {
    for (const sql of workload) c.run(sql);
    count += workload.length;
  }
  const used = process.cpuUsage(cpu);
  return count / ((used.user + used.system) / 1e6);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

await initSqlParser();
await loadModule();

for (const [label, workload] of [
  ['agent mix (40 statements)', agentMix],
  ['bulk insert (1 statement, 1,000 rows)', bulkInsert],
] as const) {
  // One warm-up pass per case so the wasm and JIT tiers settle before timing.
  for (const c of cases) measure(c, workload, 0.3);
  const results = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of cases) results.get(c.name)!.push(measure(c, workload, SECONDS));
  }
  const base = median(results.get(cases[0]!.name)!);
  console.log(`\n${label} — median of ${ROUNDS} rounds × ${SECONDS}s`);
  console.log('| case | statements per CPU-second | CPU µs/statement | vs baseline |');
  console.log('|---|---:|---:|---:|');
  for (const c of cases) {
    const perSecond = median(results.get(c.name)!);
    console.log(
      `| ${c.name} | ${Math.round(perSecond).toLocaleString('en-US')} | ${(1e6 / perSecond).toFixed(2)} | ${(perSecond / base).toFixed(2)}× |`,
    );
  }
}
