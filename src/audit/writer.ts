/**
 * Writing audit records into a store — the one place that links a batch
 * into the chain and applies retention. Both happen inside the store's own
 * transactions (the linker runs after the store has locked the head), so
 * concurrent writers — other threads, other gateways — never fork the chain.
 *
 * `AuditLog` talks to an `AuditWriter`: either `StoreAuditWriter` on the
 * calling thread, or `WorkerAuditWriter` (worker-writer.ts), whose thread
 * runs a `StoreAuditWriter` of its own on its own connection.
 */
import type { AuditRepo, AuditRow } from '../store/types.js';
import { checkpointMac, linkBatch, verifyChain } from './chain.js';
import { recordTs, type EncodedBatch } from './record-json.js';
import { auditRows } from './reader.js';

export interface RetentionPolicy {
  maxAgeSec?: number;
  maxRecords?: number;
}

export interface AuditWriter {
  /** Where the work runs: `thread` (a worker thread with its own connection) or `inline` (the caller's thread). */
  readonly kind: 'thread' | 'inline';
  /**
   * How many writes may be outstanding at once. More than one only for a
   * writer that commits them in the order they were made and, once a write
   * failed, refuses the rest of that run (see `write`).
   */
  readonly maxInFlight: number;
  /**
   * Link the batch's records after the stored head and commit them in one transaction;
   * resolves with the number written. A rejection means the batch must be
   * sent again, as it is (same id): it was not committed, or — only if the
   * writer thread died between its commit and its reply — it was, and the
   * store then recognises its id and does not write it twice.
   *
   * Writes come in runs: `startsRun` is true for the first write after every
   * earlier one has settled. Within a run, a write after a failed one is
   * refused, so no batch overtakes a failed one; the caller then starts a new
   * run with the failed batch.
   */
  write(batch: EncodedBatch, startsRun: boolean): Promise<number>;
  /** Apply retention; resolves with the number of records pruned. */
  prune(retention: RetentionPolicy, now: number): Promise<number>;
  close(): Promise<void>;
}

export function hasRetention(r: RetentionPolicy | undefined): r is RetentionPolicy {
  return !!r && !!(r.maxAgeSec || r.maxRecords);
}

/** Milliseconds of a stored record's own `time` (what the writer stored as its ts), or null when it has none. */
function hashedTime(recordJson: string): number | null {
  try {
    const t = recordTs((JSON.parse(recordJson) as { time?: unknown } | null)?.time, NaN);
    return Number.isFinite(t) ? t : null;
  } catch {
    return null; // unreadable: verifyChain says so
  }
}

/** Writes through an `AuditRepo` on the calling thread. */
export class StoreAuditWriter implements AuditWriter {
  readonly kind = 'inline' as const;
  // Two appends in flight on a PostgreSQL pool could commit out of order.
  readonly maxInFlight = 1;

  constructor(
    private readonly audit: AuditRepo,
    private readonly key: Buffer | null,
  ) {}

  async write(batch: EncodedBatch): Promise<number> {
    const rows = await this.audit.append((head) => linkBatch(head, batch, this.key), batch.id);
    return rows.length;
  }

  async prune(retention: RetentionPolicy, now: number): Promise<number> {
    if (!hasRetention(retention)) return 0;
    const audit = this.audit;
    const head = await audit.head();
    if (!head) return 0;
    let upto = 0;
    if (retention.maxRecords && retention.maxRecords > 0) upto = Math.max(upto, head.seq - retention.maxRecords);
    if (retention.maxAgeSec && retention.maxAgeSec > 0) {
      const keepFrom = await audit.firstSeqAtOrAfter(now - retention.maxAgeSec * 1000);
      // The chain must stay a contiguous suffix: prune everything before the first record still young enough.
      upto = Math.max(upto, keepFrom === null ? head.seq : keepFrom - 1);
    }
    const first = await audit.firstSeq();
    if (first === null || upto < first) return 0;
    const problem = await this.unprunable(first, upto);
    if (problem) throw new Error(`audit: retention refused to prune records ${first}–${upto}: ${problem} (run clawpatrol audit verify)`);
    const key = this.key;
    return audit.prune(upto, (seq, hash) => (key ? checkpointMac(key, seq, hash) : null));
  }

  /**
   * Why records first…upto must not be pruned, or null. The checkpoint's MAC is the gateway
   * vouching for what it removed, so those records are verified first — else someone with write
   * access to the store could have the gateway delete records for them and sign it: by setting
   * their stored time back (it is outside the hash; their `time` is inside it), or by editing them
   * and letting retention remove the evidence.
   */
  private async unprunable(first: number, upto: number): Promise<string | null> {
    const audit = this.audit;
    const checkpoint = await audit.checkpoint();
    if (!checkpoint && first !== 1) return `records 1–${first - 1} are missing`;
    let timeProblem: string | null = null;
    async function* rows(): AsyncGenerator<AuditRow> {
      for await (const row of auditRows({ audit }, { afterSeq: first - 1 })) {
        if (row.seq > upto) return;
        const time = row.damaged === undefined ? hashedTime(row.record) : null;
        if (time !== null && time !== row.ts) {
          timeProblem = `record ${row.seq}'s stored time is not the time in its record`;
          return;
        }
        yield row;
      }
    }
    const result = await verifyChain({ rows: rows(), checkpoint, key: this.key, canonicalText: true });
    if (timeProblem !== null) return timeProblem;
    if (!result.ok) return result.message;
    if (result.lastSeq !== upto) return `record ${(result.lastSeq ?? first - 1) + 1} is missing`;
    return null;
  }

  async close(): Promise<void> {
    // The store belongs to whoever opened it.
  }
}
