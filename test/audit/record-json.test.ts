/**
 * The record templates the audit log writes at append time must give, once
 * the writer fills in the seq, exactly canonicalJson({ ...record, seq }):
 * that string is what gets hashed into the chain and what verification
 * recomputes.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { canonicalJson, setMember } from '../../src/audit/canonical.js';
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

  it('equal canonicalJson({ ...record, seq }) for records whose keys are already in canonical order (written as they are)', () => {
    const sortedDeep = (v: unknown): unknown => {
      if (v === null || typeof v !== 'object') return v;
      if (Array.isArray(v)) return v.map(sortedDeep);
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).sort()) setMember(out, k, sortedDeep((v as Record<string, unknown>)[k]));
      return out;
    };
    const scalar = fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
    // Keys around "seq" ("r…", "s…", "t…"), scalars after it, anything before it — and, sometimes, unsorted nesting.
    const key = fc.oneof(fc.string(), fc.constantFrom('rule', 'reason', 'sep', 'seq0', 'status', 'time', 'verdict', 'a', 'z'));
    const value = fc.oneof(scalar, fc.jsonValue(), fc.constant(undefined));
    fc.assert(
      fc.property(fc.dictionary(key, value), fc.dictionary(key, scalar), fc.boolean(), fc.integer({ min: 1, max: 2 ** 40 }), (a, b, nested, seq) => {
        const rec = { ...a, ...b } as Record<string, unknown>;
        delete rec.seq;
        const ordered = (nested ? sortedDeep(rec) : Object.fromEntries(Object.keys(rec).sort().map((k) => [k, rec[k]]))) as object;
        expect(fillSeq(encodeRecord(ordered), seq)).toBe(canonicalJson({ ...ordered, seq }));
      }),
      { numRuns: 3000 },
    );
    const edge: object[] = [{}, { a: undefined }, { a: undefined, status: 'x' }, { status: 1 }, { a: 1 }, { a: () => 1, time: 't' }, { rule: { status: 'x', 'x,"status":': 1 }, status: 'y' }];
    for (const c of edge) expect(fillSeq(encodeRecord(c), 3)).toBe(canonicalJson({ ...c, seq: 3 }));
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
