/**
 * Versioned schema migrations, one list for both backends. A migration is
 * applied once, in order, inside a transaction, and recorded in
 * `schema_migrations`. Never edit a released migration: add a new one.
 */

export interface Migration {
  version: number;
  name: string;
  sqlite: string;
  postgres: string;
}

/** Column types that differ between the dialects; everything else in the schema is written once. */
interface Dialect {
  bytes: string;
  int64: string;
}
const SQLITE: Dialect = { bytes: 'BLOB', int64: 'INTEGER' };
const POSTGRES: Dialect = { bytes: 'BYTEA', int64: 'BIGINT' };

/** Migration 1 as released: its text must stay exactly as it is in both dialects. */
function schemaV1(t: Dialect): string {
  return `
      CREATE TABLE kv (
        ns TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (ns, key)
      );
      CREATE TABLE secrets (
        owner TEXT NOT NULL,
        slot TEXT NOT NULL,
        key_id TEXT NOT NULL,
        nonce ${t.bytes} NOT NULL,
        sealed ${t.bytes} NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (owner, slot)
      );
      CREATE TABLE counters (name TEXT PRIMARY KEY, value ${t.int64} NOT NULL);
      INSERT INTO counters (name, value) VALUES ('secrets', 0);
      CREATE TABLE audit_records (
        seq ${t.int64} PRIMARY KEY,
        ts ${t.int64} NOT NULL,
        record TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX audit_records_ts ON audit_records (ts);
      CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq ${t.int64} NOT NULL,
        hash TEXT NOT NULL,
        mac TEXT
      );
      CREATE TABLE audit_checkpoints (
        seq ${t.int64} PRIMARY KEY,
        hash TEXT NOT NULL,
        mac TEXT,
        created_at TEXT NOT NULL
      );
    `;
}

/**
 * Migration 2: the audit records' `ts` index cost a second B-tree insert per
 * record (over a third of SQLite's work per record). Nothing needs it: the
 * two readers by time walk records in seq order anyway — retention looks for
 * the first record young enough (`… WHERE ts >= ? ORDER BY seq LIMIT 1`
 * reads exactly the records it is about to prune), and `export --since`
 * pages through every record after a seq.
 */
const DROP_AUDIT_TS_INDEX = 'DROP INDEX IF EXISTS audit_records_ts;';

/**
 * Migration 3: audit records move into compressed segments (audit-segments.ts)
 * — one row per written batch instead of one per record. Records already
 * written become one-record segments in the `plain` codec, their lines built
 * exactly as the segment codec reads them (`ts TAB hash TAB record_json`),
 * so their hashes, seqs and prev_hashes are kept as they were. A segment
 * names the batch it was written for (`batch`), so a batch sent again after
 * its answer was lost is recognised instead of written twice.
 */
function auditSegments(t: Dialect & { line: string }): string {
  return `
      CREATE TABLE audit_segments (
        first_seq ${t.int64} PRIMARY KEY,
        last_seq ${t.int64} NOT NULL,
        ts_min ${t.int64} NOT NULL,
        ts_max ${t.int64} NOT NULL,
        prev_hash TEXT NOT NULL,
        codec TEXT NOT NULL,
        body ${t.bytes} NOT NULL,
        batch TEXT
      );
      CREATE INDEX audit_segments_batch ON audit_segments (batch) WHERE batch IS NOT NULL;
      INSERT INTO audit_segments (first_seq, last_seq, ts_min, ts_max, prev_hash, codec, body)
        SELECT seq, seq, ts, ts, prev_hash, 'plain', ${t.line} FROM audit_records;
      DROP TABLE audit_records;
    `;
}

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'kv, secrets, audit chain', sqlite: schemaV1(SQLITE), postgres: schemaV1(POSTGRES) },
  { version: 2, name: 'audit records without the ts index', sqlite: DROP_AUDIT_TS_INDEX, postgres: DROP_AUDIT_TS_INDEX },
  {
    version: 3,
    name: 'audit records in compressed segments',
    sqlite: auditSegments({ ...SQLITE, line: "CAST(ts || char(9) || hash || char(9) || record AS BLOB)" }),
    postgres: auditSegments({ ...POSTGRES, line: "convert_to(ts::text || chr(9) || hash || chr(9) || record, 'UTF8')" }),
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);
