/**
 * The audit hash chain, as pure functions.
 *
 *   record_json = canonical JSON of { seq, ...AuditRecordInput }
 *   hash        = hex(SHA-256( prev_hash_hex || record_json ))     (ASCII hex, then UTF-8 JSON)
 *   prev_hash   = hash of the previous record; 64 zeros for record 1,
 *                 or the checkpoint's hash after retention pruned the start.
 *
 * The head (last seq + hash) is stored beside the records so a truncated
 * tail shows; when the log has a key (derived from the vault key) the head
 * and every checkpoint carry an HMAC, so rewriting the chain from an edited
 * record onwards — or forging a checkpoint — shows too.
 */
import { createHash, createHmac, hash, timingSafeEqual } from 'node:crypto';
import type { AuditCheckpoint, AuditHead, AuditRow } from '../store/types.js';
import { canonicalJson } from './canonical.js';
import { fillSeq, type EncodedBatch } from './record-json.js';

export const GENESIS_HASH = '0'.repeat(64);

const HEX_HASH = /^[0-9a-f]{64}$/;

export function chainHash(prevHash: string, recordJson: string): string {
  // One-shot hashing of the concatenation is ~3× cheaper than a Hash object; it equals the
  // latin1-then-UTF-8 definition whenever prev_hash is hex, which only a tampered row is not.
  if (HEX_HASH.test(prevHash)) return linkHash(prevHash, recordJson);
  return createHash('sha256').update(prevHash, 'latin1').update(recordJson, 'utf8').digest('hex');
}

/** chainHash for a prev_hash known to be hex (the writer's own). */
function linkHash(prevHash: string, recordJson: string): string {
  return hash('sha256', prevHash + recordJson, 'hex');
}

export function headMac(key: Buffer, seq: number, hash: string): string {
  return createHmac('sha256', key).update(`clawpatrol audit head v1\0${seq}\0${hash}`).digest('hex');
}

export function checkpointMac(key: Buffer, seq: number, hash: string): string {
  return createHmac('sha256', key).update(`clawpatrol audit checkpoint v1\0${seq}\0${hash}`).digest('hex');
}

function macEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Link an encoded batch after `head` (the store calls this inside its write
 * transaction). Each record_json is canonicalJson({ ...record, seq }): the
 * record's template (record-json.ts) with the seq filled in.
 */
export function linkBatch(head: AuditHead | null, batch: EncodedBatch, key: Buffer | null): { rows: AuditRow[]; head: AuditHead } {
  let seq = head?.seq ?? 0;
  let prev = head?.hash ?? GENESIS_HASH;
  const { templates, ts } = batch;
  if (templates.length !== ts.length) throw new Error(`audit: malformed batch (${templates.length} records, ${ts.length} times)`);
  const rows: AuditRow[] = new Array<AuditRow>(templates.length);
  for (let i = 0; i < templates.length; i++) {
    seq++;
    const record = fillSeq(templates[i]!, seq);
    const hash = i === 0 ? chainHash(prev, record) : linkHash(prev, record); // the stored head's hash is checked once
    rows[i] = { seq, ts: ts[i]!, record, prevHash: prev, hash };
    prev = hash;
  }
  return { rows, head: { seq, hash: prev, mac: key ? headMac(key, seq, prev) : null } };
}

// ─────────────────────────── verification ───────────────────────────

export type ChainProblem = 'edited' | 'deleted' | 'reordered' | 'relinked' | 'truncated' | 'head' | 'checkpoint' | 'unreadable';

export type VerifyResult =
  | {
      ok: true;
      /** Records verified. */
      count: number;
      firstSeq: number | null;
      lastSeq: number | null;
      /** Seq of the pruned head verification started from, if retention pruned the log. */
      fromCheckpoint: number | null;
      /** Things that are not tampering but limit what was proved (no key, export without head). */
      notes: string[];
    }
  | {
      ok: false;
      /** The first record that fails, or the position where records are missing. */
      seq: number;
      problem: ChainProblem;
      message: string;
      /** Records verified before the failure. */
      count: number;
    };

export interface VerifyInput {
  rows: AsyncIterable<AuditRow> | Iterable<AuditRow>;
  /** The stored head; `undefined` when unknown (an export), `null` when the store has none. */
  head?: AuditHead | null;
  checkpoint?: AuditCheckpoint | null;
  /** HMAC key of the head and checkpoints; without it their MACs cannot be checked. */
  key?: Buffer | null;
  /**
   * For an export that starts mid-chain (`--since`): trust the first row's
   * prev_hash as the anchor instead of genesis / the checkpoint.
   */
  anchorAtFirstRow?: boolean;
  /**
   * The rows hold the store's own record text, which the writer made the
   * canonical JSON it hashed: text that differs from it (while parsing to
   * the same record) is an edit too. Exports re-serialise records, so not there.
   */
  canonicalText?: boolean;
}

export async function verifyChain(input: VerifyInput): Promise<VerifyResult> {
  const notes: string[] = [];
  const key = input.key ?? null;
  const cp = input.checkpoint ?? null;
  if (cp) {
    if (key) {
      if (!cp.mac || !macEqual(cp.mac, checkpointMac(key, cp.seq, cp.hash))) {
        return fail(cp.seq, 'checkpoint', `the retention checkpoint at record ${cp.seq} is not authentic (its MAC does not match)`, 0);
      }
    } else notes.push('no audit key: the retention checkpoint was not authenticated');
  }
  let expectedSeq = cp ? cp.seq + 1 : 1;
  let expectedPrev = cp ? cp.hash : GENESIS_HASH;
  let count = 0;
  let firstSeq: number | null = null;
  let lastSeq: number | null = null;
  let lastHash: string | null = null;
  const seen = new Map<string, number>();

  for await (const row of input.rows) {
    // An export (no head) that starts past record 1 — `export --since`, or a log retention pruned —
    // has no genesis or checkpoint to start from: it is checked from its first line on, and says so.
    // Without this, `audit verify --input` failed every such export as "earlier records were removed".
    const exportFromMidChain = input.head === undefined && cp === null && row.seq > 1;
    if (firstSeq === null && (input.anchorAtFirstRow || exportFromMidChain)) {
      expectedSeq = row.seq;
      expectedPrev = row.prevHash;
      if (exportFromMidChain) notes.push(`the export starts at record ${row.seq}: records before it are not covered`);
    }
    if (row.damaged !== undefined) {
      return fail(row.seq, 'unreadable', `record ${row.seq} cannot be read: ${row.damaged} (edited)`, count);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(row.record);
    } catch {
      return fail(row.seq, 'unreadable', `record ${row.seq} is not valid JSON (edited)`, count);
    }
    const recordSeq = (parsed as { seq?: unknown } | null)?.seq;
    if (row.seq < expectedSeq) {
      return fail(row.seq, 'reordered', `record ${row.seq} appears after record ${expectedSeq - 1}: records were reordered`, count);
    }
    if (row.seq > expectedSeq) {
      const which = row.seq - 1 === expectedSeq ? `record ${expectedSeq} is` : `records ${expectedSeq}–${row.seq - 1} are`;
      return fail(expectedSeq, 'deleted', `${which} missing (deleted)`, count);
    }
    if (recordSeq !== row.seq) {
      return fail(
        row.seq,
        'reordered',
        `position ${row.seq} holds record ${String(recordSeq)}: records were reordered or renumbered`,
        count,
      );
    }
    const canonical = canonicalJson(parsed);
    if (chainHash(row.prevHash, canonical) !== row.hash) {
      return fail(row.seq, 'edited', `record ${row.seq} was edited: its content does not match its hash`, count);
    }
    // The hash covers the parsed record, so an edit JSON.parse undoes — a duplicate key put before the
    // real one, which a first-wins reader (or a human with grep) takes as the record — passed as intact.
    if (input.canonicalText && canonical !== row.record) {
      return fail(row.seq, 'edited', `record ${row.seq} was edited: its stored text is not the JSON that was hashed`, count);
    }
    if (row.prevHash !== expectedPrev) {
      const earlier = seen.get(row.prevHash);
      const why =
        earlier !== undefined
          ? `it links to record ${earlier}, not ${row.seq - 1}: records were reordered`
          : row.seq === expectedSeq && firstSeq === null && cp === null
            ? 'it does not start the chain: earlier records were removed'
            : `it does not link to record ${row.seq - 1}: record ${row.seq - 1} or ${row.seq} was edited or replaced`;
      return fail(row.seq, earlier !== undefined ? 'reordered' : 'relinked', `record ${row.seq} breaks the chain: ${why}`, count);
    }
    seen.set(row.hash, row.seq);
    if (seen.size > 4096) seen.delete(seen.keys().next().value as string);
    firstSeq ??= row.seq;
    lastSeq = row.seq;
    lastHash = row.hash;
    expectedSeq = row.seq + 1;
    expectedPrev = row.hash;
    count++;
  }

  if (input.head === undefined) {
    notes.push('no head to compare with: a truncated tail cannot be detected in an export');
  } else if (input.head === null) {
    if (count > 0) return fail(lastSeq!, 'head', `the log has ${count} records but no head record (the head was deleted)`, count);
  } else {
    const head = input.head;
    if (key) {
      if (!head.mac || !macEqual(head.mac, headMac(key, head.seq, head.hash))) {
        return fail(head.seq, 'head', `the head record (record ${head.seq}) is not authentic (its MAC does not match): the log was rewritten`, count);
      }
    } else notes.push('no audit key: the head was not authenticated (a rewrite of the whole chain would not show)');
    const endSeq = lastSeq ?? (cp ? cp.seq : 0);
    const endHash = lastHash ?? (cp ? cp.hash : GENESIS_HASH);
    if (head.seq > endSeq) {
      const which = head.seq === endSeq + 1 ? `record ${head.seq} is` : `records ${endSeq + 1}–${head.seq} are`;
      return fail(endSeq + 1, 'truncated', `the log ends at record ${endSeq} but the head is record ${head.seq}: ${which} missing (truncated tail)`, count);
    }
    if (head.seq < endSeq) {
      return fail(head.seq + 1, 'head', `records after ${head.seq} are not covered by the head (appended outside the gateway, or the head was rolled back)`, count);
    }
    if (head.hash !== endHash) {
      return fail(endSeq, 'head', `record ${endSeq} does not match the head: the end of the log was edited or replaced`, count);
    }
  }
  return { ok: true, count, firstSeq, lastSeq, fromCheckpoint: cp ? cp.seq : null, notes };
}

function fail(seq: number, problem: ChainProblem, message: string, count: number): VerifyResult {
  return { ok: false, seq, problem, message, count };
}
