/**
 * A record's canonical JSON as a *template*: record_json is
 * `canonicalJson({ ...record, seq })`, and the writer assigns the seq inside
 * the transaction that links the record after the stored head. The template
 * is the canonical JSON with the seq's digits left out, marked by one NUL
 * character (which JSON text never holds raw: `JSON.stringify` escapes every
 * control character); `fillSeq` puts the digits in. This saves copying every
 * record to add its seq, and sorts the top-level keys once per record shape
 * rather than once per record. The audit log encodes a batch on the
 * gateway's thread when it hands the batch to the writer (`BatchEncoder`):
 * strings cross to the writer thread for a fraction of what a structured
 * clone of the records costs, and the thread only fills in seqs, hashes and
 * stores.
 */
import { randomBytes } from 'node:crypto';
import { INTEGER_KEY, inOrder, isIntegerKey, setMember, writeMembers } from './canonical.js';

const SEQ_SLOT = '\u0000';

let shapeKeys: readonly string[] = [];
let shapeSorted: readonly string[] = [];
/** Index in `shapeSorted` of the first key that sorts after "seq". */
let shapeSplit = 0;
/** The shape has an integer-like key, which a plain object would list out of order: write it member by member. */
let shapeSlow = false;
/**
 * The shape's own key order is canonical (sorted, no "seq", no `toJSON`), as
 * the gateway's record builders write it: the record is written as it is,
 * and the seq slot spliced in before the first member that sorts after
 * "seq" — found as the last `,"<that key>":` in the text, which is exact
 * while every member from there on is a scalar (a string's quotes are
 * escaped, so no string value can hold that text).
 */
let shapeInOrder = false;
/** `,"<first key after seq>":` for the splice. */
let shapeMarker = '';

/** The record's template: its canonical JSON with the seq's digits left out. Throws what canonicalJson throws. */
export function encodeRecord(record: object): string {
  const obj = record as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (!sameKeys(keys, shapeKeys)) learnShape(keys);
  const sorted = shapeSorted;
  const split = shapeSplit;
  if (shapeInOrder && scalarsFrom(obj, sorted, split)) {
    try {
      return spliceSeq(JSON.stringify(inOrder(obj, 0)), split, sorted.length);
    } catch (err) {
      if (err !== INTEGER_KEY) throw err;
    }
  }
  if (!shapeSlow) {
    try {
      return join(JSON.stringify(members(obj, sorted, 0, split)), JSON.stringify(members(obj, sorted, split, sorted.length)));
    } catch (err) {
      if (err !== INTEGER_KEY) throw err;
    }
  }
  // The slow path (an integer-like key somewhere): every member written out in canonical order.
  return join(writeMembers(obj, sorted.slice(0, split), 0), writeMembers(obj, sorted.slice(split), 0));
}

/** record_json of a template, given its seq. */
export function fillSeq(template: string, seq: number): string {
  const slot = template.indexOf(SEQ_SLOT);
  if (slot < 0) throw new Error('audit: malformed record template (no seq slot)');
  return template.slice(0, slot) + seq + template.slice(slot + 1);
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function learnShape(keys: string[]): void {
  shapeKeys = keys;
  // The record's own `seq`, if any, is replaced by the one the writer assigns (as `{ ...record, seq }` would).
  shapeSorted = keys.filter((k) => k !== 'seq').sort();
  const at = shapeSorted.findIndex((k) => k > 'seq');
  shapeSplit = at < 0 ? shapeSorted.length : at;
  shapeSlow = keys.some(isIntegerKey);
  shapeInOrder = !shapeSlow && !keys.includes('toJSON') && keys.length === shapeSorted.length && keys.every((k, i) => k === shapeSorted[i]);
  shapeMarker = shapeSplit < shapeSorted.length ? `,${JSON.stringify(shapeSorted[shapeSplit])}:` : '';
}

/** Every member from `sorted[from]` on is a string, a finite number, a boolean or null. */
function scalarsFrom(obj: Record<string, unknown>, sorted: readonly string[], from: number): boolean {
  for (let i = from; i < sorted.length; i++) {
    const v = obj[sorted[i]!];
    if (v === null || typeof v === 'string' || typeof v === 'boolean') continue;
    if (typeof v === 'number' && Number.isFinite(v)) continue;
    return false;
  }
  return true;
}

/** The template of an in-order record's JSON text: the seq slot before member `split` (of `count`). */
function spliceSeq(text: string, split: number, count: number): string {
  // Members JSON leaves out (undefined, functions) may leave nothing before the splice point.
  if (split === count) return text.length > 2 ? text.slice(0, -1) + ',"seq":' + SEQ_SLOT + '}' : '{"seq":' + SEQ_SLOT + '}';
  const at = split === 0 ? -1 : text.lastIndexOf(shapeMarker);
  if (at < 0) return '{"seq":' + SEQ_SLOT + ',' + text.slice(1);
  return text.slice(0, at) + ',"seq":' + SEQ_SLOT + text.slice(at);
}

/** A plain object of `obj`'s members `sorted[from…to)`, in that order, each in canonical key order. */
function members(obj: Record<string, unknown>, sorted: readonly string[], from: number, to: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = from; i < to; i++) setMember(out, sorted[i]!, inOrder(obj[sorted[i]!], 1));
  return out;
}

/** `{…before…,"seq":␀,…after…}` from the JSON texts of the members before and after "seq". */
function join(before: string, after: string): string {
  const head = before.length > 2 ? before.slice(0, -1) + ',"seq":' : '{"seq":';
  const tail = after.length > 2 ? ',' + after.slice(1) : '}';
  return head + SEQ_SLOT + tail;
}

/**
 * `encodeRecord`, for a record canonical JSON refuses — a bigint, a
 * non-finite number, a cycle, nesting past the limit: a bug in whatever
 * built it. Refusing it would stall the chain behind it for good (every
 * retry fails the same way), so it is written as close to itself as JSON
 * allows, with `auditError` saying what was wrong: bigints and non-finite
 * numbers as strings; failing that (a cycle, too deep), its top-level
 * scalar members only.
 */
export function encodeRecordOrRepair(record: object): string {
  try {
    return encodeRecord(record);
  } catch (err) {
    const auditError = `record not representable as canonical JSON (${err instanceof Error ? err.message : String(err)}); written repaired`;
    try {
      const repaired = JSON.parse(JSON.stringify(record, representable)) as object;
      return encodeRecord({ ...repaired, auditError });
    } catch {
      try {
        return encodeRecord({ ...scalarMembers(record), auditError });
      } catch (inner) {
        // Not even its scalars can be read (a throwing getter): the record still takes its place in the chain.
        return encodeRecord({ auditError: `${auditError}; its members could not be read (${inner instanceof Error ? inner.message : String(inner)})` });
      }
    }
  }
}

function representable(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}

function scalarMembers(record: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record)) {
    if (k === '__proto__') continue;
    if (v === null || typeof v === 'string' || typeof v === 'boolean') out[k] = v;
    else if (typeof v === 'number' || typeof v === 'bigint') out[k] = representable(k, v);
  }
  return out;
}

/**
 * A batch as the writer receives it: each record's template and the
 * milliseconds of its `time` — strings and one typed array, which cross to
 * the writer thread as plain copies instead of a structured clone of every
 * record's objects.
 */
export interface EncodedBatch {
  /**
   * Unique per batch, and kept when the batch is sent again: the store
   * recognises a batch it already holds (its answer was lost when the
   * writer thread died) instead of writing it twice.
   */
  id: string;
  templates: string[];
  /** Per record: `recordTs(record.time, now)` (retention and `--since` read it). */
  ts: Float64Array;
}

/** Encode records for the writer (see the module comment); `now` stands in for a `time` that does not parse. */
export function encodeBatch(records: readonly object[], now: number): EncodedBatch {
  const encoder = new BatchEncoder(now);
  for (const r of records) encoder.add(r);
  return encoder.finish();
}

/** `encodeBatch` a record at a time, so a caller can encode a batch in slices between other work. */
export class BatchEncoder {
  private readonly templates: string[] = [];
  private readonly ts: number[] = [];
  private readonly id = newBatchId();
  constructor(private readonly now: number) {}

  add(record: object): void {
    this.templates.push(encodeRecordOrRepair(record));
    this.ts.push(recordTs((record as { time?: unknown }).time, this.now));
  }

  finish(): EncodedBatch {
    return { id: this.id, templates: this.templates, ts: Float64Array.from(this.ts) };
  }
}

/** Milliseconds of a record's time, or `fallback` when it is missing or does not parse. */
export function recordTs(time: unknown, fallback: number): number {
  const t = typeof time === 'string' ? Date.parse(time) : NaN;
  return Number.isFinite(t) ? t : fallback;
}

/** This process's batch ids: a random prefix (other processes and gateways write to the same chain) and a counter. */
const BATCH_ID_PREFIX = randomBytes(9).toString('base64url');
let batchCounter = 0;

function newBatchId(): string {
  return `${BATCH_ID_PREFIX}.${++batchCounter}`;
}
