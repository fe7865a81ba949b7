/**
 * PostgreSQL backend: one database shared by several gateways
 * (`gateway { store { postgres = "postgres://…" } }`). Same tables and
 * semantics as SQLite; the places where gateways could race are serialised
 * by the database: migrations under a session advisory lock, audit appends
 * and prunes under a transaction advisory lock (one chain, never forked),
 * one-time tokens with DELETE … RETURNING.
 */
import pg from 'pg';
import { MIGRATIONS, LATEST_SCHEMA_VERSION } from './migrations.js';
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

/** Advisory lock keys (arbitrary constants, namespaced by value). */
const MIGRATION_LOCK = 0x636c6177; // "claw"
const AUDIT_LOCK = 0x61756474; // "audt"

/** The URL without its password, for messages and `Store.location`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

export async function openPostgresStore(url: string): Promise<Store> {
  const location = redactUrl(url);
  const pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 10_000 });
  // An idle client losing its connection must not crash the gateway; the next query reconnects.
  pool.on('error', () => undefined);
  try {
    await migrate(pool, location);
  } catch (err) {
    await pool.end().catch(() => undefined);
    if (err instanceof StoreError) throw err;
    throw new StoreError(`cannot use ${location}: ${(err as Error).message}`);
  }
  return new PgStore(pool, location, url);
}

async function migrate(pool: pg.Pool, location: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)`);
      const cur = await client.query<{ v: number }>('SELECT COALESCE(MAX(version), 0)::int AS v FROM schema_migrations');
      const current = cur.rows[0]!.v;
      if (current > LATEST_SCHEMA_VERSION) {
        throw new StoreError(
          `${location} has schema version ${current}, newer than this clawpatrol understands (${LATEST_SCHEMA_VERSION}); upgrade clawpatrol`,
        );
      }
      for (const m of MIGRATIONS) {
        if (m.version <= current) continue;
        await client.query('BEGIN');
        try {
          await client.query(m.postgres);
          await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
            m.version,
            m.name,
            new Date().toISOString(),
          ]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK');
          throw err;
        }
      }
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  } finally {
    client.release();
  }
}

/** Run `work` in one transaction on one pooled client. */
async function tx<T>(pool: pg.Pool, work: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    try {
      const out = await work(client);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  } finally {
    client.release();
  }
}

class PgStore implements Store {
  readonly kind = 'postgres' as const;
  readonly schemaVersion = LATEST_SCHEMA_VERSION;
  readonly kv: KvStore;
  readonly secrets: SecretRepo;
  readonly audit: AuditRepo;
  private closed = false;
  /** Holds the password: a #private field, so it is not one of the store's own enumerable properties. */
  readonly #url: string;

  constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
    url: string,
  ) {
    this.#url = url;
    this.kv = new PgKv(pool);
    this.secrets = new PgSecrets(pool);
    this.audit = new PgAudit(pool);
  }

  reopenOptions(): OpenStoreOptions {
    return { postgres: this.#url };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

class PgKv implements KvStore {
  constructor(private readonly pool: pg.Pool) {}

  async get<T>(ns: string, key: string): Promise<T | undefined> {
    const r = await this.pool.query<{ value: string }>('SELECT value FROM kv WHERE ns = $1 AND key = $2', [ns, key]);
    return r.rows[0] ? (decodeJson(r.rows[0].value) as T) : undefined;
  }

  async put(ns: string, key: string, value: unknown): Promise<void> {
    const text = encodeJson(value);
    await this.pool.query(
      'INSERT INTO kv (ns, key, value, updated_at) VALUES ($1, $2, $3, $4) ' +
        'ON CONFLICT (ns, key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at',
      [ns, key, text, new Date().toISOString()],
    );
  }

  async putIfAbsent(ns: string, key: string, value: unknown): Promise<boolean> {
    const text = encodeJson(value);
    const r = await this.pool.query('INSERT INTO kv (ns, key, value, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (ns, key) DO NOTHING', [
      ns,
      key,
      text,
      new Date().toISOString(),
    ]);
    return r.rowCount === 1;
  }

  async delete(ns: string, key: string): Promise<boolean> {
    const r = await this.pool.query('DELETE FROM kv WHERE ns = $1 AND key = $2', [ns, key]);
    return (r.rowCount ?? 0) > 0;
  }

  async take<T>(ns: string, key: string): Promise<T | undefined> {
    const r = await this.pool.query<{ value: string }>('DELETE FROM kv WHERE ns = $1 AND key = $2 RETURNING value', [ns, key]);
    return r.rows[0] ? (decodeJson(r.rows[0].value) as T) : undefined;
  }

  async list<T>(ns: string): Promise<KvEntry<T>[]> {
    // COLLATE "C": byte order, the same order SQLite gives.
    const r = await this.pool.query<{ key: string; value: string; updated_at: string }>(
      'SELECT key, value, updated_at FROM kv WHERE ns = $1 ORDER BY key COLLATE "C"',
      [ns],
    );
    return r.rows.map((row) => ({ key: row.key, value: decodeJson(row.value) as T, updatedAt: row.updated_at }));
  }
}

class PgSecrets implements SecretRepo {
  constructor(private readonly pool: pg.Pool) {}

  async list(): Promise<SecretRow[]> {
    const r = await this.pool.query<{ owner: string; slot: string; key_id: string; nonce: Buffer; sealed: Buffer; updated_at: string }>(
      'SELECT owner, slot, key_id, nonce, sealed, updated_at FROM secrets ORDER BY owner COLLATE "C", slot COLLATE "C"',
    );
    return r.rows.map((row) => ({
      owner: row.owner,
      slot: row.slot,
      keyId: row.key_id,
      nonce: row.nonce,
      sealed: row.sealed,
      updatedAt: row.updated_at,
    }));
  }

  async put(row: SecretRow): Promise<void> {
    await tx(this.pool, async (c) => {
      await c.query(
        'INSERT INTO secrets (owner, slot, key_id, nonce, sealed, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ' +
          'ON CONFLICT (owner, slot) DO UPDATE SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, sealed = EXCLUDED.sealed, updated_at = EXCLUDED.updated_at',
        [row.owner, row.slot, row.keyId, row.nonce, row.sealed, row.updatedAt],
      );
      await c.query("UPDATE counters SET value = value + 1 WHERE name = 'secrets'");
    });
  }

  async insert(row: SecretRow): Promise<boolean> {
    return tx(this.pool, async (c) => {
      const r = await c.query(
        'INSERT INTO secrets (owner, slot, key_id, nonce, sealed, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner, slot) DO NOTHING',
        [row.owner, row.slot, row.keyId, row.nonce, row.sealed, row.updatedAt],
      );
      if (r.rowCount !== 1) return false;
      await c.query("UPDATE counters SET value = value + 1 WHERE name = 'secrets'");
      return true;
    });
  }

  async delete(owner: string, slot?: string): Promise<number> {
    return tx(this.pool, async (c) => {
      const r =
        slot === undefined
          ? await c.query('DELETE FROM secrets WHERE owner = $1', [owner])
          : await c.query('DELETE FROM secrets WHERE owner = $1 AND slot = $2', [owner, slot]);
      const n = r.rowCount ?? 0;
      if (n) await c.query("UPDATE counters SET value = value + 1 WHERE name = 'secrets'");
      return n;
    });
  }

  async version(): Promise<number> {
    const r = await this.pool.query<{ value: string }>("SELECT value FROM counters WHERE name = 'secrets'");
    return Number(r.rows[0]!.value);
  }
}

interface PgSegmentRow {
  first_seq: string;
  last_seq: string;
  ts_min: string;
  ts_max: string;
  prev_hash: string;
  codec: string;
  body: Buffer;
  batch: string | null;
}

const SEGMENT_COLUMNS = 'first_seq, last_seq, ts_min, ts_max, prev_hash, codec, body, batch';
/** Segments fetched per query while collecting a range (each holds up to a batch of records). */
const SEGMENT_PAGE = 16;

function toSegment(r: PgSegmentRow): AuditSegment {
  return {
    firstSeq: Number(r.first_seq),
    lastSeq: Number(r.last_seq),
    tsMin: Number(r.ts_min),
    tsMax: Number(r.ts_max),
    prevHash: r.prev_hash,
    codec: r.codec,
    body: r.body,
    batch: r.batch,
  };
}

/** Records live in compressed segments, one row per written batch (audit-segments.ts). */
class PgAudit implements AuditRepo {
  constructor(private readonly pool: pg.Pool) {}

  private async readHead(c: pg.PoolClient | pg.Pool): Promise<AuditHead | null> {
    const r = await c.query<{ seq: string; hash: string; mac: string | null }>('SELECT seq, hash, mac FROM audit_head WHERE id = 1');
    const row = r.rows[0];
    return row ? { seq: Number(row.seq), hash: row.hash, mac: row.mac } : null;
  }

  private async insertSegments(c: pg.PoolClient, segments: readonly AuditSegment[]): Promise<void> {
    if (!segments.length) return;
    await c.query(
      `INSERT INTO audit_segments (${SEGMENT_COLUMNS}) ` +
        'SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bytea[], $8::text[])',
      [
        segments.map((s) => s.firstSeq),
        segments.map((s) => s.lastSeq),
        segments.map((s) => s.tsMin),
        segments.map((s) => s.tsMax),
        segments.map((s) => s.prevHash),
        segments.map((s) => s.codec),
        segments.map((s) => s.body),
        segments.map((s) => s.batch),
      ],
    );
  }

  async append(link: AuditLinker, batch?: string): Promise<AuditRow[]> {
    return tx(this.pool, async (c) => {
      // Every gateway appending to this chain queues here: one head, one chain.
      await c.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_LOCK]);
      if (batch !== undefined) {
        const stored = await c.query<PgSegmentRow>(`SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE batch = $1 ORDER BY first_seq`, [batch]);
        if (stored.rows.length) return stored.rows.flatMap((s) => unpackSegment(toSegment(s)));
      }
      const { rows, head } = link(await this.readHead(c));
      await this.insertSegments(c, packSegments(rows, batch ?? null));
      await c.query(
        'INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, $1, $2, $3) ' +
          'ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, mac = EXCLUDED.mac',
        [head.seq, head.hash, head.mac],
      );
      return rows;
    });
  }

  head(): Promise<AuditHead | null> {
    return this.readHead(this.pool);
  }

  async checkpoint(): Promise<AuditCheckpoint | null> {
    const r = await this.pool.query<{ seq: string; hash: string; mac: string | null; created_at: string }>(
      'SELECT seq, hash, mac, created_at FROM audit_checkpoints ORDER BY seq DESC LIMIT 1',
    );
    const row = r.rows[0];
    return row ? { seq: Number(row.seq), hash: row.hash, mac: row.mac, createdAt: row.created_at } : null;
  }

  async range(opts: { afterSeq?: number; sinceTs?: number; limit: number }): Promise<AuditRow[]> {
    const collect = new RangeCollector(opts);
    // The segment holding record N+1 starts at or before it; later pages continue after the last segment read.
    const start = await this.pool.query<{ seq: string | null }>('SELECT MAX(first_seq) AS seq FROM audit_segments WHERE first_seq <= $1', [
      (opts.afterSeq ?? 0) + 1,
    ]);
    let from = Number(start.rows[0]?.seq ?? 0);
    while (!collect.full) {
      const page = await this.pool.query<PgSegmentRow>(
        `SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE first_seq >= $1 AND ($2::bigint IS NULL OR ts_max >= $2) ORDER BY first_seq LIMIT $3`,
        [from, opts.sinceTs ?? null, SEGMENT_PAGE],
      );
      for (const row of page.rows) if (!collect.add(toSegment(row))) break;
      if (page.rows.length < SEGMENT_PAGE) break;
      from = Number(page.rows[page.rows.length - 1]!.first_seq) + 1;
    }
    return collect.rows;
  }

  async count(): Promise<number> {
    const r = await this.pool.query<{ n: string }>('SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) AS n FROM audit_segments');
    return Number(r.rows[0]!.n);
  }

  async firstSeqAtOrAfter(ts: number): Promise<number | null> {
    // In seq order, stopping at the first match (see migration 2).
    const r = await this.pool.query<PgSegmentRow>(`SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE ts_max >= $1 ORDER BY first_seq LIMIT 1`, [ts]);
    const row = r.rows[0];
    return row ? firstSeqAtOrAfterIn(toSegment(row), ts) : null;
  }

  async firstSeq(): Promise<number | null> {
    const r = await this.pool.query<{ seq: string | null }>('SELECT MIN(first_seq) AS seq FROM audit_segments');
    const v = r.rows[0]?.seq;
    return v === null || v === undefined ? null : Number(v);
  }

  async prune(uptoSeq: number, seal: (seq: number, hash: string) => string | null): Promise<number> {
    return tx(this.pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_LOCK]);
      const found = await c.query<PgSegmentRow>(
        `SELECT ${SEGMENT_COLUMNS} FROM audit_segments WHERE first_seq <= $1 ORDER BY first_seq DESC LIMIT 1`,
        [uptoSeq],
      );
      const row = found.rows[0] ? toSegment(found.rows[0]) : null;
      const cut = row && row.lastSeq >= uptoSeq ? cutSegment(row, uptoSeq) : null;
      if (!row || !cut) return 0;
      await c.query('INSERT INTO audit_checkpoints (seq, hash, mac, created_at) VALUES ($1, $2, $3, $4)', [
        uptoSeq,
        cut.hash,
        seal(uptoSeq, cut.hash),
        new Date().toISOString(),
      ]);
      const del = await c.query<{ n: string | null }>(
        'WITH gone AS (DELETE FROM audit_segments WHERE first_seq <= $1 AND last_seq <= $1 RETURNING last_seq - first_seq + 1 AS n) ' +
          'SELECT SUM(n) AS n FROM gone',
        [uptoSeq],
      );
      let pruned = Number(del.rows[0]?.n ?? 0);
      if (row.lastSeq > uptoSeq) {
        // The segment that straddles the cut keeps its records after it, as a segment of their own.
        await c.query('DELETE FROM audit_segments WHERE first_seq = $1', [row.firstSeq]);
        await this.insertSegments(c, cut.rest);
        pruned += uptoSeq - row.firstSeq + 1;
      }
      return pruned;
    });
  }
}
