import { describe, expect, it } from 'vitest';
import { serialize } from 'pg-protocol';
import {
  FrontendDecoder,
  FrontendProtocolError,
  type DecodeEvent,
  type TypedMessage,
} from '../../src/protocols/postgres/frontend-decoder.js';

/** A typed frame with a raw body (for malformed cases pg-protocol would never produce). */
function frame(type: string, body: Buffer | number[]): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const out = Buffer.alloc(5 + b.length);
  out.write(type, 0, 'latin1');
  out.writeInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

function i16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}
function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}
const cstr = (s: string): Buffer => Buffer.from(s + '\0', 'utf8');

function typed(max = 1 << 20): FrontendDecoder {
  const d = new FrontendDecoder({ maxBuffered: max });
  d.phase = 'typed';
  return d;
}

function drain(d: FrontendDecoder): DecodeEvent[] {
  const out: DecodeEvent[] = [];
  for (let ev = d.next(); ev; ev = d.next()) out.push(ev);
  return out;
}

function messages(bytes: Buffer, chunk = bytes.length): TypedMessage[] {
  const d = typed();
  const out: TypedMessage[] = [];
  for (let i = 0; i < bytes.length; i += chunk) {
    d.push(bytes.subarray(i, i + chunk));
    for (const ev of drain(d)) if (ev.kind === 'message') out.push(ev.message);
  }
  expect(d.bufferedBytes).toBe(0);
  return out;
}

function decodeError(bytes: Buffer): string {
  const d = typed();
  d.push(bytes);
  try {
    drain(d);
  } catch (err) {
    expect(err).toBeInstanceOf(FrontendProtocolError);
    // The decoder stays failed: it never resynchronises on garbage.
    expect(() => d.next()).toThrow(FrontendProtocolError);
    return (err as Error).message;
  }
  throw new Error('expected a protocol error');
}

describe('startup phase', () => {
  it('decodes SSLRequest, GSSENCRequest, CancelRequest and StartupMessage', () => {
    const d = new FrontendDecoder({ maxBuffered: 1024 });
    const startup = serialize.startup({ user: 'agent', database: 'app', application_name: 'psql' });
    d.push(Buffer.concat([serialize.requestSsl(), Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x30]), serialize.cancel(42, -7), startup]));
    const evs = drain(d);
    expect(evs.map((e) => (e.kind === 'startup' ? e.packet.type : e.kind))).toEqual([
      'SSLRequest',
      'GSSENCRequest',
      'CancelRequest',
      'Startup',
    ]);
    const cancel = evs[2]!;
    expect(cancel.kind === 'startup' && cancel.packet).toEqual({ type: 'CancelRequest', processId: 42, secretKey: -7 });
    const st = evs[3]!;
    expect(st.kind === 'startup' && st.packet).toEqual({
      type: 'Startup',
      major: 3,
      minor: 0,
      params: [
        ['user', 'agent'],
        ['database', 'app'],
        ['application_name', 'psql'],
        ['client_encoding', 'UTF8'],
      ],
    });
  });

  it('keeps repeated parameters in order (the server lets the last one win)', () => {
    const d = new FrontendDecoder({ maxBuffered: 1024 });
    d.push(Buffer.concat([i32(8 + 15), i32(196608), Buffer.from('user\0a\0user\0b\0\0')]));
    const ev = d.next();
    expect(ev?.kind === 'startup' && ev.packet).toMatchObject({ params: [['user', 'a'], ['user', 'b']] });
  });

  it('waits for a complete packet, byte by byte', () => {
    const d = new FrontendDecoder({ maxBuffered: 1024 });
    const bytes = serialize.startup({ user: 'u' });
    for (let i = 0; i < bytes.length - 1; i++) {
      d.push(bytes.subarray(i, i + 1));
      expect(d.next()).toBeNull();
    }
    d.push(bytes.subarray(bytes.length - 1));
    expect(d.next()?.kind).toBe('startup');
  });

  const bad: Array<[string, Buffer, RegExp]> = [
    ['length below 8', Buffer.from([0, 0, 0, 4, 0, 3, 0, 0]), /invalid length of startup packet/],
    ['length over 10000', Buffer.concat([i32(20000), i32(196608)]), /invalid length of startup packet/],
    ['SSLRequest with a body', Buffer.concat([i32(12), i32(80877103), i32(0)]), /invalid SSL request length/],
    ['short CancelRequest', Buffer.concat([i32(12), i32(80877102), i32(1)]), /invalid cancel request length/],
    ['protocol 2', Buffer.concat([i32(8), i32(2 << 16)]), /unsupported frontend protocol 2\.0/],
    ['missing final terminator', Buffer.concat([i32(8 + 7), i32(196608), Buffer.from('user\0u\0')]), /missing its NUL|trailing/],
    ['value without NUL', Buffer.concat([i32(8 + 6), i32(196608), Buffer.from('user\0u')]), /missing its NUL/],
    ['bytes after terminator', Buffer.concat([i32(8 + 9), i32(196608), Buffer.from('user\0u\0\0x')]), /trailing/],
  ];
  for (const [name, bytes, re] of bad) {
    it(`rejects ${name}`, () => {
      const d = new FrontendDecoder({ maxBuffered: 1024 });
      d.push(bytes);
      expect(() => drain(d)).toThrow(re);
    });
  }
});

describe('typed messages', () => {
  it('decodes every message a client sends, also split at every byte', () => {
    const bytes = Buffer.concat([
      serialize.query('SELECT 1; SELECT 2'),
      serialize.parse({ name: 's1', text: 'SELECT $1::int', types: [23] }),
      serialize.bind({ portal: 'p1', statement: 's1', values: ['1', null, Buffer.from([1, 2])] }),
      serialize.describe({ type: 'S', name: 's1' }),
      serialize.describe({ type: 'P', name: 'p1' }),
      serialize.execute({ portal: 'p1', rows: 5 }),
      serialize.close({ type: 'P', name: 'p1' }),
      serialize.flush(),
      serialize.sync(),
      serialize.copyData(Buffer.from('1\t2\n')),
      serialize.copyDone(),
      serialize.copyFail('no more'),
      frame('F', Buffer.concat([i32(2619), i16(1), i16(0), i16(1), i32(3), Buffer.from('abc'), i16(0)])),
      serialize.end(),
    ]);
    for (const chunk of [bytes.length, 1, 3, 7]) {
      const ms = messages(bytes, chunk);
      expect(ms.map((m) => m.type).join('')).toBe('QPBDDECHSdcfFX');
      expect(ms[0]).toMatchObject({ type: 'Q', sql: 'SELECT 1; SELECT 2' });
      expect(ms[1]).toMatchObject({ type: 'P', name: 's1', sql: 'SELECT $1::int', paramTypes: 1 });
      expect(ms[2]).toMatchObject({ type: 'B', portal: 'p1', statement: 's1', paramCount: 3 });
      expect(ms[3]).toMatchObject({ type: 'D', target: 'S', name: 's1' });
      expect(ms[5]).toMatchObject({ type: 'E', portal: 'p1', maxRows: 5 });
      expect(ms[6]).toMatchObject({ type: 'C', target: 'P', name: 'p1' });
      expect(ms[11]).toMatchObject({ type: 'f', message: 'no more' });
      expect(ms[12]).toMatchObject({ type: 'F', functionOid: 2619, argCount: 1 });
      // raw is the exact frame, for forwarding unchanged
      expect(Buffer.concat(ms.map((m) => m.raw)).equals(bytes)).toBe(true);
    }
  });

  it('keeps statement names byte-exact (latin1) and SQL as UTF-8', () => {
    const [p] = messages(serialize.parse({ name: 'é', text: "SELECT 'ü'" }));
    expect(p).toMatchObject({ type: 'P', name: Buffer.from('é').toString('latin1'), sql: "SELECT 'ü'" });
  });

  const bad: Array<[string, Buffer, RegExp]> = [
    ['an unknown type', frame('Z', []), /invalid frontend message type 90/],
    ['a length below 4', Buffer.from([0x51, 0, 0, 0, 3]), /invalid message length 3/],
    ['a Sync over the small-message limit', Buffer.concat([Buffer.from('S'), i32(20000)]), /over the 10000-byte limit/],
    ['a Query without NUL', frame('Q', Buffer.from('SELECT 1')), /query string is missing its NUL/],
    ['a Query with bytes after the NUL', frame('Q', Buffer.from('SELECT 1\0DROP TABLE t\0')), /trailing byte/],
    ['a Parse whose type count exceeds the bytes', frame('P', Buffer.concat([cstr(''), cstr('SELECT 1'), i16(3), i32(23)])), /parameter type runs past/],
    ['a Parse with trailing bytes', frame('P', Buffer.concat([cstr(''), cstr('SELECT 1'), i16(0), Buffer.from('x')])), /trailing/],
    ['a Bind value longer than the message', frame('B', Buffer.concat([cstr(''), cstr(''), i16(0), i16(1), i32(100), Buffer.from('ab'), i16(0)])), /parameter 1 runs past/],
    ['a Bind value with length -2', frame('B', Buffer.concat([cstr(''), cstr(''), i16(0), i16(1), i32(-2), i16(0)])), /invalid length -2/],
    ['a Bind with 2 formats for 3 values', frame('B', Buffer.concat([cstr(''), cstr(''), i16(2), i16(0), i16(0), i16(3), i32(-1), i32(-1), i32(-1), i16(0)])), /2 parameter formats but 3 parameters/],
    ['a Bind with format code 7', frame('B', Buffer.concat([cstr(''), cstr(''), i16(1), i16(7), i16(0), i16(0)])), /unsupported parameter format code 7/],
    ['a Bind missing its result formats', frame('B', Buffer.concat([cstr(''), cstr(''), i16(0), i16(0)])), /result format code count runs past/],
    ['a Describe of kind X', frame('D', Buffer.concat([Buffer.from('X'), cstr('a')])), /target must be 'S' or 'P'/],
    ['an Execute without row limit', frame('E', cstr('')), /row limit runs past/],
    ['a Sync with a body', frame('S', [0]), /trailing/],
    ['a FunctionCall missing its result format', frame('F', Buffer.concat([i32(1), i16(0), i16(0)])), /result format code runs past/],
    ['a CopyFail without NUL', frame('f', Buffer.from('x')), /missing its NUL/],
  ];
  for (const [name, bytes, re] of bad) {
    it(`rejects ${name}`, () => {
      expect(decodeError(bytes)).toMatch(re);
    });
  }

  it('never treats bytes after a malformed frame as SQL', () => {
    const bytes = Buffer.concat([serialize.query('SELECT 1'), frame('Q', Buffer.from('SELECT 2')), serialize.query('DROP TABLE t')]);
    const d = typed();
    d.push(bytes);
    const seen: string[] = [];
    expect(() => {
      for (let ev = d.next(); ev; ev = d.next()) if (ev.kind === 'message' && ev.message.type === 'Q') seen.push(ev.message.sql);
    }).toThrow(FrontendProtocolError);
    expect(seen).toEqual(['SELECT 1']);
  });
});

describe('messages over the buffer limit', () => {
  it('streams a large Query with its frame intact', () => {
    const sql = 'SELECT ' + "'x'||".repeat(5000) + "'y'";
    const bytes = Buffer.concat([serialize.query(sql), serialize.sync()]);
    const d = typed(1000);
    const evs: DecodeEvent[] = [];
    for (let i = 0; i < bytes.length; i += 4096) {
      d.push(bytes.subarray(i, i + 4096));
      evs.push(...drain(d));
    }
    expect(evs[0]).toMatchObject({ kind: 'large-start', head: { type: 'Q' }, frameLength: sql.length + 6 });
    const kinds = evs.map((e) => e.kind);
    expect(kinds.filter((k) => k === 'large-end')).toHaveLength(1);
    expect(kinds[kinds.length - 1]).toBe('message');
    const reassembled = Buffer.concat(
      evs.flatMap((e) => (e.kind === 'large-start' ? [e.prefix] : e.kind === 'large-data' ? [e.data] : [])),
    );
    expect(reassembled.equals(serialize.query(sql))).toBe(true);
  });

  it('gives the names of a large Parse and Bind in the head', () => {
    const text = 'SELECT ' + '1+'.repeat(3000) + '1';
    const d = typed(100);
    d.push(serialize.parse({ name: 'big', text }));
    expect(d.next()).toMatchObject({ kind: 'large-start', head: { type: 'P', name: 'big' } });
    const d2 = typed(100);
    d2.push(serialize.bind({ portal: 'pp', statement: 'big', values: [Buffer.alloc(5000)] }));
    expect(d2.next()).toMatchObject({ kind: 'large-start', head: { type: 'B', portal: 'pp', statement: 'big' } });
  });

  it('rejects a large Parse whose name does not end in the first 4 KiB', () => {
    const d = typed(100);
    d.push(frame('P', Buffer.alloc(10000, 0x61)));
    expect(() => d.next()).toThrow(/statement name is missing its NUL/);
  });

  it('does not stream message kinds that must be small', () => {
    const d = typed(10);
    d.push(frame('E', Buffer.concat([cstr('a'.repeat(50)), i32(0)])));
    expect(d.next()).toMatchObject({ kind: 'message', message: { type: 'E', portal: 'a'.repeat(50) } });
  });
});
