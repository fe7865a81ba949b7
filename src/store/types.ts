/**
 * The gateway's state store: one interface, two backends (SQLite in
 * `gateway.state_dir` by default, PostgreSQL when several gateways share a
 * fleet). Every method returns a Promise so the PostgreSQL backend can
 * implement the same interface; the SQLite backend does its work
 * synchronously and returns settled promises.
 *
 * Modules that keep state (WireGuard peers, DNS virtual IPs, enrolment
 * tokens, pending approvals) use the generic document store `kv`; the vault
 * and the audit log have their own repositories because they need
 * transactions the document store does not offer.
 */

/** One JSON document in the generic store. */
export interface KvEntry<T = unknown> {
  key: string;
  value: T;
  /** ISO-8601 time of the last write. */
  updatedAt: string;
}

/**
 * A namespaced JSON document store. Namespaces are free-form strings owned by
 * one module each (`wireguard.peers`, `dns.vips`, `enrol.tokens`,
 * `approvals.pending`). Values must be JSON-serialisable; what comes back is
 * a fresh parse, never the object that was put.
 */
export interface KvStore {
  get<T = unknown>(ns: string, key: string): Promise<T | undefined>;
  /** Insert or replace. */
  put(ns: string, key: string, value: unknown): Promise<void>;
  /** Insert only when the key is absent; true when this call inserted it (atomic across gateways). */
  putIfAbsent(ns: string, key: string, value: unknown): Promise<boolean>;
  /** True when a document was deleted. */
  delete(ns: string, key: string): Promise<boolean>;
  /** Delete and return in one atomic step (one-time tokens): only one caller ever gets the value. */
  take<T = unknown>(ns: string, key: string): Promise<T | undefined>;
  /** Every document of a namespace, ordered by key. */
  list<T = unknown>(ns: string): Promise<KvEntry<T>[]>;
}

/** One encrypted vault value as stored; the store never sees plaintext. */
export interface SecretRow {
  /** Credential id (`bearer_token.github`) or an internal owner (`gateway.ca`). */
  owner: string;
  slot: string;
  /** Identifies the vault key that sealed the value (a wrong key is then a clear error). */
  keyId: string;
  nonce: Buffer;
  /** AES-256-GCM ciphertext followed by the 16-byte tag. */
  sealed: Buffer;
  updatedAt: string;
}

export interface SecretRepo {
  list(): Promise<SecretRow[]>;
  put(row: SecretRow): Promise<void>;
  /** Insert only when (owner, slot) is absent; true when this call inserted it. */
  insert(row: SecretRow): Promise<boolean>;
  /** Delete one slot, or every slot of the owner when `slot` is omitted; returns rows deleted. */
  delete(owner: string, slot?: string): Promise<number>;
  /** Grows on every put/delete (any gateway): lets readers notice a change cheaply. */
  version(): Promise<number>;
}

/** The newest record of the chain, kept beside the records so a truncated tail is detectable. */
export interface AuditHead {
  seq: number;
  hash: string;
  /** HMAC over (seq, hash) with a key derived from the vault key, when the log has one. */
  mac: string | null;
}

/** What the chain looked like where retention cut it: verification starts from here. */
export interface AuditCheckpoint {
  /** Seq of the last pruned record. */
  seq: number;
  /** Hash of the last pruned record. */
  hash: string;
  mac: string | null;
  /** ISO-8601. */
  createdAt: string;
}

export interface AuditRow {
  seq: number;
  /** Milliseconds since the epoch of the record's `time` (for retention and `--since`). */
  ts: number;
  /** Canonical JSON of the record, including its `seq`. Stored compressed in segments (audit-segments.ts). */
  record: string;
  prevHash: string;
  hash: string;
  /** Set (and `record` empty) when the stored data of this record cannot be read back: why. */
  damaged?: string;
}

/**
 * Links a batch to the chain. Called by the store inside its write
 * transaction (with the head locked), so concurrent writers — also other
 * gateways — never fork the chain. Must be a pure function of its inputs.
 */
export type AuditLinker = (head: AuditHead | null) => { rows: AuditRow[]; head: AuditHead };

export interface AuditRepo {
  /**
   * Append a linked batch atomically; returns the rows written. With a
   * `batch` id, a batch already stored under that id (sent again because
   * the answer to the first write was lost) is not linked again: its stored
   * rows are returned instead.
   */
  append(link: AuditLinker, batch?: string): Promise<AuditRow[]>;
  head(): Promise<AuditHead | null>;
  checkpoint(): Promise<AuditCheckpoint | null>;
  /** Rows with seq > afterSeq (and ts >= sinceTs when given), ascending, at most `limit`. */
  range(opts: { afterSeq?: number; sinceTs?: number; limit: number }): Promise<AuditRow[]>;
  count(): Promise<number>;
  /** Seq of the first record with ts >= `ts`, or null when there is none. */
  firstSeqAtOrAfter(ts: number): Promise<number | null>;
  /** Smallest stored seq, or null when empty. */
  firstSeq(): Promise<number | null>;
  /**
   * Delete every record with seq <= `uptoSeq` and record a checkpoint of the
   * last one deleted, atomically. `seal` computes the checkpoint's MAC.
   * Returns the number of rows deleted.
   */
  prune(uptoSeq: number, seal: (seq: number, hash: string) => string | null): Promise<number>;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** Human description for logs (`sqlite:/var/lib/clawpatrol/state.db`, `postgres://host/db`), never a password. */
  readonly location: string;
  readonly kv: KvStore;
  readonly secrets: SecretRepo;
  readonly audit: AuditRepo;
  /** Schema version after migrations. */
  readonly schemaVersion: number;
  /**
   * How another thread of this process opens its own connection to this same
   * store (the audit log's writer thread). For PostgreSQL it holds the URL
   * with its password: hand it to the thread, never log it. Stores that cannot
   * be reopened (test doubles, wrappers) leave it out.
   */
  reopenOptions?(): OpenStoreOptions;
  close(): Promise<void>;
}

export type OpenStoreOptions = { stateDir: string } | { postgres: string };

export class StoreError extends Error {
  override name = 'StoreError';
}
