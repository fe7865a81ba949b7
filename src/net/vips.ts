/**
 * Stable virtual IPs for declared endpoint hosts. The in-tunnel DNS answers
 * a declared name with its VIP; a connection to the VIP then tells the
 * gateway exactly which name the agent dialed (the transparent listener's
 * `localAddress`). Each name gets one v4 and one v6 address at the same
 * offset of the two ranges, allocated once and persisted, so answers survive
 * gateway restarts and cached lookups in agents stay valid.
 *
 * Gateways sharing a store share the table: an offset is claimed atomically
 * (`putIfAbsent` on `dns.vip_offsets`) before a name gets it, so two
 * gateways never give one address to two names, and an address this gateway
 * has not seen yet is looked up in the store (`resolve`).
 */
import type { KvStore } from '../store/types.js';
import { addressAt, cidrSize, offsetOf, type Cidr } from './ip.js';

export const VIP_NAMESPACE = 'dns.vips';
/** offset → the name holding it, shared by every gateway on the store. */
export const VIP_OFFSET_NAMESPACE = 'dns.vip_offsets';

interface OffsetClaim {
  name: string;
}

export interface VipRecord {
  name: string;
  v4: string;
  v6: string | null;
  offset: number;
  /** The endpoint that claimed the name when it was allocated (informational; dispatch asks the directory again). */
  endpointId: string;
  /** The device whose lookup allocated a name under a wildcard (counted against its cap); absent for declared names. */
  allocatedBy?: string;
  createdAt: string;
}

/** No virtual IP for a new name: the table is full, or the asking device used up its wildcard names. Answered REFUSED. */
export class VipExhaustedError extends Error {
  override name = 'VipExhaustedError';
}

export const DEFAULT_MAX_NAMES = 16_384;
export const DEFAULT_MAX_WILDCARD_NAMES_PER_DEVICE = 1024;
const MISS_MEMORY_MS = 1000;
const MAX_REMEMBERED_MISSES = 4096;

/** Who is asking for a name, and whether only a wildcard declares it (then it counts against the device's cap). */
export interface VipRequest {
  device?: string;
  wildcard?: boolean;
}

export interface VipTableOptions {
  kv: KvStore;
  range4: Cidr;
  range6: Cidr | null;
  /** Cap on names (wildcard endpoints let an agent mint names at will). */
  maxNames?: number;
  /** Cap on names one device may allocate under wildcards (so one device cannot use up the table for all). */
  maxWildcardNamesPerDevice?: number;
}

export class VipTable {
  private readonly byName = new Map<string, VipRecord>();
  private readonly byOffset = new Map<number, VipRecord>();
  private readonly pending = new Map<string, Promise<VipRecord>>();
  /** Wildcard names allocated per device (from `allocatedBy`). */
  private readonly perDevice = new Map<string, number>();
  /** Offsets claimed by another gateway whose record we could not read yet (an allocation in flight there). */
  private readonly foreign = new Set<number>();
  /** Offsets just looked up in the store and found unallocated → until when to believe that. */
  private readonly recentMisses = new Map<number, number>();
  private nextOffset = 1;
  /** Highest usable offset of both ranges. */
  private readonly lastOffset: number;
  private readonly capacity: number;
  private readonly perDeviceCap: number;

  private constructor(private readonly opts: VipTableOptions) {
    // Offset 0 is the network address; the last v4 offset is the broadcast address.
    const size4 = cidrSize(opts.range4) - 1n;
    const size6 = opts.range6 ? cidrSize(opts.range6) : size4;
    const usable = Number(size4 < size6 ? size4 : size6) - 1;
    this.lastOffset = usable;
    this.capacity = Math.min(usable, opts.maxNames ?? DEFAULT_MAX_NAMES);
    this.perDeviceCap = opts.maxWildcardNamesPerDevice ?? DEFAULT_MAX_WILDCARD_NAMES_PER_DEVICE;
  }

  static async open(opts: VipTableOptions): Promise<VipTable> {
    const t = new VipTable(opts);
    const claims = new Map((await opts.kv.list<OffsetClaim>(VIP_OFFSET_NAMESPACE)).map((e) => [Number(e.key), e.value.name]));
    for (const { value } of await opts.kv.list<VipRecord>(VIP_NAMESPACE)) {
      // A record from before the ranges were changed no longer fits: the name gets a fresh VIP.
      if (!t.fits(value)) continue;
      const owner = claims.get(value.offset);
      // Stores written before offset claims existed: claim it now. A record whose offset another
      // name holds is a collision from those days; that name gets a fresh VIP when next asked.
      if (owner === value.name || (owner === undefined && (await t.holds(value)))) t.remember(value);
    }
    return t;
  }

  get size(): number {
    return this.byName.size;
  }

  forName(name: string): VipRecord | undefined {
    return this.byName.get(name);
  }

  /** The record whose v4 or v6 VIP is `ip`. */
  byAddress(ip: string): VipRecord | undefined {
    const off4 = offsetOf(this.opts.range4, ip);
    if (off4 !== null) return this.byOffset.get(Number(off4));
    if (this.opts.range6) {
      const off6 = offsetOf(this.opts.range6, ip);
      if (off6 !== null) return this.byOffset.get(Number(off6));
    }
    return undefined;
  }

  inRange(ip: string): boolean {
    return offsetOf(this.opts.range4, ip) !== null || (this.opts.range6 !== null && offsetOf(this.opts.range6, ip) !== null);
  }

  /** Wildcard names this device allocated (on this gateway's view of the table). */
  wildcardNamesOf(device: string): number {
    return this.perDevice.get(device) ?? 0;
  }

  /** The name's VIPs, allocating and persisting them on first use. */
  ensure(name: string, endpointId: string, request: VipRequest = {}): Promise<VipRecord> {
    const have = this.byName.get(name);
    if (have) return Promise.resolve(have);
    // Two concurrent lookups of a new name must get the same address.
    let p = this.pending.get(name);
    if (!p) {
      p = this.allocate(name, endpointId, request).finally(() => this.pending.delete(name));
      this.pending.set(name, p);
    }
    return p;
  }

  private async allocate(name: string, endpointId: string, request: VipRequest): Promise<VipRecord> {
    // Allocated through another gateway already? Then it costs nobody anything.
    const stored = await this.opts.kv.get<VipRecord>(VIP_NAMESPACE, name);
    if (stored && this.fits(stored) && (await this.holds(stored))) {
      this.remember(stored);
      return stored;
    }
    if (this.byName.size >= this.capacity) {
      throw new VipExhaustedError(`no virtual IP left for ${name}: ${this.byName.size} names already allocated (the gateway's cap)`);
    }
    const chargeTo = request.wildcard && request.device ? request.device : undefined;
    if (chargeTo !== undefined && this.wildcardNamesOf(chargeTo) >= this.perDeviceCap) {
      throw new VipExhaustedError(
        `no virtual IP for ${name}: device ${chargeTo} already has ${this.wildcardNamesOf(chargeTo)} names under wildcard endpoints (the per-device cap)`,
      );
    }
    let offset = this.nextOffset;
    for (;;) {
      while (this.byOffset.has(offset) || this.foreign.has(offset)) offset++;
      if (offset > this.lastOffset) throw new VipExhaustedError(`no virtual IP left for ${name}: the virtual-IP ranges are full`);
      const record: VipRecord = {
        name,
        v4: addressAt(this.opts.range4, offset),
        v6: this.opts.range6 ? addressAt(this.opts.range6, offset) : null,
        offset,
        endpointId,
        ...(chargeTo !== undefined ? { allocatedBy: chargeTo } : {}),
        createdAt: new Date().toISOString(),
      };
      // Reserve before the writes so a concurrent allocation of another name skips this offset.
      this.remember(record);
      try {
        if (!(await this.opts.kv.putIfAbsent(VIP_OFFSET_NAMESPACE, String(offset), { name } satisfies OffsetClaim))) {
          // Another gateway holds this offset: learn whose it is and try the next one.
          this.forget(record);
          const theirs = await this.loadOffset(offset);
          if (!theirs) this.foreign.add(offset);
          continue;
        }
        if (!(await this.opts.kv.putIfAbsent(VIP_NAMESPACE, name, record))) {
          // The same name was allocated elsewhere meanwhile (or a stale record from other ranges sits there).
          const again = await this.opts.kv.get<VipRecord>(VIP_NAMESPACE, name);
          if (again && again.offset !== offset && this.fits(again) && (await this.holds(again))) {
            await this.opts.kv.delete(VIP_OFFSET_NAMESPACE, String(offset));
            this.forget(record);
            this.remember(again);
            return again;
          }
          await this.opts.kv.put(VIP_NAMESPACE, name, record);
        }
        return record;
      } catch (err) {
        this.forget(record);
        throw err;
      }
    }
  }

  /**
   * The record of a VIP address, also when another gateway on the store
   * allocated it after this one loaded the table. Undefined: not allocated.
   */
  async resolve(ip: string): Promise<VipRecord | undefined> {
    const known = this.byAddress(ip);
    if (known) return known;
    const found = offsetOf(this.opts.range4, ip) ?? (this.opts.range6 ? offsetOf(this.opts.range6, ip) : null);
    if (found === null) return undefined;
    const offset = Number(found);
    // An agent dialing unallocated VIPs in a loop asks the store once a second per address, not per connection.
    const now = Date.now();
    if ((this.recentMisses.get(offset) ?? 0) > now) return undefined;
    const record = await this.loadOffset(offset);
    if (!record) {
      if (this.recentMisses.size >= MAX_REMEMBERED_MISSES) this.recentMisses.clear();
      this.recentMisses.set(offset, now + MISS_MEMORY_MS);
    }
    return record;
  }

  /** Read the name holding an offset from the store and remember its record. */
  private async loadOffset(offset: number): Promise<VipRecord | undefined> {
    const claim = await this.opts.kv.get<OffsetClaim>(VIP_OFFSET_NAMESPACE, String(offset));
    if (!claim) return undefined;
    const record = await this.opts.kv.get<VipRecord>(VIP_NAMESPACE, claim.name);
    if (!record || record.offset !== offset || !this.fits(record)) return undefined;
    const mine = this.byName.get(record.name);
    if (mine && mine.offset !== offset) return undefined;
    this.remember(record);
    return record;
  }

  /** True when the record's offset is claimed for its name (claiming it when nobody has). */
  private async holds(r: VipRecord): Promise<boolean> {
    if (await this.opts.kv.putIfAbsent(VIP_OFFSET_NAMESPACE, String(r.offset), { name: r.name } satisfies OffsetClaim)) return true;
    return (await this.opts.kv.get<OffsetClaim>(VIP_OFFSET_NAMESPACE, String(r.offset)))?.name === r.name;
  }

  private fits(r: VipRecord): boolean {
    if (!Number.isInteger(r.offset) || offsetOf(this.opts.range4, r.v4) !== BigInt(r.offset)) return false;
    if (this.opts.range6 && (r.v6 === null || offsetOf(this.opts.range6, r.v6) !== BigInt(r.offset))) return false;
    return true;
  }

  private remember(r: VipRecord): void {
    const previous = this.byName.get(r.name);
    if (previous) this.forget(previous);
    this.byName.set(r.name, r);
    this.byOffset.set(r.offset, r);
    if (r.offset >= this.nextOffset) this.nextOffset = r.offset + 1;
    if (r.allocatedBy !== undefined) this.perDevice.set(r.allocatedBy, this.wildcardNamesOf(r.allocatedBy) + 1);
  }

  private forget(r: VipRecord): void {
    if (this.byName.get(r.name) === r) {
      this.byName.delete(r.name);
      if (r.allocatedBy !== undefined) this.perDevice.set(r.allocatedBy, this.wildcardNamesOf(r.allocatedBy) - 1);
    }
    if (this.byOffset.get(r.offset) === r) this.byOffset.delete(r.offset);
  }

  all(): VipRecord[] {
    return [...this.byName.values()];
  }
}
