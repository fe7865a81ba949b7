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

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'kv, secrets, audit chain', sqlite: schemaV1(SQLITE), postgres: schemaV1(POSTGRES) },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);
