/**
 * Verdict cache for the LLM judge: identical judged actions reuse the verdict
 * for `llm_cache_ttl` seconds. Bounded (oldest entries go first) so a flood
 * of distinct actions cannot grow it without limit. Only real model verdicts
 * are stored — never a fail-mode result.
 */
import type { JudgeVerdict } from './verdict.js';

interface Entry {
  value: JudgeVerdict;
  expiresAt: number;
}

export class VerdictCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: string): JudgeVerdict | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: string, value: JudgeVerdict, ttlMs: number): void {
    if (!(ttlMs > 0)) return;
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
