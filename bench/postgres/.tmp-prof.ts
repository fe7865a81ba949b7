import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPgCluster, freePort } from '../../test/support/pg-cluster.js';
import { loadPolicy } from '../../src/policy/index.js';
import { createEnforcer } from '../../src/gateway/enforcer.js';
import { startPostgresListener } from '../../src/protocols/postgres/listener.js';
import { initSqlParser } from '../../src/protocols/postgres/sql.js';
import { Session } from 'node:inspector/promises';

const pg = await startPgCluster();
pg.createUser('bench', 'pw-bench-1', 'scram-sha-256');
spawnSync('/usr/bin/pgbench', ['-i', '-q', '-s', '1', '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres'], { env: { PATH: process.env.PATH!, PGPASSWORD: pg.superPassword } });
pg.sql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench');
await initSqlParser();
const dir = mkdtempSync(join(tmpdir(), 'prof-'));
const lp = await freePort();
writeFileSync(join(dir, 'p.hcl'), `schema_version = 1
endpoint "postgres" "b" {
  host = "127.0.0.1:${pg.port}"
  sslmode = "disable"
}
credential "postgres_credential" "b" {
  endpoint = postgres.b
  user = "bench"
}
profile "default" {
  credentials = [postgres_credential.b]
}
rule "reads" {
  endpoint = postgres.b
  condition = "sets.contains(['select','connect','set','show','begin','commit'], sql.verbs)"
  verdict = "allow"
}
`);
const r = await loadPolicy(join(dir, 'p.hcl'));
if (!r.ok) throw new Error('policy');
const policy = r.policy;
let n = 0;
const enforcer = createEnforcer({ policy: () => policy, secrets: { resolve: (id) => ({ credential: policy.model.credentials.get(id)!, slots: { password: 'pw-bench-1' } }), allValues: () => [] }, approvals: { run: async () => ({ verdict: 'deny', reason: '', stages: [] }) }, audit: { append: () => { n++; }, flush: async () => {}, close: async () => {} }, redactFacts: (a) => a.facts });
const gw = await startPostgresListener({ endpoint: 'postgres.b', listen: `127.0.0.1:${lp}`, enforcer, policy: () => policy });
const session = new Session(); session.connect();
await session.post('Profiler.enable'); await session.post('Profiler.start');
const child = (await import('node:child_process')).spawn('/usr/bin/pgbench', ['-h', '127.0.0.1', '-p', String(lp), '-U', 'bench', '-n', '-S', '-c', '1', '-T', '5', 'postgres'], { env: { PATH: process.env.PATH!, PGSSLMODE: 'disable' } });
let out = ''; child.stdout.on('data', (d) => out += d); child.stderr.on('data', (d) => out += d);
await new Promise((res) => child.on('close', res));
const { profile } = await session.post('Profiler.stop');
console.log(out, 'audit', n);
// aggregate self time per function
const self = new Map<string, number>();
const total = profile.endTime - profile.startTime;
const dt = new Map<number, number>();
for (let i = 0; i < profile.samples!.length; i++) dt.set(profile.samples![i]!, (dt.get(profile.samples![i]!) ?? 0) + (profile.timeDeltas![i] ?? 0));
for (const node of profile.nodes) {
  const k = `${node.callFrame.functionName || '(anon)'} ${node.callFrame.url.split('/').slice(-2).join('/')}:${node.callFrame.lineNumber}`;
  self.set(k, (self.get(k) ?? 0) + (dt.get(node.id) ?? 0));
}
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log((v / total * 100).toFixed(1) + '%', k);
// inclusive time
const byId = new Map(profile.nodes.map((nd) => [nd.id, nd]));
const incl = new Map<string, number>();
function walk(id: number, stack: Set<string>): number {
  const nd = byId.get(id)!;
  let t = dt.get(id) ?? 0;
  for (const c of nd.children ?? []) t += walk(c, stack);
  const k = `${nd.callFrame.functionName || '(anon)'} ${nd.callFrame.url.split('/').slice(-2).join('/')}`;
  incl.set(k, (incl.get(k) ?? 0) + t);
  return t;
}
walk(profile.nodes[0]!.id, new Set());
console.log('--- inclusive');
for (const [k, v] of [...incl.entries()].filter(([k]) => /postgres\/|policy\/|gateway\/|vault\/|cel-js|lib\//.test(k)).sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log((v / total * 100).toFixed(1) + '%', k);
await gw.close(); await pg.stop();
