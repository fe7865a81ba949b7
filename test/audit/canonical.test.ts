import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { canonicalJson } from '../../src/audit/canonical.js';

/** A plain reference implementation of RFC 8785 for JSON values (sorted by UTF-16 code units). */
function reference(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return '[' + v.map(reference).join(',') + ']';
  const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + reference((v as Record<string, unknown>)[k])).join(',') + '}';
}

describe('canonicalJson', () => {
  it('sorts keys at every level, no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}');
  });

  it('orders integer-like keys by code units, not numerically as JavaScript objects do', () => {
    expect(canonicalJson({ '10': 'a', '9': 'b', x: 1 })).toBe('{"10":"a","9":"b","x":1}');
    expect(canonicalJson({ q: { '2': [1], '10': [2] } })).toBe('{"q":{"10":[2],"2":[1]}}');
  });

  it('drops undefined members like JSON, and rejects what JSON cannot represent', () => {
    expect(canonicalJson({ a: undefined, b: [undefined], c: 1 })).toBe('{"b":[null],"c":1}');
    expect(() => canonicalJson({ n: NaN })).toThrow(/non-finite/);
    expect(() => canonicalJson({ n: 1n })).toThrow(/bigint/);
    expect(() => canonicalJson({ '1': Infinity })).toThrow(/non-finite/);
  });

  it('matches the reference on arbitrary JSON (fast and slow paths alike)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(v)).toBe(reference(v));
        // parse(canonical) is canonical again: verification re-canonicalises stored records
        expect(canonicalJson(JSON.parse(canonicalJson(v)))).toBe(canonicalJson(v));
      }),
      { numRuns: 2000 },
    );
  });
});
