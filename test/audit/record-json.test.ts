/**
 * The record templates the audit log writes at append time must give, once
 * the writer fills in the seq, exactly canonicalJson({ ...record, seq }):
 * that string is what gets hashed into the chain and what verification
 * recomputes.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { canonicalJson } from '../../src/audit/canonical.js';
import { encodeRecord, fillSeq } from '../../src/audit/record-json.js';
import { record } from './records.js';

describe('audit record templates', () => {
  it('equal canonicalJson({ ...record, seq }) for arbitrary records, whatever their shape', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.integer({ min: 1, max: 2 ** 40 }), (rec, seq) => {
        expect(fillSeq(encodeRecord(rec), seq)).toBe(canonicalJson({ ...rec, seq }));
      }),
      { numRuns: 3000 },
    );
  });

  it('replace a record\'s own seq, keep __proto__ and integer-like keys as members, and match across shape changes', () => {
    const cases: object[] = [
      { seq: 99, a: 1 },
      JSON.parse('{"__proto__":{"x":1},"b":2}') as object,
      { '10': 'a', '9': 'b', z: 1 },
      {},
      { zzz: 1 },
      { aaa: { '2': 1, '10': 2 } },
      record(7),
      { ...record(8), extra: 'é\u2028"' },
    ];
    for (const c of cases) expect(fillSeq(encodeRecord(c), 5)).toBe(canonicalJson({ ...c, seq: 5 }));
  });

  it('refuse what canonical JSON refuses', () => {
    expect(() => encodeRecord({ n: 1n })).toThrow(/bigint/);
    expect(() => encodeRecord({ n: Number.NaN })).toThrow(/non-finite/);
  });
});
