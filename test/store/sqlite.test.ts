import { describe, it, expect, afterAll } from 'vitest';
import { mkdtempSync, mkdirSync, chmodSync, statSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, StoreError, STATE_DB_FILE } from '../../src/store/index.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../src/store/migrations.js';
import { storeContract } from './contract.js';
import { AuditLog, linkBatch, verifyStore } from '../../src/audit/index.js';
import { encodeBatch } from '../../src/audit/record-json.js';
import { record } from '../audit/records.js';

const root = mkdtempSync(join(tmpdir(), 'clawpatrol-store-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
let last = '';
storeContract(
  'sqlite',
  () => {
    last = join(root, `contract-${n++}`, 'state');
    return openStore({ stateDir: last });
  },
  () => openStore({ stateDir: last }),
);

describe('sqlite store: state directory', () => {
  it('creates a missing state dir with mode 0700 and the database 0600, in WAL mode', async () => {
    const dir = join(root, 'fresh', 'nested', 'state');
    const store = await openStore({ stateDir: dir });
    try {
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, STATE_DB_FILE)).mode & 0o777).toBe(0o600);
      expect(store.kind).toBe('sqlite');
      expect(store.location).toBe(`sqlite:${join(dir, STATE_DB_FILE)}`);
      expect(store.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    } finally {
      await store.close();
    }
    const db = new Database(join(dir, STATE_DB_FILE), { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    const versions = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as Array<{ version: number }>;
    expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
    db.close();
  });

  it('refuses a group- or world-accessible state dir, naming the fix', async () => {
    for (const mode of [0o755, 0o750, 0o701]) {
      const dir = join(root, `open-${mode.toString(8)}`);
      mkdirSync(dir);
      chmodSync(dir, mode);
      const err = await openStore({ stateDir: dir }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreError);
      expect((err as Error).message).toContain(`accessible by group or others (mode 0${mode.toString(8)})`);
      expect((err as Error).message).toContain(`chmod 700 ${dir}`);
    }
  });

  it('refuses a state database that others can read', async () => {
    const dir = join(root, 'leaky-db');
    const store = await openStore({ stateDir: dir });
    await store.close();
    chmodSync(join(dir, STATE_DB_FILE), 0o644);
    await expect(openStore({ stateDir: dir })).rejects.toThrow(`chmod 600 ${join(dir, STATE_DB_FILE)}`);
  });

  it('refuses a state_dir that is a file', async () => {
    const file = join(root, 'a-file');
    writeFileSync(file, 'x');
    await expect(openStore({ stateDir: file })).rejects.toThrow(/is not a directory/);
  });

  it('refuses a database written by a newer clawpatrol', async () => {
    const dir = join(root, 'newer');
    const store = await openStore({ stateDir: dir });
    await store.close();
    const db = new Database(join(dir, STATE_DB_FILE));
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(999, 'future', 'x');
    db.close();
    await expect(openStore({ stateDir: dir })).rejects.toThrow(/schema version 999, newer than this clawpatrol understands/);
  });

  it('upgrades a schema-1 database in place: its audit records move into segments unchanged, still verify, and the chain goes on', async () => {
    const dir = join(root, 'v1');
    await (await openStore({ stateDir: dir })).close();
    // Make it what a clawpatrol with only migration 1 left behind: one row per record, a ts index.
    const legacy = linkBatch(null, encodeBatch([record(1), record(2), record(3)], 0), null);
    const db = new Database(join(dir, STATE_DB_FILE));
    db.exec(`DROP TABLE audit_segments; DELETE FROM schema_migrations WHERE version > 1;
      CREATE TABLE audit_records (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
      CREATE INDEX audit_records_ts ON audit_records (ts);`);
    const insert = db.prepare('INSERT INTO audit_records (seq, ts, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?)');
    for (const r of legacy.rows) insert.run(r.seq, r.ts, r.record, r.prevHash, r.hash);
    db.prepare('INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, ?, ?, NULL)').run(legacy.head.seq, legacy.head.hash);
    db.close();

    const upgraded = await openStore({ stateDir: dir });
    try {
      expect(upgraded.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
      expect(await upgraded.audit.range({ limit: 10 })).toEqual(legacy.rows);
      expect(await upgraded.audit.firstSeqAtOrAfter(legacy.rows[1]!.ts)).toBe(2);
      const log = new AuditLog({ store: upgraded, key: null });
      log.append(record(4));
      await log.close();
      expect(await verifyStore(upgraded, null)).toMatchObject({ ok: true, count: 4, firstSeq: 1, lastSeq: 4 });
    } finally {
      await upgraded.close();
    }
    const after = new Database(join(dir, STATE_DB_FILE), { readonly: true });
    expect(after.prepare("SELECT name FROM sqlite_master WHERE name IN ('audit_records', 'audit_records_ts')").all()).toEqual([]);
    expect(after.prepare('SELECT first_seq, last_seq, codec FROM audit_segments ORDER BY first_seq').all()).toEqual([
      { first_seq: 1, last_seq: 1, codec: 'plain' },
      { first_seq: 2, last_seq: 2, codec: 'plain' },
      { first_seq: 3, last_seq: 3, codec: 'plain' },
      { first_seq: 4, last_seq: 4, codec: 'deflate-raw' },
    ]);
    after.close();
  });

  it('two handles on one state dir share data and migrations are applied once', async () => {
    const dir = join(root, 'race');
    const [a, b] = await Promise.all([openStore({ stateDir: dir }), openStore({ stateDir: dir })]);
    await a.kv.put('ns', 'k', 1);
    expect(await b.kv.get('ns', 'k')).toBe(1);
    await a.close();
    await b.close();
    const db = new Database(join(dir, STATE_DB_FILE), { readonly: true });
    expect((db.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get() as { n: number }).n).toBe(MIGRATIONS.length);
    db.close();
  });
});
