import { describe, it, expect, vi, afterEach } from 'vitest';
import { BurstReporter } from '../../src/net/burst-reporter.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('BurstReporter', () => {
  it('reports the first event at once and folds the rest of the window into one summary, per key', () => {
    vi.useFakeTimers();
    const seen: Array<[string, number]> = [];
    const r = new BurstReporter<string>(1000, (e, folded) => seen.push([e, folded]));
    r.note('dev_a', 'a1');
    r.note('dev_a', 'a2');
    r.note('dev_b', 'b1');
    r.note('dev_a', 'a3');
    expect(seen).toEqual([['a1', 0], ['b1', 0]]);
    vi.advanceTimersByTime(1000);
    expect(seen).toEqual([['a1', 0], ['b1', 0], ['a3', 2]]);
    // A new window after the old one closed reports at once again.
    r.note('dev_a', 'a4');
    expect(seen.at(-1)).toEqual(['a4', 0]);
  });

  it('flushes pending summaries on demand (shutdown), and nothing twice', () => {
    vi.useFakeTimers();
    const seen: Array<[string, number]> = [];
    const r = new BurstReporter<string>(1000, (e, folded) => seen.push([e, folded]));
    r.note('k', 'x1');
    r.note('k', 'x2');
    r.flushAll();
    vi.advanceTimersByTime(5000);
    expect(seen).toEqual([['x1', 0], ['x2', 1]]);
  });
});
