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

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'kv, secrets, audit chain',
    sqlite: `
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
        nonce BLOB NOT NULL,
        sealed BLOB NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (owner, slot)
      );
      CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO counters (name, value) VALUES ('secrets', 0);
      CREATE TABLE audit_records (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        record TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX audit_records_ts ON audit_records (ts);
      CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        mac TEXT
      );
      CREATE TABLE audit_checkpoints (
        seq INTEGER PRIMARY KEY,
        hash TEXT NOT NULL,
        mac TEXT,
        created_at TEXT NOT NULL
      );
    `,
    postgres: `
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
        nonce BYTEA NOT NULL,
        sealed BYTEA NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (owner, slot)
      );
      CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
      INSERT INTO counters (name, value) VALUES ('secrets', 0);
      CREATE TABLE audit_records (
        seq BIGINT PRIMARY KEY,
        ts BIGINT NOT NULL,
        record TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX audit_records_ts ON audit_records (ts);
      CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        mac TEXT
      );
      CREATE TABLE audit_checkpoints (
        seq BIGINT PRIMARY KEY,
        hash TEXT NOT NULL,
        mac TEXT,
        created_at TEXT NOT NULL
      );
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.reduce((max, m) => Math.max(max, m.version), 0);
