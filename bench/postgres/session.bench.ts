/**
 * Where a statement's time goes inside the gateway, without sockets: the
 * sans-I/O session is fed pgbench-style Queries (a different literal each
 * time) and answered with a canned server reply, side by side:
 *
 *   codec only        decoder + tracker, every message allowed by a stub enforcer
 *   + SQL analysis    the real parser (literal-shape cache) and facts
 *   + policy          the real enforcer and a 20-rule policy, audit discarded
 *   + redaction       the audit module's facts redactor (as the gateway wires it)
 *   + audit log       the real hash-chained audit log in SQLite
 *
 *   npx tsx bench/postgres/session.bench.ts [--seconds 3]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import { loadPolicy, formatDiagnostic } from '../../src/policy/index.js';
import type { Action } from '../../src/policy/types.js';
import { createEnforcer } from '../../src/gateway/enforcer.js';
import type { Enforcement, Enforcer } from '../../src/gateway/contracts.js';
import { AuditLog } from '../../src/audit/index.js';
import { createFactsRedactor } from '../../src/audit/redact.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { PostgresSession } from '../../src/protocols/postgres/session.js';
import { initSqlParser } from '../../src/protocols/postgres/sql.js';
import { readyForQuery } from '../../src/protocols/postgres/backend-messages.js';
import { scrubberFor } from '../../src/vault/scrub.js';

const i = process.argv.indexOf('--seconds');
const SECONDS = i >= 0 ? Number(process.argv[i + 1]) : 3;

const POLICY = `schema_version = 1
endpoint "postgres" "b" {
  host = "db:5432"
}
credential "postgres_credential" "b" {
  endpoint = postgres.b
  user     = "bench"
}
${Array.from(
  { length: 19 },
  (_, n) => `rule "deny-${n}" {
  endpoint  = postgres.b
  priority  = ${100 - n}
  condition = "'tenant_${n}.ledger' in sql.tables || sets.intersects(sql.functions, ['f_${n}'])"
  verdict   = "deny"
}`,
).join('\n')}
rule "reads" {
  endpoint  = postgres.b
  condition = "sets.contains(['select'], sql.verbs)"
  verdict   = "allow"
}
`;

// A canned reply: RowDescription-less DataRow + CommandComplete + ReadyForQuery (what pgbench -S gets, roughly).
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

async function run(name: string, enforcer: Enforcer, analyze: boolean): Promise<number> {
  const answer = reply();
  let n = 0;
  let session!: PostgresSession;
  let done: () => void = () => {};
  session = new PostgresSession(
    {
      endpointId: 'postgres.b',
      host: 'db',
      port: 5432,
      profile: undefined as unknown as string,
      peer: { id: 'bench' },
      user: 'bench',
      database: 'postgres',
      maxBuffered: 1 << 20,
      credentialId: analyze ? 'postgres_credential.b' : null,
      scrubber: scrubberFor(['bench-secret-password']),
    },
    {
      toAgent: () => {
        done();
      },
      toUpstream: () => {},
      decide: (a: Action) => {
        void enforcer.enforce(a).then((e) => {
          session.decided(e);
          session.fromUpstream(answer);
        });
      },
      close: () => {},
    },
  );
  const deadline = performance.now() + SECONDS * 1000;
  const started = performance.now();
  while (performance.now() < deadline) {
    await new Promise<void>((resolve) => {
      done = resolve;
      session.fromAgent(serialize.query(`SELECT abalance FROM pgbench_accounts WHERE aid = ${1 + ((n * 7919) % 100000)};`));
    });
    n++;
  }
  const us = ((performance.now() - started) * 1000) / n;
  process.stdout.write(`| ${name} | ${n} | ${us.toFixed(1)} |\n`);
  return us;
}

async function main(): Promise<void> {
  await initSqlParser();
  const dir = mkdtempSync(join(tmpdir(), 'cp-sbench-'));
  try {
    writeFileSync(join(dir, 'p.hcl'), POLICY);
    const loaded = await loadPolicy(join(dir, 'p.hcl'));
    if (!loaded.ok) throw new Error(loaded.diagnostics.map(formatDiagnostic).join('\n'));
    const policy = loaded.policy;
    const allowAll: Enforcer = {
      enforce: async () =>
        ({
          allowed: true,
          decision: { credential: null, rule: '', verdict: 'allow', effective: 'allow', mode: 'enforce', endpoint: 'postgres.b', reason: '', approve: [], failClosed: false, passthrough: false },
          reason: '',
          approvals: [],
          material: null,
          finish: () => {},
        }) as Enforcement,
    };
    const secrets = {
      resolve: (id: string) => ({ credential: policy.model.credentials.get(id)!, slots: { password: 'bench-secret-password' } }),
      allValues: () => ['bench-secret-password'],
    };
    const noAudit = createEnforcer({
      policy: () => policy,
      secrets,
      approvals: { run: async () => ({ verdict: 'deny', reason: '', stages: [] }) },
      audit: { append: () => {}, flush: async () => {}, close: async () => {} },
      redactFacts: (a) => a.facts,
    });
    const redactOnly = createEnforcer({
      policy: () => policy,
      secrets,
      approvals: { run: async () => ({ verdict: 'deny', reason: '', stages: [] }) },
      audit: { append: () => {}, flush: async () => {}, close: async () => {} },
      redactFacts: createFactsRedactor({ model: () => policy.model, secrets }),
    });
    const store = openSqliteStore(join(dir, 'state'));
    const audit = new AuditLog({ store, key: null, pruneIntervalMs: 0 });
    const withAudit = createEnforcer({
      policy: () => policy,
      secrets,
      approvals: { run: async () => ({ verdict: 'deny', reason: '', stages: [] }) },
      audit,
      redactFacts: createFactsRedactor({ model: () => policy.model, secrets }),
    });

    // Warm up (JIT, caches) with output discarded.
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = (() => true) as typeof process.stdout.write;
    await run('warm-up', withAudit, true);
    process.stdout.write = write;
    process.stdout.write(`session core, ${SECONDS}s per row, one Query at a time\n\n| stage | statements | µs per statement |\n|---|---:|---:|\n`);
    // The codec-only row still analyses SQL (the session always does); the stub enforcer isolates the policy's share.
    await run('session + SQL analysis, stub enforcer', allowAll, false);
    await run('+ enforcer and 20-rule policy (audit discarded)', noAudit, true);
    await run('+ facts redaction for the audit record', redactOnly, true);
    await run('+ hash-chained audit log (SQLite)', withAudit, true);
    await audit.close();
    store.close?.();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
