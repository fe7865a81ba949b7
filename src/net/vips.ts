/**
 * Stable virtual IPs for declared endpoint hosts. The in-tunnel DNS answers
 * a declared name with its VIP; a connection to the VIP then tells the
 * gateway exactly which name the agent dialed (the transparent listener's
 * `localAddress`). Each name gets one v4 and one v6 address at the same
 * offset of the two ranges, allocated once and persisted, so answers survive
 * gateway restarts and cached lookups in agents stay valid.
 */
import type { KvStore } from '../store/types.js';
import { addressAt, cidrSize, offsetOf, type Cidr } from './ip.js';

export const VIP_NAMESPACE = 'dns.vips';

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
  private nextOffset = 1;
  private readonly capacity: number;
  private readonly perDeviceCap: number;

  private constructor(private readonly opts: VipTableOptions) {
    // Offset 0 is the network address; the last v4 offset is the broadcast address.
    const size4 = cidrSize(opts.range4) - 1n;
    const size6 = opts.range6 ? cidrSize(opts.range6) : size4;
    const usable = Number(size4 < size6 ? size4 : size6) - 1;
    this.capacity = Math.min(usable, opts.maxNames ?? DEFAULT_MAX_NAMES);
    this.perDeviceCap = opts.maxWildcardNamesPerDevice ?? DEFAULT_MAX_WILDCARD_NAMES_PER_DEVICE;
  }

  static async open(opts: VipTableOptions): Promise<VipTable> {
    const t = new VipTable(opts);
    for (const { value } of await opts.kv.list<VipRecord>(VIP_NAMESPACE)) {
      // A record from before the ranges were changed no longer fits: the name gets a fresh VIP.
      if (t.fits(value)) t.remember(value);
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
    while (this.byOffset.has(offset)) offset++;
    const record: VipRecord = {
      name,
      v4: addressAt(this.opts.range4, offset),
      v6: this.opts.range6 ? addressAt(this.opts.range6, offset) : null,
      offset,
      endpointId,
      ...(chargeTo !== undefined ? { allocatedBy: chargeTo } : {}),
      createdAt: new Date().toISOString(),
    };
    // Reserve before the write so a concurrent allocation of another name skips this offset.
    this.remember(record);
    try {
      const inserted = await this.opts.kv.putIfAbsent(VIP_NAMESPACE, name, record);
      if (!inserted) {
        // Another writer (a second gateway on a shared store) got there first: use its record.
        const stored = await this.opts.kv.get<VipRecord>(VIP_NAMESPACE, name);
        if (!stored || !this.fits(stored) || (this.byOffset.has(stored.offset) && this.byOffset.get(stored.offset)?.name !== name)) {
          // A stale record from other ranges: ours replaces it.
          await this.opts.kv.put(VIP_NAMESPACE, name, record);
          return record;
        }
        this.forget(record);
        this.remember(stored);
        return stored;
      }
    } catch (err) {
      this.forget(record);
      throw err;
    }
    return record;
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
