/**
 * The audit log as someone with write access to the state database sees it:
 * every stored record as a row (seq, ts, record_json, prev_hash, hash), and
 * a way to put edited rows back. Rows go back one per segment, in the
 * `plain` codec — an attacker who edits, deletes, reorders or forges
 * records can write the storage format as well as the gateway can, so the
 * tampering tests exercise the chain, not the compression.
 */
import type Database from 'better-sqlite3';
import { unpackSegment, type AuditSegment } from '../../../src/store/audit-segments.js';
import type { AuditRow } from '../../../src/store/types.js';
import { toSegment, type SegmentRow } from '../../../src/store/sqlite.js';

export function storedRows(db: Database.Database): AuditRow[] {
  return storedSegments(db).flatMap(unpackSegment);
}

export function storedRow(db: Database.Database, seq: number): AuditRow {
  const row = storedRows(db).find((r) => r.seq === seq);
  if (!row) throw new Error(`no stored record ${seq}`);
  return row;
}

/** Replace every stored record with `rows`, each as a segment of its own (keyed by its seq). */
export function writeStoredRows(db: Database.Database, rows: readonly AuditRow[]): void {
  const insert = db.prepare(
    'INSERT INTO audit_segments (first_seq, last_seq, ts_min, ts_max, prev_hash, codec, body) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  db.transaction(() => {
    db.exec('DELETE FROM audit_segments');
    for (const r of rows) insert.run(r.seq, r.seq, r.ts, r.ts, r.prevHash, 'plain', Buffer.from(`${r.ts}\t${r.hash}\t${r.record}`));
  })();
}

/** Read every stored record, let `edit` change the list, write it back. */
export function editStoredRows(db: Database.Database, edit: (rows: AuditRow[]) => AuditRow[]): void {
  writeStoredRows(db, edit(storedRows(db)));
}

/** One stored segment as the codec sees it (for tests that damage a segment itself). */
export function storedSegments(db: Database.Database): AuditSegment[] {
  return (db.prepare('SELECT * FROM audit_segments ORDER BY first_seq').all() as SegmentRow[]).map(toSegment);
}
