/**
 * Enrolled devices: who they are (id, name, profile), their WireGuard public
 * key and their tunnel addresses. Addresses come from the `wireguard {}`
 * subnet (the gateway takes the first host address) and from a v6 prefix at
 * the same offset. Records live in the state store so a restarted gateway
 * gets every peer back; lookups by tunnel address are in memory because
 * every accepted connection needs one.
 */
import { randomBytes } from 'node:crypto';
import type { KvStore } from '../store/types.js';
import { addressAt, canonicalIp, cidrSize, type Cidr } from './ip.js';

export const PEER_NAMESPACE = 'wireguard.peers';

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
}

export class PeerRegistry {
  private readonly byIdMap = new Map<string, PeerRecord>();
  private readonly byAddr = new Map<string, PeerRecord>();
  private queue: Promise<unknown> = Promise.resolve();
  private readonly lastOffset: number;

  private constructor(private readonly opts: PeerRegistryOptions) {
    // Offset 0 is the network, 1 the gateway; a v4 subnet's last address is its broadcast.
    const size4 = Number(cidrSize(opts.subnet4) > 1n << 24n ? 1n << 24n : cidrSize(opts.subnet4));
    this.lastOffset = size4 - 2;
  }

  static async open(opts: PeerRegistryOptions): Promise<PeerRegistry> {
    const r = new PeerRegistry(opts);
    for (const { value } of await opts.kv.list<PeerRecord>(PEER_NAMESPACE)) {
      if (value.address4 !== addressAt(opts.subnet4, value.offset)) {
        throw new PeerError(
          `enrolled device ${value.id} has tunnel address ${value.address4}, outside wireguard.subnet_cidr ${opts.subnet4.text}; ` +
            `restore the previous subnet_cidr or revoke the device`,
          500,
        );
      }
      r.index(value);
    }
    return r;
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

  /** Enrol a device: allocate its addresses and persist it. */
  add(input: { name: string; profile: string; publicKey: string; tokenHash: string | null; enrolledBy: PeerRecord['enrolledBy'] }): Promise<PeerRecord> {
    return this.serial(async () => {
      if (this.byPublicKey(input.publicKey)) throw new PeerError('this public key is already enrolled', 409);
      const used = new Set([...this.byIdMap.values()].map((p) => p.offset));
      let offset = 2;
      while (used.has(offset)) offset++;
      if (offset > this.lastOffset) {
        throw new PeerError(`the tunnel subnet ${this.opts.subnet4.text} is full (${used.size} devices)`, 507);
      }
      const record: PeerRecord = {
        id: `dev_${randomBytes(5).toString('hex')}`,
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
      return cur;
    });
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
