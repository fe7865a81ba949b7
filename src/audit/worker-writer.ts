/**
 * The audit log's writer thread, seen from the gateway's thread.
 *
 * The thread (worker-main.ts) is started on the first request and owns its
 * own store connection. Each request posts plain data and waits for the
 * reply; a write carries the batch already encoded (strings and numbers), so
 * the copy to the thread is cheap. If the thread dies, every request it had not answered is rejected
 * with the reason — the audit log keeps those records and retries — and the
 * next request starts a new thread.
 *
 * The thread does not keep the process alive while idle (like the audit
 * log's timer); it does while a request is outstanding and while closing.
 */
import { Worker } from 'node:worker_threads';
import type { OpenStoreOptions } from '../store/types.js';
import type { EncodedBatch } from './record-json.js';
import type { AuditWriter, RetentionPolicy } from './writer.js';
import type { WriterReply, WriterRequest, WriterThreadData } from './worker-protocol.js';
import { writerThreadEntry } from './worker-entry.js';

/** How long close() waits for the thread to close its connection and end before terminating it. */
const CLOSE_GRACE_MS = 10_000;

export class AuditWriterError extends Error {
  override name = 'AuditWriterError';
}

interface Outstanding {
  thread: Worker;
  resolve: (value: number) => void;
  reject: (err: Error) => void;
}

/** A request before it is numbered (distributes over the union). */
type Unsent<R> = R extends { id: number } ? Omit<R, 'id'> : never;
type Request = Unsent<WriterRequest>;

export class WorkerAuditWriter implements AuditWriter {
  readonly kind = 'thread' as const;
  /** Two: the thread links one batch while the next is being copied to it. */
  readonly maxInFlight = 2;
  private worker: Worker | null = null;
  private readonly outstanding = new Map<number, Outstanding>();
  private nextId = 1;
  private closing = false;
  private started = 0;

  constructor(
    private readonly store: OpenStoreOptions,
    private readonly key: Buffer | null,
  ) {}

  write(batch: EncodedBatch, startsRun: boolean): Promise<number> {
    return this.request({ op: 'write', batch, startsRun });
  }

  prune(retention: RetentionPolicy, now: number): Promise<number> {
    return this.request({ op: 'prune', retention: { ...retention }, now });
  }

  /** Threads started so far (more than one means a thread died and was replaced). */
  get threadsStarted(): number {
    return this.started;
  }

  /** The running thread, if any — for supervision and for tests that stop it. */
  get thread(): Worker | null {
    return this.worker;
  }

  /** Close the thread's connection and end the thread (terminated if it does not end in time). */
  async close(): Promise<void> {
    const thread = this.worker;
    if (!thread) return;
    this.closing = true;
    try {
      thread.ref();
      const ended = new Promise<void>((resolve) => thread.once('exit', () => resolve()));
      await this.request({ op: 'close' }).catch(() => undefined); // a thread that died has no connection left
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, CLOSE_GRACE_MS);
        timer.unref();
      });
      await Promise.race([ended, late]);
      clearTimeout(timer);
      if (this.worker === thread) await thread.terminate();
    } finally {
      this.closing = false;
    }
  }

  private request(req: Request): Promise<number> {
    let thread: Worker;
    try {
      thread = this.current();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      this.outstanding.set(id, { thread, resolve, reject });
      thread.ref();
      try {
        thread.postMessage({ ...req, id } as WriterRequest);
      } catch (err) {
        this.settle(id);
        reject(new AuditWriterError(`audit: cannot pass the batch to the writer thread: ${(err as Error).message}`));
      }
    });
  }

  private settle(id: number): Outstanding | undefined {
    const o = this.outstanding.get(id);
    this.outstanding.delete(id);
    if (o && !this.closing && ![...this.outstanding.values()].some((x) => x.thread === o.thread)) o.thread.unref();
    return o;
  }

  private current(): Worker {
    if (this.worker) return this.worker;
    const entry = writerThreadEntry();
    const data: WriterThreadData = { store: this.store, key: this.key ? new Uint8Array(this.key) : null };
    const options = { workerData: data, name: 'clawpatrol audit writer' };
    const thread = entry.kind === 'compiled' ? new Worker(entry.url, options) : new Worker(entry.code, { ...options, eval: true });
    this.started++;
    thread.unref();
    let failure: Error | null = null;
    thread.on('message', (reply: WriterReply) => {
      const o = this.settle(reply.id);
      if (!o) return;
      if (reply.ok) o.resolve(reply.value);
      else o.reject(new Error(reply.error));
    });
    thread.on('error', (err) => {
      failure = err;
    });
    thread.on('messageerror', (err) => {
      failure = err;
    });
    thread.on('exit', (code) => {
      if (this.worker === thread) this.worker = null;
      const why = failure ? `it failed: ${failure.message}` : `it exited with code ${code}`;
      for (const [id, o] of this.outstanding) {
        if (o.thread !== thread) continue;
        this.outstanding.delete(id);
        o.reject(new AuditWriterError(`audit writer thread stopped before answering (${why})`));
      }
    });
    this.worker = thread;
    return thread;
  }
}
