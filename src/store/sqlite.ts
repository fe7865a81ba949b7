/**
 * SQLite backend (better-sqlite3): `<state_dir>/state.db`, WAL journal so
 * CLI readers (`audit tail`, `secret list`) never block the gateway's
 * writer. better-sqlite3 is synchronous; the methods wrap results in settled
 * promises to satisfy the backend-neutral interface.
 */
import Database from 'better-sqlite3';
import { chmodSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { MIGRATIONS, LATEST_SCHEMA_VERSION } from './migrations.js';
import { ensurePrivateDir, assertPrivateFile } from './state-dir.js';
import { encodeJson, decodeJson } from './json.js';
import { RangeCollector, cutSegment, firstSeqAtOrAfterIn, packSegments, unpackSegment, type AuditSegment } from './audit-segments.js';
import {
  StoreError,
  type AuditCheckpoint,
  type AuditHead,
  type AuditLinker,
  type AuditRepo,
  type AuditRow,
  type KvEntry,
  type KvStore,
  type SecretRepo,
  type SecretRow,
  type OpenStoreOptions,
  type Store,
} from './types.js';

export const STATE_DB_FILE = 'state.db';

export function openSqliteStore(stateDir: string): Store {
  const dir = ensurePrivateDir(stateDir);
  const path = join(dir, STATE_DB_FILE);
  const existed = existsSync(path);
  if (existed) assertPrivateFile(path);
  let db: Database.Database;
  try {
    db = new Database(path);
  } catch (err) {
    throw new StoreError(`cannot open ${path}: ${(err as Error).message}`);
  }
  try {
    if (!existed) chmodSync(path, 0o600);
    db.pragma('journal_mode = WAL');
    // WAL + NORMAL survives a process crash; the last commits may be lost only on power failure.
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 10000');
    db.pragma('foreign_keys = ON');
    const version = migrate(db, path);
    return new SqliteStore(db, dir, path, version);
  } catch (err) {
    db.close();
    if (err instanceof StoreError) throw err;
    throw new StoreError(`cannot use ${path}: ${(err as Error).message}`);
  }
}

function migrate(db: Database.Database, path: string): number {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
  const current = (db.prepare('SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations').get() as { v: number }).v;
  if (current > LATEST_SCHEMA_VERSION) {
    throw new StoreError(
      `${path} has schema version ${current}, newer than this clawpatrol understands (${LATEST_SCHEMA_VERSION}); upgrade clawpatrol`,
    );
  }
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    // IMMEDIATE: two processes opening a fresh state dir at once must not both migrate.
    db.transaction(() => {
      const again = (db.prepare('SELECT COUNT(*) AS n FROM schema_migrations WHERE version = ?').get(m.version) as { n: number }).n;
      if (again) return;
      db.exec(m.sqlite);
      record.run(m.version, m.name, new Date().toISOString());
    }).immediate();
  }
  return LATEST_SCHEMA_VERSION;
}

class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly location: string;
  readonly kv: KvStore;
  readonly secrets: SecretRepo;
  readonly audit: AuditRepo;
  private closed = false;

  constructor(
    private readonly db: Database.Database,
    private readonly stateDir: string,
    path: string,
    readonly schemaVersion: number,
  ) {
    this.location = `sqlite:${path}`;
    this.kv = new SqliteKv(db);
    this.secrets = new SqliteSecrets(db);
    this.audit = new SqliteAudit(db);
  }

  reopenOptions(): OpenStoreOptions {
    return { stateDir: this.stateDir };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

/** Run synchronous work and surface it as a promise, so callers handle errors one way for both backends. */
function settle<T>(work: () => T): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (err) {
    return Promise.reject(err);
  }
}

class SqliteKv implements KvStore {
  private readonly stmt;
  constructor(private readonly db: Database.Database) {
    this.stmt = {
      get: db.prepare('SELECT value FROM kv WHERE ns = ? AND key = ?'),
      put: db.prepare(
        'INSERT INTO kv (ns, key, value, updated_at) VALUES (?, ?, ?, ?) ' +
          'ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      ),
      insert: db.prepare('INSERT INTO kv (ns, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (ns, key) DO NOTHING'),
      del: db.prepare('DELETE FROM kv WHERE ns = ? AND key = ?'),
      take: db.prepare('DELETE FROM kv WHERE ns = ? AND key = ? RETURNING value'),
      list: db.prepare('SELECT key, value, updated_at FROM kv WHERE ns = ? ORDER BY key'),
    };
  }

  get<T>(ns: string, key: string): Promise<T | undefined> {
    return settle(() => {
      const row = this.stmt.get.get(ns, key) as { value: string } | undefined;
      return row ? (decodeJson(row.value) as T) : undefined;
    });
  }

  put(ns: string, key: string, value: unknown): Promise<void> {
    return settle(() => {
      this.stmt.put.run(ns, key, encodeJson(value), new Date().toISOString());
    });
  }

  putIfAbsent(ns: string, key: string, value: unknown): Promise<boolean> {
    return settle(() => this.stmt.insert.run(ns, key, encodeJson(value), new Date().toISOString()).changes === 1);
  }

  delete(ns: string, key: string): Promise<boolean> {
    return settle(() => this.stmt.del.run(ns, key).changes > 0);
  }

  take<T>(ns: string, key: string): Promise<T | undefined> {
    return settle(() => {
      const row = this.stmt.take.get(ns, key) as { value: string } | undefined;
      return row ? (decodeJson(row.value) as T) : undefined;
    });
  }

  list<T>(ns: string): Promise<KvEntry<T>[]> {
    return settle(() =>
      (this.stmt.list.all(ns) as Array<{ key: string; value: string; updated_at: string }>).map((r) => ({
        key: r.key,
        value: decodeJson(r.value) as T,
        updatedAt: r.updated_at,
      })),
    );
  }
}

class SqliteSecrets implements SecretRepo {
  private readonly stmt;
  private readonly bump;
  constructor(private readonly db: Database.Database) {
    this.stmt = {
      list: db.prepare('SELECT owner, slot, key_id, nonce, sealed, updated_at FROM secrets ORDER BY owner, slot'),
      put: db.prepare(
        'INSERT INTO secrets (owner, slot, key_id, nonce, sealed, updated_at) VALUES (?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (owner, slot) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce, ' +
          'sealed = excluded.sealed, updated_at = excluded.updated_at',
      ),
      insert: db.prepare(
        'INSERT INTO secrets (owner, slot, key_id, nonce, sealed, updated_at) VALUES (?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (owner, slot) DO NOTHING',
      ),
      delOne: db.prepare('DELETE FROM secrets WHERE owner = ? AND slot = ?'),
      delAll: db.prepare('DELETE FROM secrets WHERE owner = ?'),
      version: db.prepare("SELECT value FROM counters WHERE name = 'secrets'"),
    };
    this.bump = db.prepare("UPDATE counters SET value = value + 1 WHERE name = 'secrets'");
  }

  list(): Promise<SecretRow[]> {
    return settle(() =>
      (
        this.stmt.list.all() as Array<{
          owner: string;
          slot: string;
          key_id: string;
          nonce: Buffer;
          sealed: Buffer;
          updated_at: string;
        }>
      ).map((r) => ({
        owner: r.owner,
        slot: r.slot,
        keyId: r.key_id,
        nonce: r.nonce,
        sealed: r.sealed,
        updatedAt: r.updated_at,
      })),
    );
  }

  put(row: SecretRow): Promise<void> {
    return settle(() => {
      this.db.transaction(() => {
        this.stmt.put.run(row.owner, row.slot, row.keyId, row.nonce, row.sealed, row.updatedAt);
        this.bump.run();
      }).immediate();
    });
  }

  insert(row: SecretRow): Promise<boolean> {
    return settle(() =>
      this.db.transaction(() => {
        const inserted = this.stmt.insert.run(row.owner, row.slot, row.keyId, row.nonce, row.sealed, row.updatedAt).changes === 1;
        if (inserted) this.bump.run();
        return inserted;
      }).immediate(),
    );
  }

  delete(owner: string, slot?: string): Promise<number> {
    return settle(() =>
      this.db.transaction(() => {
        const n = slot === undefined ? this.stmt.delAll.run(owner).changes : this.stmt.delOne.run(owner, slot).changes;
        if (n) this.bump.run();
        return n;
      }).immediate(),
    );
  }

  version(): Promise<number> {
    return settle(() => (this.stmt.version.get() as { value: number }).value);
  }
}

/** An `audit_segments` row as better-sqlite3 returns it. */
export interface SegmentRow {
  first_seq: number;
  last_seq: number;
  ts_min: number;
  ts_max: number;
  prev_hash: string;
  codec: string;
  body: Buffer;
  batch: string | null;
}

const SEGMENT_COLUMNS = 'first_seq, last_seq, ts_min, ts_max, prev_hash, codec, body, batch';

export function toSegment(r: SegmentRow): AuditSegment {
  return {
    firstSeq: r.first_seq,
    lastSeq: r.last_seq,
    tsMin: r.ts_min,
    tsMax: r.ts_max,
    prevHash: r.prev_hash,
    codec: r.codec,
    body: r.body,
    batch: r.batch,
  };
}

/** Records live in compressed segments, one row per written batch (audit-segments.ts). */
class SqliteAudit implements AuditRepo {
  private readonly stmt;
  constructor(private readonly db: Database.Database) {
    // The segment holding record N+1 starts at or before it: MAX over the primary key finds it without a scan.
    const fromSegmentOf = `first_seq >= COALESCE((SELECT MAX(first_seq) FROM audit_segments WHERE first_seq <= ?), 0)`;
    this.stmt = {
      head: db.prepare('SELECT seq, hash, mac FROM audit_head WHERE id = 1'),
      setHead: db.prepare(
        'INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, ?, ?, ?) ' +
          'ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac',
      ),
      checkpoint: db.prepare('SELECT seq, hash, mac, created_at FROM audit_checkpoints ORDER BY seq DESC LIMIT 1'),
      insert: db.prepare(`INSERT INTO audit_segments (${SEGMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
      ofBatch: db.prepare(`SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE batch = ? ORDER BY first_seq`),
      rangeAfter: db.prepare(`SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE ${fromSegmentOf} ORDER BY first_seq`),
      rangeAfterSince: db.prepare(`SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE ${fromSegmentOf} AND ts_max >= ? ORDER BY first_seq`),
      count: db.prepare('SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) AS n FROM audit_segments'),
      // In seq order, stopping at the first match: reads the segments older than `ts` (the ones retention prunes).
      firstAt: db.prepare(`SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE ts_max >= ? ORDER BY first_seq LIMIT 1`),
      first: db.prepare('SELECT MIN(first_seq) AS seq FROM audit_segments'),
      segmentOf: db.prepare(`SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE first_seq <= ? ORDER BY first_seq DESC LIMIT 1`),
      addCheckpoint: db.prepare('INSERT INTO audit_checkpoints (seq, hash, mac, created_at) VALUES (?, ?, ?, ?)'),
      deleteUpto: db.prepare('DELETE FROM audit_segments WHERE first_seq <= ? AND last_seq <= ? RETURNING last_seq - first_seq + 1 AS n'),
      deleteSegment: db.prepare('DELETE FROM audit_segments WHERE first_seq = ?'),
    };
  }

  append(link: AuditLinker, batch?: string): Promise<AuditRow[]> {
    return settle(() =>
      // IMMEDIATE takes the write lock before reading the head: no other writer can link to the same head.
      this.db.transaction(() => {
        if (batch !== undefined) {
          const stored = this.stmt.ofBatch.all(batch) as SegmentRow[];
          if (stored.length) return stored.flatMap((s) => unpackSegment(toSegment(s)));
        }
        const head = this.readHead();
        const { rows, head: next } = link(head);
        for (const s of packSegments(rows, batch ?? null)) this.insertSegment(s);
        this.stmt.setHead.run(next.seq, next.hash, next.mac);
        return rows;
      }).immediate(),
    );
  }

  private insertSegment(s: AuditSegment): void {
    this.stmt.insert.run(s.firstSeq, s.lastSeq, s.tsMin, s.tsMax, s.prevHash, s.codec, s.body, s.batch);
  }

  private readHead(): AuditHead | null {
    const row = this.stmt.head.get() as { seq: number; hash: string; mac: string | null } | undefined;
    return row ? { seq: row.seq, hash: row.hash, mac: row.mac } : null;
  }

  head(): Promise<AuditHead | null> {
    return settle(() => this.readHead());
  }

  checkpoint(): Promise<AuditCheckpoint | null> {
    return settle(() => {
      const row = this.stmt.checkpoint.get() as
        | { seq: number; hash: string; mac: string | null; created_at: string }
        | undefined;
      return row ? { seq: row.seq, hash: row.hash, mac: row.mac, createdAt: row.created_at } : null;
    });
  }

  range(opts: { afterSeq?: number; sinceTs?: number; limit: number }): Promise<AuditRow[]> {
    return settle(() => {
      const from = (opts.afterSeq ?? 0) + 1;
      const segments = (opts.sinceTs === undefined ? this.stmt.rangeAfter.iterate(from) : this.stmt.rangeAfterSince.iterate(from, opts.sinceTs)) as IterableIterator<SegmentRow>;
      const collect = new RangeCollector(opts);
      if (!collect.full) for (const s of segments) if (!collect.add(toSegment(s))) break;
      return collect.rows;
    });
  }

  count(): Promise<number> {
    return settle(() => (this.stmt.count.get() as { n: number }).n);
  }

  firstSeqAtOrAfter(ts: number): Promise<number | null> {
    return settle(() => {
      const s = this.stmt.firstAt.get(ts) as SegmentRow | undefined;
      return s ? firstSeqAtOrAfterIn(toSegment(s), ts) : null;
    });
  }

  firstSeq(): Promise<number | null> {
    return settle(() => (this.stmt.first.get() as { seq: number | null }).seq);
  }

  prune(uptoSeq: number, seal: (seq: number, hash: string) => string | null): Promise<number> {
    return settle(() =>
      this.db.transaction(() => {
        const row = this.stmt.segmentOf.get(uptoSeq) as SegmentRow | undefined;
        const cut = row && row.last_seq >= uptoSeq ? cutSegment(toSegment(row), uptoSeq) : null;
        if (!row || !cut) return 0;
        this.stmt.addCheckpoint.run(uptoSeq, cut.hash, seal(uptoSeq, cut.hash), new Date().toISOString());
        let pruned = 0;
        for (const gone of this.stmt.deleteUpto.all(uptoSeq, uptoSeq) as Array<{ n: number }>) pruned += gone.n;
        if (row.last_seq > uptoSeq) {
          // The segment that straddles the cut keeps its records after it, as a segment of their own.
          this.stmt.deleteSegment.run(row.first_seq);
          for (const s of cut.rest) this.insertSegment(s);
          pruned += uptoSeq - row.first_seq + 1;
        }
        return pruned;
      }).immediate(),
    );
  }
}
