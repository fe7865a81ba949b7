/**
 * The audit log: the gateway's AuditSink.
 *
 * `append()` only queues (the data path never waits for a disk); a timer
 * hands the queue to the writer in batches, each batch one transaction that
 * links the records into the hash chain under the store's head lock.
 * `flush()` resolves once everything appended before it is durable; `close()`
 * drains and stops. A failed write keeps the batch queued and retries, so
 * records are not lost while the store is briefly unavailable (or the writer
 * thread died); `stats().failing` tells the gateway when they are not being
 * written.
 *
 * When a batch is handed to the writer it is encoded on this thread — each
 * record's canonical JSON template (record-json.ts), a few µs per record and
 * cheaper than the structured clone of the record it replaces — and the
 * writer runs on a worker thread with its own store connection whenever the
 * store can be reopened there (both built-in backends): SHA-256 and the
 * database's work then never hold up the event loop every protocol engine
 * shares. Only a store that cannot be reopened (a test double), or
 * `thread: false`, is written on the calling thread.
 *
 * Records must not be mutated after `append()`: they are encoded when their
 * batch is written, not on the data path.
 */
import type { AuditRecordInput, AuditSink } from '../gateway/contracts.js';
import type { Store } from '../store/types.js';
import { BatchEncoder, type EncodedBatch } from './record-json.js';
import { StoreAuditWriter, hasRetention, type AuditWriter, type RetentionPolicy } from './writer.js';
import { WorkerAuditWriter } from './worker-writer.js';

export type { RetentionPolicy } from './writer.js';

export interface AuditLogOptions {
  store: Store;
  /** HMAC key for the head and checkpoints (the vault's `subkey('audit')`); null → unkeyed chain. */
  key?: Buffer | null;
  retention?: RetentionPolicy;
  /** Records per write transaction (default 256). */
  batchSize?: number;
  /** Longest a record waits in the queue before a write starts (default 20 ms). */
  flushDelayMs?: number;
  /** Retention check interval (default 10 minutes); 0 disables the timer (prune() still works). */
  pruneIntervalMs?: number;
  /**
   * Write from a worker thread (default: when the store can be reopened
   * there). `false` writes on the calling thread — the benchmark's baseline.
   */
  thread?: boolean;
  /** A writer to use instead of choosing one (tests that supervise the writer thread). */
  writer?: AuditWriter;
  /**
   * Most records kept waiting for the store (default 200,000). At the bound
   * the log is `unavailable()` — the enforcer then denies every action — and
   * records still appended (actions that were under way) are counted, not
   * kept; once the store takes records again one summary record says how
   * many, allowed and denied, and when.
   */
  maxQueued?: number;
  /** Called when a write or prune fails (the records stay queued). */
  onError?: (err: Error) => void;
  now?: () => number;
}

export interface AuditStats {
  queued: number;
  /** The backlog's bound (`maxQueued`): at it, `unavailable()` refuses every action. */
  backlogLimit: number;
  written: number;
  pruned: number;
  /** Records counted but not kept because the backlog was full (see `maxQueued`). */
  suppressed: number;
  /** True while the last write attempt failed. */
  failing: boolean;
  lastError: string | null;
  /** Where records are written: a worker thread, or the gateway's own thread. */
  writer: 'thread' | 'inline';
}

export class AuditClosedError extends Error {
  override name = 'AuditClosedError';
}

/** Told through `onError` when the backlog reaches `maxQueued` (not a write failure of its own). */
export class AuditBacklogFullError extends Error {
  override name = 'AuditBacklogFullError';
}

/** After a failed write, the next attempt starts this much later (or at the next flush()). */
const RETRY_DELAY_MS = 500;
/**
 * Time one turn of the event loop may spend encoding a batch being handed
 * over (ms). Encoding costs a few µs per record, so a whole batch at once
 * would hold up every connection for milliseconds. A slice that ends after a
 * time budget rather than a record count holds a statement or request that
 * arrives meanwhile by at most ≈ this long, however slow the machine.
 */
const ENCODE_SLICE_MS = 0.05;

export class AuditLog implements AuditSink {
  /** Records not yet written are queue[head…]; the written prefix is dropped in chunks, not per batch. */
  private queue: AuditRecordInput[] = [];
  private head = 0;
  private writing: Promise<void> | null = null;
  /** flush() calls waiting: while any is, partial batches are written at once instead of after the delay. */
  private draining = 0;
  /**
   * Batches a failed run handed to the writer without a confirmation — the
   * first records of the queue, in order. They are sent again unchanged: if
   * one was committed after all, the store knows its id.
   */
  private unconfirmed: EncodedBatch[] = [];
  private timer: NodeJS.Timeout | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly batchSize: number;
  private readonly flushDelayMs: number;
  private readonly now: () => number;
  private readonly writer: AuditWriter;
  private st: Omit<AuditStats, 'writer' | 'backlogLimit'> = { queued: 0, written: 0, pruned: 0, suppressed: 0, failing: false, lastError: null };
  private readonly maxQueued: number;
  /** Records appended while the backlog was full, not yet summarised. */
  private overflow: { allowed: number; denied: number; from: string; to: string } | null = null;

  constructor(private readonly opts: AuditLogOptions) {
    this.batchSize = Math.max(1, opts.batchSize ?? 256);
    this.maxQueued = Math.max(1, opts.maxQueued ?? 200_000);
    this.flushDelayMs = Math.max(0, opts.flushDelayMs ?? 20);
    this.now = opts.now ?? Date.now;
    this.writer = opts.writer ?? chooseWriter(opts.store, opts.key ?? null, opts.thread);
    const every = opts.pruneIntervalMs ?? 600_000;
    if (hasRetention(opts.retention) && every > 0) {
      this.pruneTimer = setInterval(() => void this.prune().catch(() => undefined), every);
      this.pruneTimer.unref();
    }
  }

  append(record: AuditRecordInput): void {
    if (this.closed) throw new AuditClosedError('audit log is closed');
    if (this.pending >= this.maxQueued) {
      this.countOverflow(record);
      return;
    }
    this.queue.push(record);
    if (this.writing) return; // the running write loop picks it up
    if (this.pending >= this.batchSize) this.kick(0);
    else if (!this.timer) this.kick(this.flushDelayMs);
  }

  /**
   * Durable once resolved: everything appended before the call is written.
   * Rejects (records stay queued for a later attempt) when the store refuses
   * the write, so a shutdown never hangs on a broken store.
   */
  async flush(): Promise<void> {
    this.draining++;
    try {
      while (this.pending || this.writing) {
        if (this.timer) {
          clearTimeout(this.timer);
          this.timer = null;
        }
        await (this.writing ?? this.startWrite());
        if (this.st.failing) {
          throw new Error(`audit: ${this.pending} records could not be written: ${this.st.lastError ?? 'unknown error'}`);
        }
      }
    } finally {
      this.draining--;
    }
  }

  /**
   * Drain the queue and stop (the writer thread closes its connection and
   * ends). Rejects, naming how many records were not written, when the store
   * fails.
   */
  async close(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = null;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      await this.writer.close();
    }
  }

  private get pending(): number {
    return this.queue.length - this.head;
  }

  /** Why no more records can be taken (the backlog is at `maxQueued`), or null. */
  unavailable(): string | null {
    if (this.pending < this.maxQueued) return null;
    return `the audit log cannot record actions: ${this.pending} records are waiting to be written${this.st.lastError ? ` (${this.st.lastError})` : ''}`;
  }

  private countOverflow(record: AuditRecordInput): void {
    if (!this.overflow) {
      this.overflow = { allowed: 0, denied: 0, from: record.time, to: record.time };
      // Told, not recorded as the write error: lastError keeps saying why the store refuses.
      this.opts.onError?.(
        new AuditBacklogFullError(`backlog full (${this.pending} records waiting); actions are refused and further records only counted until the store takes records again`),
      );
    }
    if (record.outcome === 'allow') this.overflow.allowed++;
    else this.overflow.denied++;
    this.overflow.to = record.time;
    this.st.suppressed++;
  }

  /** Once there is room again: one record for everything counted while the backlog was full. */
  private summariseOverflow(): void {
    const o = this.overflow;
    if (!o || this.pending >= this.maxQueued) return;
    this.overflow = null;
    const n = o.allowed + o.denied;
    this.queue.push({
      approvals: [],
      bytesIn: 0,
      bytesOut: 0,
      credential: null,
      endpoint: null,
      facts: { audit: { not_recorded: n, allowed: o.allowed, denied: o.denied, from: o.from, to: o.to } },
      failClosed: true,
      family: 'audit',
      host: '',
      latencyMs: 0,
      mode: 'enforce',
      outcome: 'deny',
      peer: null,
      profile: null,
      reason: `${n} action records (${o.allowed} allowed, ${o.denied} denied) between ${o.from} and ${o.to} were not kept: the audit log's backlog was full`,
      rule: '',
      time: new Date(this.now()).toISOString(),
      verdict: 'deny',
    });
  }

  stats(): AuditStats {
    return { ...this.st, queued: this.pending, backlogLimit: this.maxQueued, writer: this.writer.kind };
  }

  /** Apply retention now (on the writer's thread); returns records pruned. */
  async prune(): Promise<number> {
    const r = this.opts.retention;
    if (!hasRetention(r)) return 0;
    try {
      const n = await this.writer.prune(r, this.now());
      this.st.pruned += n;
      return n;
    } catch (err) {
      this.report(err);
      throw err;
    }
  }

  private kick(delay: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.writing) void this.startWrite();
    }, delay);
    // A pending audit write must not keep a finished CLI alive; the gateway calls close() on shutdown.
    this.timer.unref();
  }

  private startWrite(): Promise<void> {
    this.writing = this.writeLoop().finally(() => {
      this.writing = null;
      // Records the loop left for later (a partial batch), or appended after its last check.
      if (this.pending && !this.timer && !this.closed && !this.st.failing) this.kick(this.pending >= this.batchSize ? 0 : this.flushDelayMs);
    });
    return this.writing;
  }

  /**
   * Write queue[head…] in batches, up to `writer.maxInFlight` at once. A
   * batch leaves the queue only once the writer confirmed it; confirmations
   * come in order, and a writer that allows several in flight refuses every
   * batch sent after one that failed, so the written records are always a
   * prefix of the queue.
   *
   * The first batch goes at once (the delay has passed, or a batch is full);
   * after it, only full batches — or everything while flush() waits — and
   * a partial batch waits for the next delay. A batch costs a transaction
   * and a compressor besides its records (tens of µs), so a busy gateway
   * must not write a trickle of tiny batches as fast as the writer answers.
   */
  private async writeLoop(): Promise<void> {
    type Sent = { batch: EncodedBatch; done: Promise<number> };
    const inFlight: Sent[] = [];
    // Batches a failed run left unconfirmed go again first, exactly as they were (same id, same records).
    const again = this.unconfirmed;
    this.unconfirmed = [];
    let sent = 0; // records of queue[head…] handed to the writer and not yet confirmed
    let startsRun = true; // this loop is a run: it ends at the first failure, with every write settled
    const due = () => again.length > 0 || startsRun || this.draining > 0 || this.pending - sent >= this.batchSize;
    while ((this.pending > sent && due()) || inFlight.length) {
      while (this.pending > sent && inFlight.length < this.writer.maxInFlight && due()) {
        const from = this.head + sent;
        const batch = again.shift() ?? (await encodeInSlices(this.queue.slice(from, from + this.batchSize), this.now()));
        const done = this.writer.write(batch, startsRun);
        startsRun = false;
        done.catch(() => undefined); // awaited in order below
        inFlight.push({ batch, done });
        sent += batch.ts.length;
      }
      const next = inFlight.shift()!;
      try {
        await next.done;
      } catch (err) {
        await Promise.allSettled(inFlight.map((b) => b.done)); // refused by the writer: they stay queued too
        // Any of them may have been committed just before a writer thread died: resend them as they are.
        this.unconfirmed = [next.batch, ...inFlight.map((b) => b.batch), ...again];
        this.st.failing = true;
        this.report(err);
        if (!this.closed) this.kick(RETRY_DELAY_MS);
        return;
      }
      // Only now drop them: the batch is committed.
      const size = next.batch.ts.length;
      sent -= size;
      this.head += size;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      } else if (this.head >= 4096 && this.head * 2 >= this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      this.st.written += size;
      this.st.failing = false;
      this.st.lastError = null;
      this.summariseOverflow();
      // Let the data path run between batches (an inline SQLite write settles at once).
      if (this.pending > sent && due()) await new Promise((r) => setImmediate(r));
    }
  }

  private report(err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    this.st.lastError = e.message;
    this.opts.onError?.(e);
  }
}

function chooseWriter(store: Store, key: Buffer | null, thread: boolean | undefined): AuditWriter {
  const reopen = store.reopenOptions?.();
  if (thread === false || (thread === undefined && !reopen)) return new StoreAuditWriter(store.audit, key);
  if (!reopen) throw new Error(`audit: the store ${store.location} cannot be opened from a writer thread`);
  return new WorkerAuditWriter(reopen, key);
}

/**
 * The batch's encoding (record-json.ts) in slices of ≈ ENCODE_SLICE_MS,
 * `nextTurn` between them (the event loop's next turn; a test counts them).
 */
export async function encodeInSlices(
  records: readonly AuditRecordInput[],
  now: number,
  nextTurn: () => Promise<unknown> = () => new Promise((r) => setImmediate(r)),
): Promise<EncodedBatch> {
  const encoder = new BatchEncoder(now);
  let sliceStart = performance.now();
  for (let i = 0; i < records.length; i++) {
    if (i > 0 && performance.now() - sliceStart > ENCODE_SLICE_MS) {
      await nextTurn();
      sliceStart = performance.now();
    }
    encoder.add(records[i]!);
  }
  return encoder.finish();
}
