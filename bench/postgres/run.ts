/**
 * Postgres gateway benchmark: pgbench through several paths to one real
 * PostgreSQL 15, interleaved round by round so that machine noise hits all
 * of them alike.
 *
 *   direct   pgbench → PostgreSQL
 *   relay    pgbench → a do-nothing Node.js TCP relay → PostgreSQL (the floor for any Node proxy)
 *   pgbouncer pgbench → pgbouncer (session pooling) → PostgreSQL
 *   gateway  pgbench → clawpatrol's Postgres listener (20-rule policy, real enforcer, real
 *            vault, real hash-chained audit log in SQLite written by its thread) → PostgreSQL
 *   gateway, audit off   the same with the audit redaction and log replaced by no-ops
 *   engine only, policy stubbed   diagnostic: the engine with a stub that allows every statement
 *   gateway, audit written inline   diagnostic, only when named in --paths: the audit log's writer on
 *            the gateway's own thread instead of its worker thread
 *
 * Workloads: pgbench's built-in select-only (-S) and a mixed read script
 * (point reads on three tables, a range join, an aggregate), at 1 and 8
 * clients, simple query protocol (every statement text differs, so the
 * gateway parses each one: no parse-cache help).
 *
 *   npx tsx bench/postgres/run.ts [--seconds 5] [--rounds 3] [--scale 1] [--workload select-only|mixed] [--clients 1|8]
 *                                 [--paths 'node relay;gateway'] [--profile <dir>] [--dist]
 *
 * Prints a Markdown table: TPS (median of rounds), ratio to direct and to
 * the relay (also paired per round), this process's CPU per transaction,
 * p50/p99 transaction latency and the p50 added over direct.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, chownSync, chmodSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPgCluster, freePort, type PgCluster } from '../../test/support/pg-cluster.js';
import type { Enforcement, Enforcer } from '../../src/gateway/contracts.js';
import { benchRules } from './policy.js';

// `--dist`: the gateway's modules come from the compiled dist/ (`npm run build` first), the code
// `clawpatrol gateway` runs. From src/ through tsx, esbuild's keepNames transform names every
// closure as it is created (a defineProperty each), which the engine and the enforcer do per statement.
const root = process.argv.includes('--dist') ? '../../dist/src' : '../../src';
const { loadPolicy, formatDiagnostic } = (await import(`${root}/policy/index.js`)) as typeof import('../../src/policy/index.js');
const { createEnforcer } = (await import(`${root}/gateway/enforcer.js`)) as typeof import('../../src/gateway/enforcer.js');
const { AuditLog, AUDIT_KEY_PURPOSE } = (await import(`${root}/audit/index.js`)) as typeof import('../../src/audit/index.js');
const { openVault } = (await import(`${root}/vault/index.js`)) as typeof import('../../src/vault/index.js');
const { createFactsRedactor } = (await import(`${root}/audit/redact.js`)) as typeof import('../../src/audit/redact.js');
const { openSqliteStore } = (await import(`${root}/store/sqlite.js`)) as typeof import('../../src/store/sqlite.js');
const { startPostgresListener } = (await import(`${root}/protocols/postgres/listener.js`)) as typeof import('../../src/protocols/postgres/listener.js');
const { initSqlParser } = (await import(`${root}/protocols/postgres/sql.js`)) as typeof import('../../src/protocols/postgres/sql.js');

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 5);
/** Diagnostic paths run only when `--paths` names them. */
const OPT_IN_PATHS = new Set(['gateway, audit written inline']);
const ROUNDS = arg('rounds', 3);
const SCALE = arg('scale', 1);
const PASSWORD = 'bench-Secret-42';

const MIXED = `\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT bbalance FROM pgbench_branches WHERE bid = :bid;
SELECT tbalance FROM pgbench_tellers WHERE tid = :tid;
SELECT a.aid, a.abalance, t.tbalance FROM pgbench_accounts a JOIN pgbench_tellers t ON t.bid = a.bid WHERE a.aid BETWEEN :aid AND :aid + 5 AND t.tid = :tid;
SELECT count(*), max(abalance) FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 20;
`;

/** The benchmark policy: the 20 rules of policy.ts on an endpoint with a local listener. */
function policyHcl(pgPort: number, listenPort: number): string {
  return `schema_version = 1
gateway {
  limits {
    body_buffer = "1MiB"
  }
}
endpoint "postgres" "bench" {
  host    = "127.0.0.1:${pgPort}"
  sslmode = "disable"
  listen  = "127.0.0.1:${listenPort}"
}
credential "postgres_credential" "bench" {
  endpoint = postgres.bench
  user     = "bench"
}
profile "default" {
  credentials = [{ credential = postgres_credential.bench, placeholder = "PH_bench" }]
}
${benchRules('postgres.bench')}
`;
}

function startRelay(targetPort: number): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer((client: Socket) => {
      client.setNoDelay(true);
      const up = connect({ host: '127.0.0.1', port: targetPort });
      up.setNoDelay(true);
      client.pipe(up).pipe(client);
      client.on('error', () => up.destroy());
      up.on('error', () => client.destroy());
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

async function startPgbouncer(pg: PgCluster, dir: string): Promise<{ stop(): void; port: number }> {
  const port = await freePort();
  writeFileSync(join(dir, 'userlist.txt'), `"bench" "${PASSWORD}"\n`);
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    `[databases]
postgres = host=127.0.0.1 port=${pg.port} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = plain
auth_file = ${join(dir, 'userlist.txt')}
pool_mode = session
max_client_conn = 100
default_pool_size = 20
logfile = ${join(dir, 'pgbouncer.log')}
`,
  );
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    for (const f of ['', 'userlist.txt', 'pgbouncer.ini']) chownSync(join(dir, f), uid, gid);
  }
  chmodSync(join(dir, 'userlist.txt'), 0o600);
  const child = spawn(
    process.getuid?.() === 0 ? 'runuser' : '/usr/sbin/pgbouncer',
    process.getuid?.() === 0 ? ['-u', 'postgres', '--', '/usr/sbin/pgbouncer', join(dir, 'pgbouncer.ini')] : [join(dir, 'pgbouncer.ini')],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((r) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, stop: () => child.kill('SIGTERM') };
}

interface Run {
  tps: number;
  latenciesUs: number[];
  /** CPU time of this Node process (every thread: gateway, relay, audit writer) per transaction, µs. */
  nodeCpuUsPerTx?: number;
  /** Busy CPU time of the whole machine (PostgreSQL, pgbench, this process, the kernel) per transaction, µs. */
  machineCpuUsPerTx?: number;
  /** Share of the machine's CPU time left idle during the run. */
  machineIdle?: number;
}

/** The machine's CPU times from /proc/stat, in clock ticks: total and idle (idle + iowait). */
function machineTicks(): { total: number; idle: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: cpu.reduce((a, b) => a + b, 0), idle: cpu[3]! + cpu[4]! };
}
/** Clock ticks per second of /proc/stat (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

function pgbench(port: number, user: string, workload: 'select-only' | 'mixed', clients: number, dir: string): Promise<Run> {
  const logDir = mkdtempSync(join(dir, 'log-'));
  const args = ['-h', '127.0.0.1', '-p', String(port), '-U', user, '-n', '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(SECONDS), '-l', '--log-prefix', join(logDir, 'tx')];
  if (workload === 'select-only') args.push('-S');
  else args.push('-f', join(dir, 'mixed.sql'));
  args.push('postgres');
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/pgbench', args, { env: { PATH: process.env.PATH ?? '', PGPASSWORD: PASSWORD, PGSSLMODE: 'disable' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      const m = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
      if (code !== 0 || !m) {
        reject(new Error(`pgbench failed (${code}):\n${out}`));
        return;
      }
      const latenciesUs: number[] = [];
      for (const f of readdirSync(logDir)) {
        for (const line of readFileSync(join(logDir, f), 'utf8').split('\n')) {
          const parts = line.split(' ');
          if (parts.length >= 3) latenciesUs.push(Number(parts[2]));
        }
      }
      rmSync(logDir, { recursive: true, force: true });
      resolve({ tps: Number(m[1]), latenciesUs });
    });
  });
}

async function startProfiler(): Promise<{ post(method: string, params?: object): Promise<unknown> }> {
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 100 });
  return { post };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor(s.length / 2)]!;
};

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cp-pgbench-'));
  if (process.getuid?.() === 0) chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'mixed.sql'), MIXED);
  const pg = await startPgCluster();
  const cleanups: Array<() => unknown> = [() => pg.stop(), () => rmSync(dir, { recursive: true, force: true })];
  try {
    pg.createUser('bench', PASSWORD, 'scram-sha-256');
    execFileSync('/usr/bin/pgbench', ['-i', '-q', '-s', String(SCALE), '-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres', 'postgres'], {
      stdio: 'ignore',
      env: { PATH: process.env.PATH ?? '', PGPASSWORD: pg.superPassword },
    });
    pg.sql('GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO bench');

    const relay = await startRelay(pg.port);
    cleanups.push(() => relay.server.close());
    const bouncerDir = mkdtempSync(join(dir, 'bouncer-'));
    const bouncer = await startPgbouncer(pg, bouncerDir);
    cleanups.push(() => bouncer.stop());

    await initSqlParser();
    const listenPort = await freePort();
    writeFileSync(join(dir, 'policy.hcl'), policyHcl(pg.port, listenPort));
    const loaded = await loadPolicy(join(dir, 'policy.hcl'));
    if (!loaded.ok) throw new Error(loaded.diagnostics.map(formatDiagnostic).join('\n'));
    const policy = loaded.policy;
    // Wired as the composition root wires it: the real vault (sealed in the same SQLite store)
    // as the secret resolver and scrub source, the real audit log and facts redactor.
    const storeDir = mkdtempSync(join(dir, 'state-'));
    const store = openSqliteStore(storeDir);
    const vault = await openVault({ store, stateDir: storeDir, model: () => policy.model, env: {}, key: 'create' });
    await vault.set('postgres_credential.bench', 'password', PASSWORD);
    cleanups.push(() => vault.close());
    const audit = new AuditLog({ store, key: vault.subkey(AUDIT_KEY_PURPOSE), pruneIntervalMs: 0 });
    cleanups.push(() => audit.close());
    const approvals = { run: async () => ({ verdict: 'deny' as const, reason: 'no approver in the benchmark', stages: [] }) };
    const enforcer = createEnforcer({
      policy: () => policy,
      secrets: vault,
      approvals,
      audit,
      redactFacts: createFactsRedactor({ model: () => policy.model, secrets: vault }),
    });
    /** A listener for postgres.bench deciding through `via` (port 0: any free one). */
    const listenWith = (via: Enforcer, port = 0) =>
      startPostgresListener({
        endpoint: 'postgres.bench',
        listen: `127.0.0.1:${port}`,
        enforcer: via,
        policy: () => policy,
        profile: 'default',
        scrubValues: () => vault.allValues(),
      });
    const gateway = await listenWith(enforcer, listenPort);
    cleanups.push(() => gateway.close());
    // The same gateway with the audit record's redaction and the audit log replaced by no-ops:
    // shows what the per-statement audit costs on the data path.
    const bareEnforcer = createEnforcer({
      policy: () => policy,
      secrets: vault,
      approvals,
      audit: { append: () => {}, flush: async () => {}, close: async () => {} },
      redactFacts: (a) => a.facts,
    });
    const bare = await listenWith(bareEnforcer);
    cleanups.push(() => bare.close());
    // The same gateway with its audit log written on the gateway's own thread (`thread: false`,
    // its own SQLite store): what the writer thread costs and buys against writing inline.
    const inlineStore = openSqliteStore(mkdtempSync(join(dir, 'state-inline-')));
    const inlineAudit = new AuditLog({ store: inlineStore, key: vault.subkey(AUDIT_KEY_PURPOSE), pruneIntervalMs: 0, thread: false });
    cleanups.push(async () => {
      await inlineAudit.close();
      await inlineStore.close();
    });
    const inlineEnforcer = createEnforcer({
      policy: () => policy,
      secrets: vault,
      approvals,
      audit: inlineAudit,
      redactFacts: createFactsRedactor({ model: () => policy.model, secrets: vault }),
    });
    const inline = await listenWith(inlineEnforcer);
    cleanups.push(() => inline.close());
    // A diagnostic path, not a configuration: the engine alone (decode, SQL analysis, response
    // tracking, scrubbing), every statement allowed by a stub without policy or audit. The session
    // start still goes through the real enforcer (it resolves the login credential).
    const allowed: Enforcement = {
      allowed: true,
      decision: { verdict: 'allow', effective: 'allow', mode: 'enforce', rule: '', endpoint: 'postgres.bench', credential: 'postgres_credential.bench', reason: 'stub', approve: [], failClosed: false, passthrough: false },
      reason: 'stub',
      approvals: [],
      material: null,
      finish: () => {},
    };
    const stubEnforcer: Enforcer = {
      enforce: async (a) => (a.phase === 'session_start' ? bareEnforcer.enforce(a) : allowed),
      enforceNow: (a) => (a.phase === 'session_start' ? bareEnforcer.enforceNow!(a) : allowed),
    };
    const engineOnly = await listenWith(stubEnforcer);
    cleanups.push(() => engineOnly.close());

    const only = (name: string): string | undefined => {
      const i = process.argv.indexOf(`--${name}`);
      return i >= 0 ? process.argv[i + 1] : undefined;
    };
    // `--paths 'node relay;gateway'`: only these paths (direct is kept unless `no-direct` is listed).
    const paths = only('paths')?.split(';');
    // `--profile <dir>`: a CPU profile of the main thread during one path's runs (`--profile-path`, default gateway).
    const profileDir = only('profile');
    const profiler = profileDir ? await startProfiler() : null;
    const targets = [
      { name: 'direct', port: pg.port, user: 'bench' },
      { name: 'node relay', port: relay.port, user: 'bench' },
      { name: 'pgbouncer', port: bouncer.port, user: 'bench' },
      { name: 'gateway', port: listenPort, user: 'PH_bench' },
      { name: 'gateway, audit off', port: bare.address.port, user: 'PH_bench' },
      { name: 'gateway, audit written inline', port: inline.address.port, user: 'PH_bench' },
      { name: 'engine only, policy stubbed', port: engineOnly.address.port, user: 'PH_bench' },
    ].filter((t) => (!paths ? !OPT_IN_PATHS.has(t.name) : paths.includes(t.name) || (t.name === 'direct' && !paths.includes('no-direct'))));

    const cases = [
      { workload: 'select-only' as const, clients: 1 },
      { workload: 'select-only' as const, clients: 8 },
      { workload: 'mixed' as const, clients: 1 },
      { workload: 'mixed' as const, clients: 8 },
    ].filter((c) => (only('workload') ?? c.workload) === c.workload && Number(only('clients') ?? c.clients) === c.clients);
    const results = new Map<string, Run[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of cases) {
        for (const t of targets) {
          const profiled = profiler && t.name === (only('profile-path') ?? 'gateway');
          if (profiled) await profiler.post('Profiler.start');
          const cpu0 = process.cpuUsage();
          const ticks0 = machineTicks();
          const r = await pgbench(t.port, t.user, c.workload, c.clients, dir);
          const cpu = process.cpuUsage(cpu0);
          const ticks1 = machineTicks();
          if (profiled) {
            const { profile } = (await profiler.post('Profiler.stop')) as { profile: unknown };
            writeFileSync(join(profileDir!, `${t.name.replace(/\W+/g, '-')}-${c.workload}-c${c.clients}-r${round + 1}.cpuprofile`), JSON.stringify(profile));
          }
          r.nodeCpuUsPerTx = (cpu.user + cpu.system) / Math.max(1, r.latenciesUs.length);
          const total = ticks1.total - ticks0.total;
          const busy = total - (ticks1.idle - ticks0.idle);
          r.machineCpuUsPerTx = (busy * 1e6) / USER_HZ / Math.max(1, r.latenciesUs.length);
          r.machineIdle = total > 0 ? 1 - busy / total : NaN;
          const key = `${c.workload}|${c.clients}|${t.name}`;
          if (!results.has(key)) results.set(key, []);
          results.get(key)!.push(r);
          process.stderr.write(`round ${round + 1}/${ROUNDS} ${c.workload} c=${c.clients} ${t.name}: ${r.tps.toFixed(0)} tps\n`);
        }
      }
    }
    await audit.flush();

    const rows: string[] = [
      `pgbench ${SECONDS}s × ${ROUNDS} rounds, scale ${SCALE}, simple protocol; TPS = median of rounds; latency over all transactions of all rounds; gateway modules from ${root === '../../src' ? 'src/ through tsx' : 'dist/'}.`,
      '',
      '"vs relay, paired" is the median over rounds of this path\'s TPS over the relay\'s in the same round; "node CPU" is this process\'s CPU time (all threads) per transaction; "machine CPU" is the whole machine\'s busy time per transaction (pgbench\'s run, pgbench and PostgreSQL included) and "idle" the share of the machine left idle meanwhile (/proc/stat).',
      '',
      '| workload | clients | path | TPS | vs direct | vs node relay | vs relay, paired | node CPU µs/tx | machine CPU µs/tx | idle | p50 µs | p99 µs | added p50 µs |',
      '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ];
    for (const c of cases) {
      const runsOf = (name: string): Run[] => results.get(`${c.workload}|${c.clients}|${name}`) ?? [];
      const stat = (name: string) => {
        const runs = runsOf(name);
        const lat = runs.flatMap((r) => r.latenciesUs).sort((a, b) => a - b);
        const relayRuns = runsOf('node relay');
        return {
          tps: median(runs.map((r) => r.tps)),
          paired: median(runs.flatMap((r, i) => (relayRuns[i] ? [r.tps / relayRuns[i]!.tps] : []))),
          cpu: median(runs.map((r) => r.nodeCpuUsPerTx ?? NaN)),
          machine: median(runs.map((r) => r.machineCpuUsPerTx ?? NaN)),
          idle: median(runs.map((r) => r.machineIdle ?? NaN)),
          p50: percentile(lat, 50),
          p99: percentile(lat, 99),
        };
      };
      const direct = stat('direct');
      const relayS = stat('node relay');
      for (const t of targets) {
        const s = stat(t.name);
        const cpu = t.name === 'direct' || t.name === 'pgbouncer' ? '—' : s.cpu.toFixed(0);
        rows.push(
          `| ${c.workload} | ${c.clients} | ${t.name} | ${s.tps.toFixed(0)} | ${(s.tps / direct.tps).toFixed(2)} | ${(s.tps / relayS.tps).toFixed(2)} | ${s.paired.toFixed(2)} | ${cpu} | ${s.machine.toFixed(0)} | ${(s.idle * 100).toFixed(0)} % | ${s.p50.toFixed(0)} | ${s.p99.toFixed(0)} | ${t.name === 'direct' ? '—' : (s.p50 - direct.p50).toFixed(0)} |`,
        );
      }
    }
    const stats = audit.stats();
    rows.push('', `gateway audit records written: ${JSON.stringify(stats)}`);
    process.stdout.write(rows.join('\n') + '\n');
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        /* keep cleaning */
      }
    }
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
