/**
 * Enrolled devices: who they are (id, name, profile), their WireGuard public
 * key and their tunnel addresses. Addresses come from the `wireguard {}`
 * subnet (the gateway takes the first host address) and from a v6 prefix at
 * the same offset. Records live in the state store so a restarted gateway
 * gets every peer back; lookups by tunnel address are in memory because
 * every accepted connection needs one.
 *
 * Several gateways may share one store. Two of them enrolling at the same
 * moment must never hand out one tunnel address (or one public key) twice —
 * the address is the device's identity on the tunnel — so both are claimed
 * atomically in the store (`putIfAbsent`) before a record is written. What
 * another gateway enrolled or revoked reaches this one through `sync()`,
 * which the transport runs every few seconds and whenever a lookup misses.
 */
import { randomBytes } from 'node:crypto';
import type { KvStore } from '../store/types.js';
import { addressAt, canonicalIp, cidrSize, type Cidr } from './ip.js';

export const PEER_NAMESPACE = 'wireguard.peers';
/** `addr:<offset>` and `key:<public key>` → the device holding them, shared by every gateway on the store. */
export const CLAIM_NAMESPACE = 'wireguard.claims';
/** A claim without a device record this old was left by an enrolment that never finished (a gateway died mid-way). */
const ABANDONED_CLAIM_MS = 10 * 60_000;
/** Lookups that miss refresh the view from the store at most this often. */
const MISS_SYNC_GAP_MS = 1000;

interface Claim {
  id: string;
  at: string;
}

/** What `sync()` found changed in the store since this gateway last looked. */
export interface PeerChanges {
  added: PeerRecord[];
  removed: PeerRecord[];
  updated: PeerRecord[];
}

export interface PeerRecord {
  /** `dev_` + 10 hex characters. */
  id: string;
  name: string;
  profile: string;
  publicKey: string;
  address4: string;
  address6: string | null;
  offset: number;
  /** sha256 (hex) of the device token the client uses for `status` and `leave`. */
  tokenHash: string | null;
  enrolledBy: 'token' | 'device-code';
  createdAt: string;
}

export class PeerError extends Error {
  override name = 'PeerError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface PeerRegistryOptions {
  kv: KvStore;
  subnet4: Cidr;
  subnet6: Cidr | null;
  log?: (line: string) => void;
}

export class PeerRegistry {
  private readonly byIdMap = new Map<string, PeerRecord>();
  private readonly byAddr = new Map<string, PeerRecord>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly lastOffset: number;
  private readonly listeners = new Set<(changes: PeerChanges) => Promise<void> | void>();
  /** Ids of stored records that do not fit this gateway's subnet (warned about once). */
  private readonly misfits = new Set<string>();
  private syncing: Promise<PeerChanges> | null = null;
  private syncedAt = 0;

  private constructor(private readonly opts: PeerRegistryOptions) {
    // Offset 0 is the network, 1 the gateway; a v4 subnet's last address is its broadcast.
    const size4 = Number(cidrSize(opts.subnet4) > 1n << 24n ? 1n << 24n : cidrSize(opts.subnet4));
    this.lastOffset = size4 - 2;
  }

  static async open(opts: PeerRegistryOptions): Promise<PeerRegistry> {
    const r = new PeerRegistry(opts);
    const stored = await opts.kv.list<PeerRecord>(PEER_NAMESPACE);
    for (const { value } of stored) {
      if (!r.fits(value)) {
        throw new PeerError(
          `enrolled device ${value.id} has tunnel address ${value.address4}, outside wireguard.subnet_cidr ${opts.subnet4.text}; ` +
            `restore the previous subnet_cidr or revoke the device`,
          500,
        );
      }
      r.index(value);
      // Stores written before claims existed: claim what the devices already hold.
      await opts.kv.putIfAbsent(CLAIM_NAMESPACE, addressClaim(value.offset), r.claimValue(value.id));
      await opts.kv.putIfAbsent(CLAIM_NAMESPACE, keyClaim(value.publicKey), r.claimValue(value.id));
    }
    await r.dropAbandonedClaims(new Set(stored.map((e) => e.key)));
    return r;
  }

  /** Called with every change `sync()` finds (devices enrolled, revoked or updated through another gateway). */
  onRemoteChange(listener: (changes: PeerChanges) => Promise<void> | void): void {
    this.listeners.add(listener);
  }

  /**
   * Bring the in-memory view up to date with the store and tell the
   * listeners what changed. Serialised with local enrolments and removals.
   */
  sync(): Promise<PeerChanges> {
    const run = this.serial(async () => {
      const stored = new Map((await this.opts.kv.list<PeerRecord>(PEER_NAMESPACE)).map((e) => [e.key, e.value]));
      const changes: PeerChanges = { added: [], removed: [], updated: [] };
      for (const cur of [...this.byIdMap.values()]) {
        if (!stored.has(cur.id)) {
          this.unindex(cur);
          changes.removed.push(cur);
        }
      }
      for (const [id, next] of stored) {
        if (!this.fits(next)) {
          if (!this.misfits.has(id)) this.opts.log?.(`net: device ${id} in the store has ${next.address4}, outside ${this.opts.subnet4.text}: ignored here (gateways on one store need the same subnet_cidr)`);
          this.misfits.add(id);
          continue;
        }
        const cur = this.byIdMap.get(id);
        if (cur && JSON.stringify(cur) === JSON.stringify(next)) continue;
        if (cur) this.unindex(cur);
        this.index(next);
        (cur ? changes.updated : changes.added).push(next);
      }
      this.syncedAt = Date.now();
      if (changes.added.length + changes.removed.length + changes.updated.length > 0) {
        for (const l of this.listeners) await l(changes);
      }
      return changes;
    });
    this.syncing = run;
    const done = () => {
      if (this.syncing === run) this.syncing = null;
    };
    run.then(done, done);
    return run;
  }

  /** A device by id, also one enrolled through another gateway a moment ago (one read when it is not known here). */
  async findById(id: string): Promise<PeerRecord | undefined> {
    const hit = this.byId(id);
    if (hit) return hit;
    if ((await this.opts.kv.get(PEER_NAMESPACE, id)) === undefined) return undefined;
    await this.sync();
    return this.byId(id);
  }

  /**
   * A lookup that, when it misses, brings the view up to date first (the
   * device may be another gateway's news) — at most once a second however
   * many lookups miss, so unknown credentials cannot hammer the store.
   */
  async find(lookup: (r: PeerRegistry) => PeerRecord | undefined): Promise<PeerRecord | undefined> {
    const hit = lookup(this);
    if (hit) return hit;
    if (this.syncing) await this.syncing;
    else if (Date.now() - this.syncedAt >= MISS_SYNC_GAP_MS) await this.sync();
    return lookup(this);
  }

  gatewayAddress4(): string {
    return addressAt(this.opts.subnet4, 1);
  }

  gatewayAddress6(): string | null {
    return this.opts.subnet6 ? addressAt(this.opts.subnet6, 1) : null;
  }

  all(): PeerRecord[] {
    return [...this.byIdMap.values()].sort((a, b) => a.offset - b.offset);
  }

  byId(id: string): PeerRecord | undefined {
    return this.byIdMap.get(id);
  }

  /** The peer a tunnel source address belongs to (WireGuard authenticated it by key). */
  byAddress(ip: string): PeerRecord | undefined {
    try {
      return this.byAddr.get(canonicalIp(ip));
    } catch {
      return undefined;
    }
  }

  byPublicKey(key: string): PeerRecord | undefined {
    for (const p of this.byIdMap.values()) if (p.publicKey === key) return p;
    return undefined;
  }

  byTokenHash(hash: string): PeerRecord | undefined {
    for (const p of this.byIdMap.values()) if (p.tokenHash !== null && p.tokenHash === hash) return p;
    return undefined;
  }

  /** Enrol a device: claim its public key and a free address in the store, then persist it. */
  add(input: { name: string; profile: string; publicKey: string; tokenHash: string | null; enrolledBy: PeerRecord['enrolledBy'] }): Promise<PeerRecord> {
    return this.serial(async () => {
      if (this.byPublicKey(input.publicKey)) throw new PeerError('this public key is already enrolled', 409);
      const id = `dev_${randomBytes(5).toString('hex')}`;
      const claimed: string[] = [];
      const claim = async (key: string): Promise<boolean> => {
        const won = await this.opts.kv.putIfAbsent(CLAIM_NAMESPACE, key, this.claimValue(id));
        if (won) claimed.push(key);
        return won;
      };
      try {
        if (!(await claim(keyClaim(input.publicKey)))) throw new PeerError('this public key is already enrolled', 409);
        const used = new Set([...this.byIdMap.values()].map((p) => p.offset));
        let offset = 2;
        // Skip what we know is taken; a lost claim means another gateway took it meanwhile.
        while (offset <= this.lastOffset && (used.has(offset) || !(await claim(addressClaim(offset))))) offset++;
        if (offset > this.lastOffset) {
          throw new PeerError(`the tunnel subnet ${this.opts.subnet4.text} is full (${this.lastOffset - 1} addresses taken)`, 507);
        }
        const record: PeerRecord = {
          id,
          name: input.name,
          profile: input.profile,
          publicKey: input.publicKey,
          address4: addressAt(this.opts.subnet4, offset),
          address6: this.opts.subnet6 ? addressAt(this.opts.subnet6, offset) : null,
          offset,
          tokenHash: input.tokenHash,
          enrolledBy: input.enrolledBy,
          createdAt: new Date().toISOString(),
        };
        await this.opts.kv.put(PEER_NAMESPACE, record.id, record);
        this.index(record);
        return record;
      } catch (err) {
        for (const key of claimed) await this.opts.kv.delete(CLAIM_NAMESPACE, key).catch(() => false);
        throw err;
      }
    });
  }

  update(id: string, patch: Partial<Pick<PeerRecord, 'tokenHash' | 'profile' | 'name'>>): Promise<PeerRecord> {
    return this.serial(async () => {
      const cur = this.byIdMap.get(id);
      if (!cur) throw new PeerError(`no device ${id}`, 404);
      const next = { ...cur, ...patch };
      await this.opts.kv.put(PEER_NAMESPACE, id, next);
      this.unindex(cur);
      this.index(next);
      return next;
    });
  }

  remove(id: string): Promise<PeerRecord | undefined> {
    return this.serial(async () => {
      const cur = this.byIdMap.get(id);
      if (!cur) return undefined;
      // Forget it in memory first: from now on its address maps to nobody.
      this.unindex(cur);
      await this.opts.kv.delete(PEER_NAMESPACE, id);
      // Free the address and key only after the record is gone, so no gateway hands them out while it exists.
      for (const key of [addressClaim(cur.offset), keyClaim(cur.publicKey)]) {
        const held = await this.opts.kv.get<Claim>(CLAIM_NAMESPACE, key);
        if (held?.id === id) await this.opts.kv.delete(CLAIM_NAMESPACE, key);
      }
      return cur;
    });
  }

  private fits(p: PeerRecord): boolean {
    return Number.isInteger(p.offset) && p.address4 === addressAt(this.opts.subnet4, p.offset);
  }

  private claimValue(id: string): Claim {
    return { id, at: new Date().toISOString() };
  }

  /** Claims of enrolments that never wrote their record (a gateway died between the two) free their address again. */
  private async dropAbandonedClaims(liveIds: Set<string>): Promise<void> {
    for (const { key, value } of await this.opts.kv.list<Claim>(CLAIM_NAMESPACE)) {
      if (liveIds.has(value.id) || Date.now() - Date.parse(value.at) < ABANDONED_CLAIM_MS) continue;
      if (await this.opts.kv.get(PEER_NAMESPACE, value.id)) continue; // enrolled by another gateway since we listed
      await this.opts.kv.delete(CLAIM_NAMESPACE, key);
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private index(p: PeerRecord): void {
    this.byIdMap.set(p.id, p);
    this.byAddr.set(canonicalIp(p.address4), p);
    if (p.address6) this.byAddr.set(canonicalIp(p.address6), p);
  }

  private unindex(p: PeerRecord): void {
    this.byIdMap.delete(p.id);
    this.byAddr.delete(canonicalIp(p.address4));
    if (p.address6) this.byAddr.delete(canonicalIp(p.address6));
  }
}

function addressClaim(offset: number): string {
  return `addr:${offset}`;
}

function keyClaim(publicKey: string): string {
  return `key:${publicKey}`;
}
