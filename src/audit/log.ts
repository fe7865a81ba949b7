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
 * The writer runs on a worker thread with its own store connection whenever
 * the store can be reopened there (both built-in backends): canonical JSON,
 * SHA-256 and the database's work then never hold up the event loop every
 * protocol engine shares. Only a store that cannot be reopened (a test
 * double), or `thread: false`, is written on the calling thread.
 *
 * `append()` writes the record's canonical JSON at once (record-json.ts),
 * without its seq, and queues that string: the record object is garbage
 * straight away, a later mutation cannot change what is written, and the
 * writer thread receives one copied string per batch instead of a
 * structured clone of every record's objects. A record canonical JSON
 * refuses (a bigint, a non-finite number) is queued as its error: the batch
 * it would be in fails with it, and it and everything behind it stay
 * queued, as for a store that refuses the write.
 */
import type { AuditRecordInput, AuditSink } from '../gateway/contracts.js';
import type { Store } from '../store/types.js';
import { recordTs } from './chain.js';
import { batchText, encodeRecord, type EncodedBatch } from './record-json.js';
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
  /** Called when a write or prune fails (the records stay queued). */
  onError?: (err: Error) => void;
  now?: () => number;
}

export interface AuditStats {
  queued: number;
  written: number;
  pruned: number;
  /** True while the last write attempt failed. */
  failing: boolean;
  lastError: string | null;
  /** Where records are written: a worker thread, or the gateway's own thread. */
  writer: 'thread' | 'inline';
}

export class AuditClosedError extends Error {
  override name = 'AuditClosedError';
}

/** After a failed write, the next attempt starts this much later (or at the next flush()). */
const RETRY_DELAY_MS = 500;

export class AuditLog implements AuditSink {
  /**
   * Records not yet written are queue[head…] (each its template, or the error that prevented one) with
   * their ts in stamps[head…]; the written prefix is dropped in chunks, not per batch.
   */
  private queue: Array<string | Error> = [];
  private stamps: number[] = [];
  private head = 0;
  /** The last record time parsed (the enforcer formats one per millisecond) and its ms. */
  private lastTime = '';
  private lastTs = 0;
  private writing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly batchSize: number;
  private readonly flushDelayMs: number;
  private readonly now: () => number;
  private readonly writer: AuditWriter;
  private st: Omit<AuditStats, 'writer'> = { queued: 0, written: 0, pruned: 0, failing: false, lastError: null };

  constructor(private readonly opts: AuditLogOptions) {
    this.batchSize = Math.max(1, opts.batchSize ?? 256);
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
    let entry: string | Error;
    try {
      entry = encodeRecord(record);
    } catch (err) {
      entry = err instanceof Error ? err : new Error(String(err));
    }
    this.queue.push(entry);
    this.stamps.push(this.tsOf(record.time));
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

  private tsOf(time: string): number {
    if (time !== this.lastTime) {
      this.lastTs = recordTs(time, Number.NaN);
      this.lastTime = time;
    }
    return Number.isNaN(this.lastTs) ? this.now() : this.lastTs;
  }

  private get pending(): number {
    return this.queue.length - this.head;
  }

  stats(): AuditStats {
    return { ...this.st, queued: this.pending, writer: this.writer.kind };
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
      // Records appended after the loop's last check but before this callback ran.
      if (this.pending && !this.timer && !this.closed && !this.st.failing) this.kick(this.flushDelayMs);
    });
    return this.writing;
  }

  /**
   * Write queue[head…] in batches, up to `writer.maxInFlight` at once. A
   * batch leaves the queue only once the writer confirmed it; confirmations
   * come in order, and a writer that allows several in flight refuses every
   * batch sent after one that failed, so the written records are always a
   * prefix of the queue.
   */
  private async writeLoop(): Promise<void> {
    const inFlight: Array<{ size: number; done: Promise<number> }> = [];
    let sent = 0; // records of queue[head…] handed to the writer and not yet confirmed
    let startsRun = true; // this loop is a run: it ends at the first failure, with every write settled
    let poisoned = false; // a record that could not be encoded is next: nothing more is sent in this run
    while ((this.pending > sent && !poisoned) || inFlight.length) {
      while (this.pending > sent && !poisoned && inFlight.length < this.writer.maxInFlight) {
        const batch = this.nextBatch(this.head + sent);
        let done: Promise<number>;
        if (batch instanceof Error) {
          done = Promise.reject(batch);
          poisoned = true;
        } else {
          done = this.writer.write(batch, startsRun);
        }
        startsRun = false;
        done.catch(() => undefined); // awaited in order below
        const size = batch instanceof Error ? 0 : batch.ts.length;
        inFlight.push({ size, done });
        sent += size;
      }
      const next = inFlight.shift()!;
      try {
        await next.done;
      } catch (err) {
        await Promise.allSettled(inFlight.map((b) => b.done)); // refused by the writer: they stay queued too
        this.st.failing = true;
        this.report(err);
        if (!this.closed) this.kick(RETRY_DELAY_MS);
        return;
      }
      // Only now drop them: the batch is committed.
      sent -= next.size;
      this.head += next.size;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.stamps = [];
        this.head = 0;
      } else if (this.head >= 4096 && this.head * 2 >= this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.stamps = this.stamps.slice(this.head);
        this.head = 0;
      }
      this.st.written += next.size;
      this.st.failing = false;
      this.st.lastError = null;
      // Let the data path run between batches (an inline SQLite write settles at once).
      if (this.pending) await new Promise((r) => setImmediate(r));
    }
  }

  /** Up to batchSize queued records from `from`, stopping before one that could not be encoded; that one's error if it is first. */
  private nextBatch(from: number): EncodedBatch | Error {
    const first = this.queue[from]!;
    if (first instanceof Error) return first;
    let to = from + 1;
    const end = Math.min(this.queue.length, from + this.batchSize);
    while (to < end && typeof this.queue[to] === 'string') to++;
    return { text: batchText(this.queue.slice(from, to) as string[]), ts: this.stamps.slice(from, to) };
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
