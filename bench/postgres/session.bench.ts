/**
 * Where a statement's CPU goes inside the gateway, without sockets: the
 * sans-I/O session is fed pgbench-style Queries (a different literal each
 * time) and answered with a canned server reply. Stages, each adding one
 * part of the real data path, interleaved round by round:
 *
 *   session + SQL analysis   decoder, literal-shape parse cache, facts, tracker,
 *                            scrubber; a stub enforcer that allows at once
 *   + policy                 the real enforcer and the 20-rule benchmark policy
 *                            (bench/postgres/policy.ts), audit discarded
 *   + facts redaction        the audit module's redactor, as the gateway wires it
 *   + audit log              the real hash-chained audit log (SQLite, written
 *                            by its worker thread)
 *
 * CPU time is the process's (every thread, so the audit writer thread
 * counts), divided by the statements of the stage; the median of the rounds.
 *
 *   npx tsx bench/postgres/session.bench.ts [--seconds 2] [--rounds 3] [--only <stage number>]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import { loadPolicy, formatDiagnostic } from '../../src/policy/index.js';
import { createEnforcer } from '../../src/gateway/enforcer.js';
import type { Enforcement, Enforcer } from '../../src/gateway/contracts.js';
import { AuditLog } from '../../src/audit/index.js';
import { createFactsRedactor } from '../../src/audit/redact.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { initSqlParser } from '../../src/protocols/postgres/sql.js';
import { readyForQuery } from '../../src/protocols/postgres/backend-messages.js';
import { scrubberFor } from '../../src/vault/scrub.js';
import { benchRules } from './policy.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 2);
const ROUNDS = arg('rounds', 3);
const PASSWORD = 'bench-secret-password';

const POLICY = `schema_version = 1
endpoint "postgres" "bench" {
  host = "db:5432"
}
credential "postgres_credential" "bench" {
  endpoint = postgres.bench
  user     = "bench"
}
${benchRules('postgres.bench')}
`;

/** What pgbench -S gets back, roughly: DataRow, CommandComplete, ReadyForQuery. */
function reply(): Buffer {
  const val = Buffer.from('12345');
  const row = Buffer.alloc(5 + 2 + 4 + val.length);
  row.write('D', 0, 'latin1');
  row.writeInt32BE(4 + 2 + 4 + val.length, 1);
  row.writeInt16BE(1, 5);
  row.writeInt32BE(val.length, 7);
  val.copy(row, 11);
  const tag = Buffer.from('SELECT 1\0');
  const cc = Buffer.alloc(5 + tag.length);
  cc.write('C', 0, 'latin1');
  cc.writeInt32BE(4 + tag.length, 1);
  tag.copy(cc, 5);
  return Buffer.concat([row, cc, readyForQuery('I')]);
}

/**
 * CPU µs per statement for `SECONDS` of one statement at a time through a
 * fresh session; `drain` (the audit log's flush) is awaited inside the
 * measurement, so a stage pays for its own records and no later stage does.
 */
async function run(enforcer: Enforcer, credentialId: string | null, drain: () => Promise<void> = async () => {}): Promise<number> {
  const answer = reply();
  let replies = 0;
  const session: PostgresSession = new PostgresSession(
    {
      endpointId: 'postgres.bench',
      host: 'db',
      port: 5432,
      peer: { id: 'bench' },
      user: 'bench',
      database: 'postgres',
      ...(credentialId ? { credential: credentialId } : {}),
      loggedIn: true,
      maxBuffered: 1 << 20,
      credentialId,
      scrubber: scrubberFor([PASSWORD]),
    },
    {
      toAgent: () => {
        replies++;
      },
      toUpstream: () => {},
      decide: (a) => enforcer.enforceNow?.(a) ?? void enforcer.enforce(a).then((e) => session.decided(e)),
      close: () => {},
    },
  );
  let n = 0;
  const cpu0 = process.cpuUsage();
  const deadline = performance.now() + SECONDS * 1000;
  while (performance.now() < deadline) {
    // Yield now and then, so timers (the audit log's writes) run as they would live.
    for (let k = 0; k < 200; k++, n++) {
      session.fromAgent(serialize.query(`SELECT abalance FROM pgbench_accounts WHERE aid = ${1 + ((n * 7919) % 100000)};`));
      session.fromUpstream(answer);
    }
    await new Promise((r) => setImmediate(r));
  }
  await drain();
  const cpu = process.cpuUsage(cpu0);
  if (replies !== n) throw new Error(`expected ${n} replies, got ${replies}`);
  return (cpu.user + cpu.system) / n;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  await initSqlParser();
  const dir = mkdtempSync(join(tmpdir(), 'cp-sbench-'));
  try {
    writeFileSync(join(dir, 'p.hcl'), POLICY);
    const loaded = await loadPolicy(join(dir, 'p.hcl'));
    if (!loaded.ok) throw new Error(loaded.diagnostics.map(formatDiagnostic).join('\n'));
    const policy = loaded.policy;
    const allowed: Enforcement = {
      allowed: true,
      decision: { credential: null, rule: '', verdict: 'allow', effective: 'allow', mode: 'enforce', endpoint: 'postgres.bench', reason: '', approve: [], failClosed: false, passthrough: false },
      reason: '',
      approvals: [],
      material: null,
      finish: () => {},
    };
    const stub: Enforcer = { enforce: async () => allowed, enforceNow: () => allowed };
    const secrets = {
      resolve: (id: string) => ({ credential: policy.model.credentials.get(id)!, slots: { password: PASSWORD } }),
      allValues: () => [PASSWORD],
    };
    const common = { policy: () => policy, secrets, approvals: { run: async () => ({ verdict: 'deny' as const, reason: '', stages: [] }) } };
    const discard = { append: () => {}, flush: async () => {}, close: async () => {} };
    const store = openSqliteStore(join(dir, 'state'));
    const audit = new AuditLog({ store, key: null, pruneIntervalMs: 0 });
    const redactFacts = createFactsRedactor({ model: () => policy.model, secrets });
    const cred = 'postgres_credential.bench';
    const stages: Array<[string, () => Promise<number>]> = [
      ['session + SQL analysis, stub enforcer', () => run(stub, null)],
      ['+ enforcer and 20-rule policy (audit discarded)', () => run(createEnforcer({ ...common, audit: discard, redactFacts: (a) => a.facts }), cred)],
      ['+ facts redaction for the audit record', () => run(createEnforcer({ ...common, audit: discard, redactFacts }), cred)],
      ['+ hash-chained audit log (SQLite, writer thread)', () => run(createEnforcer({ ...common, audit, redactFacts }), cred, () => audit.flush())],
    ];
    // `--only <n>`: one stage (1-based), e.g. under --cpu-prof.
    const only = arg('only', 0);
    if (only > 0) stages.splice(0, stages.length, stages[only - 1]!);
    // Warm up (JIT, caches) once per stage.
    for (const [, stage] of stages) await stage();
    const results = stages.map((): number[] => []);
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, [, stage]] of stages.entries()) results[i]!.push(await stage());
    }
    await audit.close();
    store.close?.();
    process.stdout.write(
      `session core, ${SECONDS}s per stage × ${ROUNDS} rounds, one Query at a time; CPU µs per statement (all threads), median of rounds\n\n` +
        '| stage | CPU µs per statement | rounds |\n|---|---:|---|\n' +
        stages.map(([name], i) => `| ${name} | ${median(results[i]!).toFixed(1)} | ${results[i]!.map((x) => x.toFixed(1)).join(', ')} |`).join('\n') +
        '\n',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
