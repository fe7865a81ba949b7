/**
 * How audit records are stored: in *segments*, one database row per written
 * batch of consecutive records, compressed together.
 *
 * A record costs one row of ~600 bytes of JSON when stored on its own, and
 * the database's page writes for those bytes were most of the audit log's
 * CPU per record (bench/audit). Records of one batch are alike — the same
 * keys, endpoint, rule, reason — so a batch compresses 10–40× with raw
 * deflate at level 1, which costs less than writing the bytes it saves.
 *
 * A segment holds records first_seq…last_seq, each as one line
 *
 *     <ts> TAB <hash> TAB <record_json>        (lines joined by LF)
 *
 * (`record_json` never holds a raw LF or TAB: JSON escapes both inside
 * strings), the body compressed with `codec` (`deflate-raw`, or `plain` for
 * records migrated from the one-row-per-record table), plus the hash the
 * first record links to (`prev_hash`) and the range of the records' times
 * (`ts_min`, `ts_max`) so readers by time skip segments without opening
 * them. Every other record's prev_hash is the hash on the line before.
 *
 * The rows a store hands out are the same `AuditRow`s it was given; the
 * chain (audit/chain.ts) is unchanged. A segment that cannot be read back —
 * a body that does not inflate, a line count that does not match its range
 * (edited in the database) — reads as one row that verification reports as
 * unreadable, never as an exception, a hang or a huge allocation.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { AuditRow } from './types.js';

export interface AuditSegment {
  firstSeq: number;
  lastSeq: number;
  tsMin: number;
  tsMax: number;
  prevHash: string;
  codec: string;
  body: Buffer;
  /** The writer's id of the batch the segment was written for (null for records migrated from before batches had ids). */
  batch: string | null;
}

/** A batch's records start a new segment once this much line text is collected (records larger than it get one of their own). */
const SEGMENT_TEXT_CHARS = 1 << 20;
/** The most a stored body may inflate to: a bound for a body edited into a decompression bomb. */
const MAX_INFLATED_BYTES = 256 << 20;
const DEFLATE_LEVEL = 1;

/** The segments to store for rows of consecutive seqs (a linked batch, `batch` its id). */
export function packSegments(rows: readonly AuditRow[], batch: string | null = null): AuditSegment[] {
  const out: AuditSegment[] = [];
  let from = 0;
  let chars = 0;
  for (let i = 0; i < rows.length; i++) {
    chars += rows[i]!.record.length + 80;
    if (chars >= SEGMENT_TEXT_CHARS || i === rows.length - 1) {
      out.push(packOne(rows, from, i + 1, batch));
      from = i + 1;
      chars = 0;
    }
  }
  return out;
}

function packOne(rows: readonly AuditRow[], from: number, to: number, batch: string | null): AuditSegment {
  const lines = new Array<string>(to - from);
  let tsMin = Infinity;
  let tsMax = -Infinity;
  for (let i = from; i < to; i++) {
    const r = rows[i]!;
    if (r.seq !== rows[from]!.seq + (i - from)) throw new Error(`audit segment: seq ${r.seq} does not follow ${rows[i - 1]!.seq}`);
    lines[i - from] = `${r.ts}\t${r.hash}\t${r.record}`;
    if (r.ts < tsMin) tsMin = r.ts;
    if (r.ts > tsMax) tsMax = r.ts;
  }
  const first = rows[from]!;
  return {
    firstSeq: first.seq,
    lastSeq: rows[to - 1]!.seq,
    tsMin,
    tsMax,
    prevHash: first.prevHash,
    codec: 'deflate-raw',
    body: deflateRawSync(lines.join('\n'), { level: DEFLATE_LEVEL }),
    batch,
  };
}

/** The rows of a stored segment, in seq order; a segment that cannot be read gives one row with `record` empty and `damaged` set. */
export function unpackSegment(s: AuditSegment): AuditRow[] {
  const count = s.lastSeq - s.firstSeq + 1;
  const damaged = (why: string): AuditRow[] => [
    { seq: s.firstSeq, ts: s.tsMin, record: '', prevHash: s.prevHash, hash: '', damaged: `the stored segment of records ${s.firstSeq}–${s.lastSeq} ${why}` },
  ];
  if (!Number.isSafeInteger(count) || count < 1) return damaged('has an impossible range');
  let text: string;
  try {
    text = bodyText(s);
  } catch (err) {
    return damaged(`cannot be decoded (${err instanceof Error ? err.message : String(err)})`);
  }
  const lines = text.split('\n');
  if (lines.length !== count) return damaged(`holds ${lines.length} records, not ${count}`);
  const rows = new Array<AuditRow>(count);
  let prev = s.prevHash;
  for (let i = 0; i < count; i++) {
    const line = lines[i]!;
    const a = line.indexOf('\t');
    const b = a < 0 ? -1 : line.indexOf('\t', a + 1);
    if (b < 0) return damaged(`has a malformed line for record ${s.firstSeq + i}`);
    const ts = Number(line.slice(0, a));
    const hash = line.slice(a + 1, b);
    rows[i] = { seq: s.firstSeq + i, ts: Number.isFinite(ts) ? ts : s.tsMin, record: line.slice(b + 1), prevHash: prev, hash };
    prev = hash;
  }
  return rows;
}

function bodyText(s: AuditSegment): string {
  switch (s.codec) {
    case 'deflate-raw':
      return inflateRawSync(s.body, { maxOutputLength: MAX_INFLATED_BYTES }).toString('utf8');
    case 'plain':
      return s.body.toString('utf8');
    default:
      throw new Error(`unknown codec ${JSON.stringify(s.codec)}`);
  }
}

/**
 * Collects `range()`'s answer from segments read in first_seq order: rows
 * with seq > afterSeq (and ts >= sinceTs), at most `limit`. `add` returns
 * false once it has enough.
 */
export class RangeCollector {
  readonly rows: AuditRow[] = [];
  constructor(private readonly opts: { afterSeq?: number; sinceTs?: number; limit: number }) {}

  get full(): boolean {
    return this.rows.length >= this.opts.limit;
  }

  add(segment: AuditSegment): boolean {
    const after = this.opts.afterSeq ?? 0;
    const since = this.opts.sinceTs;
    for (const r of unpackSegment(segment)) {
      if (this.full) return false;
      if (r.seq > after && (since === undefined || r.ts >= since || r.damaged !== undefined)) this.rows.push(r);
    }
    return !this.full;
  }
}

/** Seq of the segment's first record with ts >= `ts` (its first seq when it cannot be read: nothing after damage is pruned by age), or null. */
export function firstSeqAtOrAfterIn(segment: AuditSegment, ts: number): number | null {
  for (const r of unpackSegment(segment)) if (r.damaged !== undefined || r.ts >= ts) return r.seq;
  return null;
}

/**
 * Retention cutting into a segment: the hash of record `uptoSeq` (the
 * checkpoint's), and the segments that keep the records after it (none when
 * none are left). Null when the segment cannot be read or does not hold
 * `uptoSeq`: such a prune is refused rather than guessed.
 */
export function cutSegment(segment: AuditSegment, uptoSeq: number): { hash: string; rest: AuditSegment[] } | null {
  const rows = unpackSegment(segment);
  if (rows[0]?.damaged !== undefined) return null;
  const at = rows.findIndex((r) => r.seq === uptoSeq);
  if (at < 0) return null;
  return { hash: rows[at]!.hash, rest: packSegments(rows.slice(at + 1), segment.batch) };
}
