/**
 * Fuzzing the frontend decoder: random bytes and mutations of valid client
 * traffic, > 100 000 cases. Each case must end in events or a
 * FrontendProtocolError — never another exception, never a loop — and every
 * message the decoder accepts must be exactly the frame it claims to be.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { serialize } from 'pg-protocol';
import { FrontendDecoder, FrontendProtocolError, type DecodeEvent } from '../../src/protocols/postgres/frontend-decoder.js';

interface Outcome {
  events: DecodeEvent[];
  error: FrontendProtocolError | null;
}

/** Feed `bytes` in the given chunk sizes; check the decoder's invariants. */
function run(bytes: Uint8Array, phase: 'startup' | 'typed', chunks: number[], maxBuffered: number): Outcome {
  const d = new FrontendDecoder({ maxBuffered });
  d.phase = phase;
  const events: DecodeEvent[] = [];
  let pos = 0;
  let i = 0;
  let steps = 0;
  try {
    while (pos < bytes.length) {
      const n = Math.max(1, chunks[i++ % Math.max(1, chunks.length)] ?? bytes.length);
      d.push(Buffer.from(bytes.subarray(pos, pos + n)));
      pos += n;
      for (let ev = d.next(); ev; ev = d.next()) {
        events.push(ev);
        // every event consumes input: no event storms, no loops
        if (++steps > bytes.length + 8) throw new Error('decoder produced more events than input bytes');
      }
    }
  } catch (err) {
    if (err instanceof FrontendProtocolError) return { events, error: err };
    throw err;
  }
  return { events, error: null };
}

function checkFrames(o: Outcome, input: Uint8Array): void {
  // Accepted frames are exact prefixes of the input, in order, with a self-consistent length word.
  const parts: Buffer[] = [];
  for (const ev of o.events) {
    if (ev.kind === 'message') {
      const raw = ev.message.raw;
      expect(raw.readInt32BE(1) + 1).toBe(raw.length);
      parts.push(raw);
    } else if (ev.kind === 'startup') {
      expect(ev.raw.readInt32BE(0)).toBe(ev.raw.length);
      parts.push(ev.raw);
    } else if (ev.kind === 'large-start') {
      parts.push(ev.prefix);
    } else if (ev.kind === 'large-data') {
      parts.push(ev.data);
    }
  }
  const consumed = Buffer.concat(parts);
  expect(consumed.length).toBeLessThanOrEqual(input.length);
  expect(consumed.equals(Buffer.from(input.subarray(0, consumed.length)))).toBe(true);
}

const validTraffic: Buffer[] = [
  serialize.query('SELECT 1; DELETE FROM t'),
  serialize.parse({ name: 's', text: 'SELECT $1::int + $2', types: [23, 23] }),
  serialize.bind({ portal: 'p', statement: 's', values: ['1', null, Buffer.from([0, 1, 2])], binary: false }),
  serialize.describe({ type: 'P', name: 'p' }),
  serialize.execute({ portal: 'p', rows: 10 }),
  serialize.close({ type: 'S', name: 's' }),
  serialize.sync(),
  serialize.flush(),
  serialize.copyData(Buffer.from('a\tb\n')),
  serialize.copyDone(),
  serialize.copyFail('stop'),
  // FunctionCall: oid 2619, no format codes, one 1-byte argument, text result
  Buffer.from([0x46, 0, 0, 0, 19, 0, 0, 0x0a, 0x3b, 0, 0, 0, 1, 0, 0, 0, 1, 0x41, 0, 0]),
  serialize.end(),
];
const validStartup: Buffer[] = [
  serialize.requestSsl(),
  serialize.startup({ user: 'agent', database: 'db', application_name: 'fuzz' }),
  serialize.cancel(1, 2),
];

const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({
    kind: fc.constant('length' as const),
    at: fc.nat(),
    value: fc.oneof(fc.integer({ min: -10, max: 40 }), fc.constantFrom(0x7fffffff, -1, 0x40000000, 10001, 65536)),
  }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(input: Buffer, ms: Mutation[]): Uint8Array {
  let b = Buffer.from(input);
  for (const m of ms) {
    if (b.length === 0) break;
    const at = m.at % b.length;
    switch (m.kind) {
      case 'flip':
        b[at] = m.value;
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.count)]);
        break;
      case 'length':
        if (at + 4 <= b.length) b.writeInt32BE(m.value | 0, at);
        break;
    }
  }
  return b;
}

const chunking = fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 6 });
const bufferLimit = fc.constantFrom(0, 8, 64, 1 << 20);

describe('frontend decoder fuzzing', () => {
  it('random bytes in the typed phase: events or a clean protocol error (40 000 cases)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), chunking, bufferLimit, (bytes, chunks, max) => {
        checkFrames(run(bytes, 'typed', chunks, max), bytes);
      }),
      { numRuns: 40_000 },
    );
  });

  it('random bytes in the startup phase (20 000 cases)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), chunking, (bytes, chunks) => {
        checkFrames(run(bytes, 'startup', chunks, 1024), bytes);
      }),
      { numRuns: 20_000 },
    );
  });

  it('random bytes behind a valid type byte and length (20 000 cases)', () => {
    const types = [...'QPBDECSHFdcfXp'];
    fc.assert(
      fc.property(
        fc.constantFrom(...types),
        fc.uint8Array({ maxLength: 120 }),
        fc.integer({ min: -2, max: 2 }),
        chunking,
        (type, body, skew, chunks) => {
          const b = Buffer.alloc(5 + body.length);
          b.write(type, 0, 'latin1');
          b.writeInt32BE(4 + body.length + skew, 1);
          Buffer.from(body).copy(b, 5);
          const o = run(b, 'typed', chunks, 1 << 20);
          checkFrames(o, b);
        },
      ),
      { numRuns: 20_000 },
    );
  });

  it('mutated valid client traffic (40 000 cases)', () => {
    let rejected = 0;
    let decoded = 0;
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(fc.nat(), { minLength: 1, maxLength: 8 }),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        chunking,
        bufferLimit,
        (startup, picks, ms, chunks, max) => {
          const pool = startup ? validStartup : validTraffic;
          const input = Buffer.concat(picks.map((p) => pool[p % pool.length]!));
          const bytes = mutate(input, ms);
          const o = run(bytes, startup ? 'startup' : 'typed', chunks, max);
          checkFrames(o, bytes);
          if (o.error) rejected++;
          decoded += o.events.length;
        },
      ),
      { numRuns: 40_000 },
    );
    // The mutations must exercise both paths: frames rejected and frames accepted around them.
    expect(rejected).toBeGreaterThan(5_000);
    expect(decoded).toBeGreaterThan(40_000);
  });

  it('unmutated traffic always decodes completely', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { minLength: 1, maxLength: 12 }), chunking, (picks, chunks) => {
        const input = Buffer.concat(picks.map((p) => validTraffic[p % validTraffic.length]!));
        const o = run(input, 'typed', chunks, 1 << 20);
        expect(o.error).toBeNull();
        expect(o.events.filter((e) => e.kind === 'message')).toHaveLength(picks.length);
      }),
      { numRuns: 2_000 },
    );
  });
});
