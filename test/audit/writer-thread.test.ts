/**
 * The audit log's writer thread: records are linked and written on a worker
 * thread with its own connection to the same WAL database, the gateway's
 * event loop keeps running while the database makes it wait, and a thread
 * that dies or cannot open the database loses nothing.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { openStore, type Store } from '../../src/store/index.js';
import {
  AuditLog,
  StoreAuditWriter,
  WorkerAuditWriter,
  auditRows,
  canonicalJson,
  verifyStore,
  writerThreadEntry,
} from '../../src/audit/index.js';
import { record } from './records.js';
import { encodeBatch } from '../../src/audit/record-json.js';

describe('audit writer thread', () => {
  let root: string;
  let stateDir: string;
  let store: Store;
  let blocker: Database.Database | null = null;
  const key = randomBytes(32);

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'clawpatrol-audit-thread-'));
    stateDir = join(root, 'state');
    store = await openStore({ stateDir });
  });
  afterEach(async () => {
    blocker?.close();
    blocker = null;
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  /** Another connection takes the database's write lock, as a second gateway process mid-transaction would. */
  function lockDatabase(): Database.Database {
    blocker = new Database(join(stateDir, 'state.db'));
    blocker.exec('BEGIN IMMEDIATE');
    return blocker;
  }

  function threadWriter(): WorkerAuditWriter {
    return new WorkerAuditWriter(store.reopenOptions!(), key);
  }

  it('is the default for SQLite; from TypeScript sources the thread runs the bundled sources', async () => {
    expect(writerThreadEntry().kind).toBe('sources'); // vitest runs src/, where no worker-main.js exists
    const log = new AuditLog({ store, key });
    expect(log.stats().writer).toBe('thread');
    for (let i = 1; i <= 600; i++) log.append(record(i));
    await log.close();
    const rows = await store.audit.range({ limit: 1000 });
    expect(rows).toHaveLength(600);
    // Linked in the thread exactly as on the gateway's thread: same canonical JSON, same chain.
    expect(rows[41]!.record).toBe(canonicalJson({ ...record(42), seq: 42 }));
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 600 });
  });

  it('the event loop keeps running while the database makes the writer wait', async () => {
    const writer = threadWriter();
    const log = new AuditLog({ store, key, writer });
    log.append(record(1));
    await log.flush(); // the thread is up and has its connection
    const lock = lockDatabase();
    for (let i = 2; i <= 11; i++) log.append(record(i));
    let settled = false;
    const flushing = log.flush().finally(() => (settled = true));
    // The write now waits for the lock inside the thread. On the gateway's thread, SQLite's busy wait
    // would hold the event loop for as long as the lock is held; here timers keep firing.
    let ticks = 0;
    const tick = setInterval(() => ticks++, 10);
    await new Promise((r) => setTimeout(r, 600));
    clearInterval(tick);
    expect(ticks).toBeGreaterThanOrEqual(10);
    expect(settled).toBe(false);
    expect(log.stats()).toMatchObject({ queued: 10, written: 1 });
    lock.exec('ROLLBACK');
    await flushing;
    expect(log.stats()).toMatchObject({ queued: 0, written: 11, failing: false });
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 11 });
    await log.close();
    expect(writer.thread).toBeNull(); // close() ended the thread
  });

  it('a thread that dies mid-write loses nothing: the batch stays queued, failing names why, a new thread writes it', async () => {
    const writer = threadWriter();
    const errors: string[] = [];
    const log = new AuditLog({ store, key, writer, onError: (e) => errors.push(e.message) });
    for (let i = 1; i <= 5; i++) log.append(record(i));
    await log.flush();
    const lock = lockDatabase();
    for (let i = 6; i <= 305; i++) log.append(record(i));
    const flushing = log.flush();
    await new Promise((r) => setTimeout(r, 200)); // the thread is inside BEGIN IMMEDIATE, waiting for the lock
    const dying = writer.thread!.terminate();
    lock.exec('ROLLBACK'); // lets the thread return from SQLite, where the termination takes it
    await dying;
    await expect(flushing).rejects.toThrow(
      /^audit: 300 records could not be written: audit writer thread stopped before answering \(it exited with code 1\)$/,
    );
    expect(log.stats()).toMatchObject({ queued: 300, written: 5, failing: true });
    expect(errors).toEqual(['audit writer thread stopped before answering (it exited with code 1)']);
    await log.flush();
    expect(writer.threadsStarted).toBe(2);
    expect(log.stats()).toMatchObject({ queued: 0, written: 305, failing: false, lastError: null });
    const bytes = new Set<number>();
    for await (const r of auditRows(store)) bytes.add((JSON.parse(r.record) as { bytesIn: number }).bytesIn);
    expect(bytes.size).toBe(305);
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 305 });
    await log.close();
  });

  it('a thread that cannot open the database says why; the records are written once it can', async () => {
    const log = new AuditLog({ store, key });
    for (let i = 1; i <= 5; i++) log.append(record(i));
    chmodSync(stateDir, 0o755); // the gateway's own connection is open already; the thread's is refused
    await expect(log.flush()).rejects.toThrow(
      `audit: 5 records could not be written: refusing to use directory ${stateDir}: it is accessible by group or others (mode 0755)`,
    );
    expect(log.stats()).toMatchObject({ queued: 5, failing: true });
    chmodSync(stateDir, 0o700);
    await log.close();
    expect(log.stats()).toMatchObject({ queued: 0, written: 5, failing: false });
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 5 });
  });

  it('a record structured clone refuses is written as canonical JSON would write it', async () => {
    const log = new AuditLog({ store, key });
    const odd = record(1, { facts: { http: { method: 'GET', hook: () => 1, tag: Symbol('t'), list: [1, () => 2] } } });
    log.append(odd);
    log.append(record(2));
    await log.close();
    const rows = await store.audit.range({ limit: 10 });
    expect(rows[0]!.record).toBe(canonicalJson({ ...odd, seq: 1 }));
    expect(JSON.parse(rows[0]!.record)).toMatchObject({ facts: { http: { method: 'GET', list: [1, null] } } });
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 2 });
  });

  it('a record with a function beside a bigint and a cycle is still written (repaired) by the thread', async () => {
    const log = new AuditLog({ store, key });
    const facts: Record<string, unknown> = { when: new Date(0), hook: () => 1 };
    facts.self = facts;
    log.append(record(1, { facts, bytesIn: 7n as unknown as number }));
    log.append(record(2, { facts: { hook: () => 1, n: 5n } }));
    log.append(record(3));
    await log.close();
    expect(log.stats()).toMatchObject({ queued: 0, written: 3, failing: false });
    const rows = (await store.audit.range({ limit: 10 })).map((r) => JSON.parse(r.record) as Record<string, unknown>);
    expect(rows[0]).toMatchObject({ seq: 1, bytesIn: '7', host: 'api.github.com', auditError: expect.stringMatching(/not representable/) });
    expect(rows[0]).not.toHaveProperty('facts'); // the cycle: only scalar members survive
    expect(rows[1]).toMatchObject({ seq: 2, facts: { n: '5' }, auditError: expect.stringMatching(/bigint/) });
    expect(rows[2]).not.toHaveProperty('auditError');
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 3 });
  });

  it('thread: false, or a store that cannot be reopened, writes on the calling thread', async () => {
    const inline = new AuditLog({ store, key, thread: false });
    expect(inline.stats().writer).toBe('inline');
    inline.append(record(1));
    await inline.close();
    // A store double without reopenOptions(), like the test wrappers other suites build.
    const double: Store = {
      kind: store.kind,
      location: store.location,
      kv: store.kv,
      secrets: store.secrets,
      audit: store.audit,
      schemaVersion: store.schemaVersion,
      close: () => store.close(),
    };
    expect(new AuditLog({ store: double, key }).stats().writer).toBe('inline');
    expect(() => new AuditLog({ store: double, key, thread: true })).toThrow(/cannot be opened from a writer thread/);
    const explicit = new AuditLog({ store, key, writer: new StoreAuditWriter(store.audit, key) });
    explicit.append(record(2));
    await explicit.close();
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 2 });
  });
});

describe('audit writer thread: two batches in flight', () => {
  let root: string;
  let store: Store;
  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'clawpatrol-audit-pipe-'));
    store = await openStore({ stateDir: join(root, 'state') });
  });
  afterEach(async () => {
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  /** A database that refuses to store record `seq` (a trigger on the segments: every connection sees it). */
  function poisonRecord(seq: number): () => void {
    const db = new Database(join(root, 'state', 'state.db'));
    db.exec(`CREATE TRIGGER poison BEFORE INSERT ON audit_segments WHEN NEW.first_seq <= ${seq} AND NEW.last_seq >= ${seq}
             BEGIN SELECT RAISE(ABORT, 'poisoned record refused'); END;`);
    return () => {
      db.exec('DROP TRIGGER poison');
      db.close();
    };
  }

  it('a batch sent behind a failed one is refused, never committed ahead of it; the next run writes again', async () => {
    const cure = poisonRecord(1);
    const writer = new WorkerAuditWriter(store.reopenOptions!(), null);
    const failed = writer.write(encodeBatch([record(1)], 0), true);
    const behind = writer.write(encodeBatch([record(2)], 0), false);
    await expect(failed).rejects.toThrow('poisoned record refused');
    await expect(behind).rejects.toThrow('not written: an earlier batch failed');
    expect(await store.audit.count()).toBe(0);
    cure();
    expect(await writer.write(encodeBatch([record(2)], 0), true)).toBe(1);
    expect(await writer.write(encodeBatch([record(3)], 0), false)).toBe(1);
    expect((await store.audit.range({ limit: 10 })).map((r) => (JSON.parse(r.record) as { bytesIn: number }).bytesIn)).toEqual([102, 103]);
    await writer.close();
  });

  it('the audit log keeps every batch of a failed run queued, in order, and writes them all once the store takes them', async () => {
    const cure = poisonRecord(3);
    const errors: string[] = [];
    const log = new AuditLog({ store, key: null, onError: (e) => errors.push(e.message) });
    for (let i = 1; i <= 300; i++) log.append(record(i));
    await expect(log.flush()).rejects.toThrow('audit: 300 records could not be written: poisoned record refused');
    expect(log.stats()).toMatchObject({ queued: 300, written: 0, failing: true });
    expect(errors[0]).toBe('poisoned record refused');
    expect(await store.audit.count()).toBe(0);
    cure();
    await log.close();
    expect((await store.audit.range({ limit: 1000 })).map((r) => (JSON.parse(r.record) as { bytesIn: number }).bytesIn)).toEqual(
      Array.from({ length: 300 }, (_, i) => 101 + i),
    );
  });

  it('a record canonical JSON cannot represent is written repaired, saying so, and the chain goes on', async () => {
    const key = randomBytes(32);
    const log = new AuditLog({ store, key });
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    log.append(record(1, { bytesIn: 10n as unknown as number, latencyMs: Number.NaN }));
    log.append(record(2, { facts: cyclic }));
    log.append(record(3));
    await log.close();
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 3 });
    const rows = (await store.audit.range({ limit: 10 })).map((r) => JSON.parse(r.record) as Record<string, unknown>);
    expect(rows[0]).toMatchObject({ seq: 1, bytesIn: '10', latencyMs: 'NaN', host: 'api.github.com' });
    expect(rows[0]!.auditError).toMatch(/^record not representable as canonical JSON \(canonicalJson: bigint is not JSON\)/);
    expect(rows[0]!.facts).toEqual(record(1).facts);
    expect(rows[1]).toMatchObject({ seq: 2, bytesIn: 102, rule: '', verdict: 'allow', host: 'api.github.com' });
    expect(rows[1]!.facts).toBeUndefined(); // a cycle: only the scalar members survive
    expect(rows[1]!.auditError).toMatch(/not representable/);
    expect(rows[2]).not.toHaveProperty('auditError');
  });
});
