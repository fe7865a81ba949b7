/**
 * A least-recently-used map bounded by the total bytes of its entries (not
 * their count): agents repeat the same statement text constantly, but one
 * huge statement must not be able to pin memory.
 */
export interface CacheStats {
  entries: number;
  bytes: number;
  maxBytes: number;
  hits: number;
  misses: number;
}

export class ByteBoundedLru<V> {
  // Map iteration order is insertion order: the first key is the least recently used.
  private readonly entries = new Map<string, { value: V; bytes: number }>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  /** The most recently used key: a hit on it needs no reordering (hot loops repeat one statement). */
  private newest: string | undefined;

  constructor(private maxBytes: number) {}

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    if (key !== this.newest) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      this.newest = key;
    }
    return entry.value;
  }

  /**
   * `size` is the caller's estimate of what the entry retains, key included
   * (a function, so nothing is computed when caching is off).
   */
  set(key: string, value: V, size: number | (() => number)): void {
    if (this.maxBytes === 0) return;
    const bytes = typeof size === 'number' ? size : size();
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.bytes -= old.bytes;
    }
    // An entry that would take more than an eighth of the budget would flush
    // most of the cache for one statement; such statements are rare, so they
    // are simply not cached.
    if (bytes > this.maxBytes / 8) return;
    this.entries.set(key, { value, bytes });
    this.newest = key;
    this.bytes += bytes;
    this.evict();
  }

  resize(maxBytes: number): void {
    this.maxBytes = maxBytes;
    this.evict();
  }

  clear(): void {
    this.entries.clear();
    this.newest = undefined;
    this.bytes = 0;
    this.hits = 0;
    this.misses = 0;
  }

  stats(): CacheStats {
    return { entries: this.entries.size, bytes: this.bytes, maxBytes: this.maxBytes, hits: this.hits, misses: this.misses };
  }

  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(key);
      this.bytes -= entry.bytes;
    }
  }
}
