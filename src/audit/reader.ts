/**
 * Reading the audit log back: ordered iteration, verification against the
 * stored head, JSONL export and parsing (for `audit export` / `audit verify
 * --input`).
 *
 * Export line = the record's fields (including `seq`) plus `prev_hash` and
 * `hash`. Removing those two keys and canonicalising the rest gives exactly
 * the JSON that was hashed, so a SIEM can re-verify the chain.
 */
import type { AuditRepo, AuditRow, Store } from '../store/types.js';
import { verifyChain, type VerifyResult } from './chain.js';

const PAGE = 2000;

/** The stored records in seq order, a page at a time (a store, or the writer's own repo). */
export async function* auditRows(store: { audit: Pick<AuditRepo, 'range'> }, opts: { afterSeq?: number; sinceTs?: number } = {}): AsyncGenerator<AuditRow> {
  let after = opts.afterSeq ?? 0;
  for (;;) {
    const page = await store.audit.range({ afterSeq: after, limit: PAGE, ...(opts.sinceTs !== undefined ? { sinceTs: opts.sinceTs } : {}) });
    for (const r of page) yield r;
    if (page.length < PAGE) return;
    after = page[page.length - 1]!.seq;
  }
}

/** Verify the whole stored log: checkpoint → every record → head. */
export async function verifyStore(store: Store, key: Buffer | null): Promise<VerifyResult> {
  // Read the head first: records appended while we iterate are then simply beyond it.
  const head = await store.audit.head();
  const checkpoint = await store.audit.checkpoint();
  const upto = head?.seq;
  async function* bounded(): AsyncGenerator<AuditRow> {
    for await (const r of auditRows(store)) {
      if (upto !== undefined && r.seq > upto) return;
      yield r;
    }
  }
  const result = await verifyChain({ rows: bounded(), head, checkpoint, key, canonicalText: true });
  if (!result.ok) return result;
  // Records beyond the head we started from are fine if the gateway has linked them since (the head moved
  // past them); records the head has never covered were added behind the gateway's back.
  const covered = (await store.audit.head())?.seq ?? 0;
  const stray = await store.audit.range({ afterSeq: Math.max(covered, upto ?? 0), limit: 1 });
  if (stray[0]) {
    return {
      ok: false,
      seq: stray[0].seq,
      problem: 'head',
      message: `record ${stray[0].seq} is not covered by the head (record ${covered}): it was added outside the gateway`,
      count: result.count,
    };
  }
  return result;
}

/** A stored record's fields; throws, saying which record and why, when it cannot be read (`audit verify` tells more). */
export function readRecord(row: AuditRow): Record<string, unknown> {
  if (row.damaged !== undefined) throw new Error(`record ${row.seq} cannot be read: ${row.damaged} (run clawpatrol audit verify)`);
  let record: unknown;
  try {
    record = JSON.parse(row.record);
  } catch {
    throw new Error(`record ${row.seq} is not valid JSON (run clawpatrol audit verify)`);
  }
  if (!record || typeof record !== 'object' || Array.isArray(record)) throw new Error(`record ${row.seq} is not a JSON object (run clawpatrol audit verify)`);
  return record as Record<string, unknown>;
}

export function exportLine(row: AuditRow): string {
  return JSON.stringify({ ...readRecord(row), prev_hash: row.prevHash, hash: row.hash });
}

/** Parse one export line back into a row; throws on lines that are not export records. */
export function parseExportLine(line: string, lineNo: number): AuditRow {
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch {
    throw new Error(`line ${lineNo}: not JSON`);
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`line ${lineNo}: not an audit record`);
  const { prev_hash: prevHash, hash, ...record } = obj as Record<string, unknown>;
  if (typeof prevHash !== 'string' || typeof hash !== 'string' || typeof record.seq !== 'number') {
    throw new Error(`line ${lineNo}: missing seq, prev_hash or hash`);
  }
  const ts = typeof record.time === 'string' ? Date.parse(record.time) : NaN;
  // Re-serialising is safe: verification canonicalises the parsed record anyway.
  return { seq: record.seq, ts: Number.isFinite(ts) ? ts : 0, record: JSON.stringify(record), prevHash, hash };
}

/** Rows from JSONL text lines (blank lines skipped). */
export async function* rowsFromLines(lines: AsyncIterable<string> | Iterable<string>): AsyncGenerator<AuditRow> {
  let n = 0;
  for await (const line of lines) {
    n++;
    if (!line.trim()) continue;
    yield parseExportLine(line, n);
  }
}
