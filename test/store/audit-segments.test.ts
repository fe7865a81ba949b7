/**
 * The audit segment codec: what goes in comes out exactly (property test
 * over arbitrary JSON records), big batches split into linked segments, and
 * a segment edited or damaged in the database reads as one unreadable row —
 * never an exception, a hang or an unbounded allocation.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { deflateRawSync } from 'node:zlib';
import { RangeCollector, cutSegment, firstSeqAtOrAfterIn, packSegments, unpackSegment, type AuditSegment } from '../../src/store/audit-segments.js';
import type { AuditRow } from '../../src/store/types.js';

function chain(records: readonly string[], firstSeq = 1, ts = (i: number) => 1000 + i): AuditRow[] {
  let prev = 'p'.repeat(64);
  return records.map((record, i) => {
    const hash = (i.toString(16) + 'f'.repeat(64)).slice(0, 64);
    const row = { seq: firstSeq + i, ts: ts(i), record, prevHash: prev, hash };
    prev = hash;
    return row;
  });
}

const unpackAll = (segments: readonly AuditSegment[]): AuditRow[] => segments.flatMap(unpackSegment);

describe('audit segments', () => {
  it('give back exactly the rows they were packed from, for arbitrary JSON records', () => {
    fc.assert(
      fc.property(
        fc.array(fc.jsonValue().map((v) => JSON.stringify(v)), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.array(fc.integer({ min: -1e12, max: 1e13 }), { minLength: 40, maxLength: 40 }),
        (records, firstSeq, times) => {
          const rows = chain(records, firstSeq, (i) => times[i]!);
          const segments = packSegments(rows);
          expect(segments).toHaveLength(1);
          expect(segments[0]).toMatchObject({ firstSeq, lastSeq: firstSeq + records.length - 1, codec: 'deflate-raw' });
          expect(segments[0]!.tsMin).toBe(Math.min(...rows.map((r) => r.ts)));
          expect(segments[0]!.tsMax).toBe(Math.max(...rows.map((r) => r.ts)));
          expect(unpackAll(segments)).toEqual(rows);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('compress a batch of alike records many times over', () => {
    const records = Array.from({ length: 256 }, (_, i) =>
      JSON.stringify({ seq: i + 1, time: new Date(1e12 + i).toISOString(), facts: { sql: { statement: `SELECT * FROM t WHERE id = ${i * 7919}` } }, rule: 'reads', verdict: 'allow' }),
    );
    const [segment] = packSegments(chain(records));
    const text = records.reduce((n, r) => n + r.length, 0);
    expect(segment!.body.length * 8).toBeLessThan(text);
  });

  it('split a batch past 1 MiB of text into segments that link on', () => {
    const big = JSON.stringify({ body: 'x'.repeat(300_000) });
    const rows = chain([big, big, big, big, big, '{}', big]);
    const segments = packSegments(rows);
    expect(segments.map((s) => [s.firstSeq, s.lastSeq])).toEqual([
      [1, 4],
      [5, 7],
    ]);
    expect(segments[1]!.prevHash).toBe(rows[3]!.hash);
    expect(unpackAll(segments)).toEqual(rows);
  });

  it('refuse rows whose seqs do not follow on', () => {
    const rows = chain(['{}', '{}']);
    expect(() => packSegments([rows[0]!, { ...rows[1]!, seq: 5 }])).toThrow(/does not follow/);
  });

  it('read a damaged segment as one unreadable row', () => {
    const [good] = packSegments(chain(['{"a":1}', '{"a":2}', '{"a":3}'], 10));
    const damaged = (s: AuditSegment) => {
      const rows = unpackSegment(s);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ seq: 10, record: '' });
      return rows[0]!.damaged;
    };
    expect(damaged({ ...good!, body: good!.body.subarray(0, 5) })).toMatch(/records 10–12 cannot be decoded/);
    expect(damaged({ ...good!, codec: 'zstd' })).toMatch(/unknown codec "zstd"/);
    expect(damaged({ ...good!, lastSeq: 13 })).toMatch(/holds 3 records, not 4/);
    expect(damaged({ ...good!, lastSeq: 9 })).toMatch(/impossible range/);
    expect(damaged({ ...good!, lastSeq: 2 ** 60 })).toMatch(/impossible range|not/);
    expect(damaged({ ...good!, codec: 'plain', body: Buffer.from('1000\tabc{"a":1}') , lastSeq: 10 })).toMatch(/malformed line for record 10/);
  });

  it('refuse to inflate a body past 256 MiB (a decompression bomb edited into the database)', () => {
    const bomb = deflateRawSync(Buffer.alloc(257 << 20), { level: 1 });
    expect(bomb.length).toBeLessThan(2 << 20);
    const rows = unpackSegment({ firstSeq: 1, lastSeq: 1, tsMin: 0, tsMax: 0, prevHash: '', codec: 'deflate-raw', body: bomb, batch: null });
    expect(rows).toMatchObject([{ seq: 1, record: '', damaged: expect.stringMatching(/cannot be decoded/) }]);
  });

  it('collect ranges after a seq and since a time, up to a limit', () => {
    const segments = packSegments(chain(['{"a":1}', '{"a":2}', '{"a":3}', '{"a":4}'], 1, (i) => [5, 1, 7, 3][i]!));
    const collect = (opts: { afterSeq?: number; sinceTs?: number; limit: number }) => {
      const c = new RangeCollector(opts);
      for (const s of segments) if (!c.add(s)) break;
      return c.rows.map((r) => r.seq);
    };
    expect(collect({ limit: 10 })).toEqual([1, 2, 3, 4]);
    expect(collect({ afterSeq: 2, limit: 10 })).toEqual([3, 4]);
    expect(collect({ sinceTs: 4, limit: 10 })).toEqual([1, 3]);
    expect(collect({ afterSeq: 1, limit: 2 })).toEqual([2, 3]);
    expect(firstSeqAtOrAfterIn(segments[0]!, 6)).toBe(3);
    expect(firstSeqAtOrAfterIn(segments[0]!, 8)).toBeNull();
  });

  it('cut for retention: the checkpoint hash, and the records after the cut as a segment of their own', () => {
    const rows = chain(['{"a":1}', '{"a":2}', '{"a":3}'], 7);
    const [segment] = packSegments(rows);
    const cut = cutSegment(segment!, 8)!;
    expect(cut.hash).toBe(rows[1]!.hash);
    expect(unpackAll(cut.rest)).toEqual([rows[2]]);
    expect(cutSegment(segment!, 9)).toEqual({ hash: rows[2]!.hash, rest: [] });
    expect(cutSegment(segment!, 6)).toBeNull();
    expect(cutSegment({ ...segment!, codec: 'nope' }, 8)).toBeNull();
  });
});
