/**
 * Audit log cost, side by side with baselines in one run, on a fresh SQLite
 * state dir per case.
 *
 *   node --import tsx bench/audit/append.bench.ts [--records 100000] [--rounds 3]
 *
 * The audit log writes from a worker thread (`thread`, the default); the
 * `inline` writer — the same code on the caller's thread, as it was before
 * the thread existed — runs beside it as the "before".
 *
 * 1. Data-path cost of append() — what a protocol engine pays per action:
 *      AuditLog.append()         queue only (the write happens later, batched)
 *      baseline: array.push      the floor for "remember this record"
 *      baseline: blocking insert one autocommit INSERT per record on the caller's turn
 * 2. Throughput to durable (append N, then flush()):
 *      AuditLog thread / inline  canonical JSON + SHA-256 chain + batched transactions
 *      baseline: batched INSERT  same batches, JSON.stringify, no chain
 *      baseline: autocommit      one INSERT transaction per record, no chain
 * 3. Event-loop delay of the appending thread (monitorEventLoopDelay: what
 *    every other connection of the gateway feels) and how long that thread
 *    was busy (event-loop utilisation): no audit log, inline writer, thread
 *    writer —
 *      steady   5,000 records/s for 3 s (a busy gateway)
 *      burst    all N records in bursts of 500 per tick (an overload)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { openStore } from '../../src/store/index.js';
import { AuditLog } from '../../src/audit/index.js';
import type { AuditRecordInput } from '../../src/gateway/contracts.js';

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(name);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
}
const N = flag('--records', 100_000);
/** Throughput and event-loop cases run this many times, interleaved, and report the median: the box's load swings. */
const ROUNDS = Math.max(1, flag('--rounds', 3));
const key = randomBytes(32);

function rec(i: number): AuditRecordInput {
  return {
    time: new Date(Date.UTC(2030, 0, 1) + i).toISOString(),
    peer: `wg:peer-${i % 50}`,
    profile: 'default',
    endpoint: 'https.github',
    family: 'http',
    host: 'api.github.com',
    facts: {
      http: {
        method: i % 4 ? 'GET' : 'POST',
        path: `/repos/acme/app/issues/${i}`,
        raw_path: `/repos/acme/app/issues/${i}?per_page=50`,
        host: 'api.github.com',
        query: { per_page: ['50'] },
        headers: { authorization: '***', accept: 'application/vnd.github+json', 'user-agent': 'agent/1.0', 'content-type': 'application/json' },
        body: i % 4 ? '' : '{"title":"bug","body":"steps to reproduce…"}',
        body_json: i % 4 ? {} : { title: 'bug', body: 'steps to reproduce…' },
      },
    },
    rule: i % 4 ? '' : 'github-writes',
    verdict: i % 4 ? 'allow' : 'approve',
    outcome: 'allow',
    reason: i % 4 ? '' : 'approved by maintainer',
    mode: 'enforce',
    failClosed: false,
    credential: 'bearer_token.github',
    approvals: [],
    latencyMs: 1.234,
    bytesIn: 512,
    bytesOut: 4096,
    status: '200',
  };
}

const records = Array.from({ length: N }, (_, i) => rec(i + 1));
const root = mkdtempSync(join(tmpdir(), 'clawpatrol-bench-audit-'));
let dirs = 0;
const freshDir = () => join(root, `s${dirs++}`);

function fmtNs(ns: number): string {
  return ns < 1000 ? `${ns.toFixed(0)} ns` : `${(ns / 1000).toFixed(2)} µs`;
}
function fmtRate(perSec: number): string {
  return `${Math.round(perSec).toLocaleString('en-US')} rec/s`;
}

function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

type Writer = 'thread' | 'inline';
const WRITERS: readonly Writer[] = ['thread', 'inline'];

/** One record written, so a thread writer has started and opened its connection before timing starts. */
async function warmUp(log: AuditLog): Promise<void> {
  log.append(records[0]!);
  await log.flush();
}

/** Raw SQLite table shaped like the audit table, for the baselines. */
function rawDb(): Database.Database {
  const dir = freshDir();
  const db = new Database(join(dir + '.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec('CREATE TABLE t (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)');
  return db;
}

async function dataPath(): Promise<void> {
  console.log(`\n1. data-path cost per call (${N.toLocaleString('en-US')} calls)`);
  // array.push
  {
    const arr: AuditRecordInput[] = [];
    const t = process.hrtime.bigint();
    for (const r of records) arr.push(r);
    const ns = Number(process.hrtime.bigint() - t) / N;
    console.log(`   baseline array.push        ${fmtNs(ns).padStart(10)}`);
  }
  let appendNs = 0;
  {
    const store = await openStore({ stateDir: freshDir() });
    const log = new AuditLog({ store, key, pruneIntervalMs: 0 });
    // A warm-up round so the JIT has compiled append().
    for (let i = 0; i < 1000; i++) log.append(records[i]!);
    await log.flush();
    const t = process.hrtime.bigint();
    for (const r of records) log.append(r);
    appendNs = Number(process.hrtime.bigint() - t) / N;
    await log.close();
    await store.close();
    console.log(`   AuditLog.append()          ${fmtNs(appendNs).padStart(10)}`);
  }
  {
    const db = rawDb();
    const ins = db.prepare('INSERT INTO t (seq, ts, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?)');
    const n = Math.min(N, 20_000);
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) ins.run(i + 1, i, JSON.stringify(records[i]), '', '');
    const ns = Number(process.hrtime.bigint() - t) / n;
    db.close();
    console.log(`   baseline blocking insert   ${fmtNs(ns).padStart(10)}   (blocking insert / append() = ${(ns / appendNs).toFixed(0)}×; measured on ${n.toLocaleString('en-US')})`);
  }
}

async function throughput(): Promise<void> {
  console.log(`\n2. throughput to durable (${N.toLocaleString('en-US')} records, append then flush; AuditLog: median of ${ROUNDS} interleaved rounds)`);
  const runs: Record<Writer, number[]> = { thread: [], inline: [] };
  for (let i = 0; i < ROUNDS; i++) {
    for (const writer of WRITERS) {
      const store = await openStore({ stateDir: freshDir() });
      const log = new AuditLog({ store, key, pruneIntervalMs: 0, thread: writer === 'thread' });
      await warmUp(log);
      const t = performance.now();
      for (const r of records) log.append(r);
      await log.flush();
      runs[writer].push(N / ((performance.now() - t) / 1000));
      await log.close();
      await store.close();
    }
  }
  const rates: Record<Writer, number> = { thread: median(runs.thread), inline: median(runs.inline) };
  const chained = rates.inline; // the same work on one thread, for the cost of the chain
  console.log(`   AuditLog, thread writer    ${fmtRate(rates.thread).padStart(16)}`);
  console.log(`   AuditLog, inline writer    ${fmtRate(rates.inline).padStart(16)}   (thread / inline = ${(rates.thread / rates.inline).toFixed(2)}×)`);
  {
    const db = rawDb();
    const ins = db.prepare('INSERT INTO t (seq, ts, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?)');
    const batch = db.transaction((from: number, to: number) => {
      for (let i = from; i < to; i++) ins.run(i + 1, i, JSON.stringify(records[i]), '', '');
    });
    const t = performance.now();
    for (let i = 0; i < N; i += 2000) batch(i, Math.min(N, i + 2000));
    const rate = N / ((performance.now() - t) / 1000);
    db.close();
    console.log(`   baseline batched INSERT    ${fmtRate(rate).padStart(16)}   (batched INSERT / inline AuditLog = ${(rate / chained).toFixed(2)}×: the cost of canonical JSON + SHA-256)`);
  }
  {
    const db = rawDb();
    const ins = db.prepare('INSERT INTO t (seq, ts, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?)');
    const n = Math.min(N, 20_000);
    const t = performance.now();
    for (let i = 0; i < n; i++) ins.run(i + 1, i, JSON.stringify(records[i]), '', '');
    const rate = n / ((performance.now() - t) / 1000);
    db.close();
    console.log(`   baseline autocommit        ${fmtRate(rate).padStart(16)}   (AuditLog / autocommit = ${(chained / rate).toFixed(2)}×)`);
  }
}

async function loopDelay(): Promise<void> {
  const ms = (v: number) => (v / 1e6).toFixed(2);
  /** Event-loop delay percentiles (ns) and the appending thread's busy time (ms, event-loop utilisation). */
  type Delay = { p50: number; p99: number; max: number; busyMs: number };
  const run = async (writer: Writer | 'none', produce: (emit: (r: AuditRecordInput) => void) => Promise<void>): Promise<Delay> => {
    const store = await openStore({ stateDir: freshDir() });
    const log = new AuditLog({ store, key, pruneIntervalMs: 0, thread: writer === 'thread' });
    await warmUp(log); // the thread is started and the database opened before measuring
    const sink: AuditRecordInput[] = [];
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const elu = performance.eventLoopUtilization();
    await produce(writer === 'none' ? (r) => sink.push(r) : (r) => log.append(r));
    await log.flush();
    const busyMs = performance.eventLoopUtilization(elu).active;
    h.disable();
    await log.close();
    await store.close();
    return { p50: h.percentile(50), p99: h.percentile(99), max: h.max, busyMs };
  };
  const show = (label: string, d: Delay, vs?: Delay) =>
    console.log(
      `   ${label.padEnd(30)}p50 ${ms(d.p50).padStart(6)} ms  p99 ${ms(d.p99).padStart(6)} ms  max ${ms(d.max).padStart(7)} ms  busy ${d.busyMs.toFixed(0).padStart(5)} ms` +
        (vs ? `   (inline / thread: p99 ${(vs.p99 / d.p99).toFixed(1)}×, busy ${(vs.busyMs / d.busyMs).toFixed(1)}×)` : ''),
    );
  const steady = async (emit: (r: AuditRecordInput) => void) => {
    // 5 records every millisecond for 3 s
    const start = performance.now();
    let sent = 0;
    while (performance.now() - start < 3000) {
      const due = Math.floor((performance.now() - start) * 5);
      for (; sent < due; sent++) emit(records[sent % N]!);
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  const burst = async (emit: (r: AuditRecordInput) => void) => {
    for (let i = 0; i < N; i += 500) {
      for (let j = i; j < Math.min(N, i + 500); j++) emit(records[j]!);
      await new Promise((r) => setImmediate(r));
    }
  };
  const medianOf = (runs: Delay[]): Delay => ({
    p50: median(runs.map((d) => d.p50)),
    p99: median(runs.map((d) => d.p99)),
    max: median(runs.map((d) => d.max)),
    busyMs: median(runs.map((d) => d.busyMs)),
  });
  console.log(`\n3. event-loop delay of the appending thread (median of ${ROUNDS} interleaved rounds)`);
  for (const [name, produce] of [
    ['steady 5,000 rec/s, 3 s', steady],
    [`burst ${N.toLocaleString('en-US')} × 500/tick`, burst],
  ] as const) {
    const runs: Record<Writer | 'none', Delay[]> = { none: [], inline: [], thread: [] };
    for (let i = 0; i < ROUNDS; i++) for (const w of ['none', 'inline', 'thread'] as const) runs[w].push(await run(w, produce));
    const inline = medianOf(runs.inline);
    console.log(`   ${name}`);
    show('  no audit log', medianOf(runs.none));
    show('  inline writer (before)', inline);
    show('  thread writer (after)', medianOf(runs.thread), inline);
  }
}

console.log(`clawpatrol audit benchmark — node ${process.version}, ${N.toLocaleString('en-US')} records`);
try {
  await dataPath();
  await throughput();
  await loopDelay();
} finally {
  rmSync(root, { recursive: true, force: true });
}
