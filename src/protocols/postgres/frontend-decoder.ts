/**
 * Sans-I/O decoder of the messages a PostgreSQL client (the agent) sends.
 *
 * pg-protocol only parses backend messages, and its type codes collide with
 * frontend ones ('E' is ErrorResponse there, Execute here), so the frontend
 * side is decoded here. The decoder is strict on purpose: a length that runs
 * past the frame, a string without its NUL, a count that does not match the
 * bytes, trailing bytes, an unknown type or a length over the type's limit is
 * a `FrontendProtocolError` — the gateway never "best efforts" the remaining
 * bytes as SQL (threats.md class 8).
 *
 * Messages up to `maxBuffered` body bytes are delivered whole (`message`).
 * Larger Query/Parse/Bind/FunctionCall/CopyData messages are delivered as a
 * stream (`large-start`, `large-data`…, `large-end`) so that a bulk COPY or a
 * big bytea parameter never has to sit in memory; `large-start` carries the
 * leading names the session needs (statement and portal names).
 */
import {
  CANCEL_REQUEST_CODE,
  GSSENC_REQUEST_CODE,
  LARGE_MESSAGE_LIMIT,
  MAX_STARTUP_PACKET,
  SMALL_MESSAGE_LIMIT,
  SSL_REQUEST_CODE,
} from './wire.js';

export class FrontendProtocolError extends Error {
  override readonly name = 'FrontendProtocolError';
}

// ───────────────────────────── message shapes ─────────────────────────────

export interface StartupMessage {
  type: 'Startup';
  major: number;
  minor: number;
  /** Parameters in the order sent (a repeated name: the last one wins, as in PostgreSQL). */
  params: Array<[string, string]>;
}

export type StartupPacket =
  | { type: 'SSLRequest' }
  | { type: 'GSSENCRequest' }
  | { type: 'CancelRequest'; processId: number; secretKey: number }
  | StartupMessage;

/**
 * Typed messages. Statement and portal names are latin1 strings (one char per
 * byte) so distinct byte sequences stay distinct; SQL text is UTF-8.
 * `raw` is the complete frame (type byte, length, body) for forwarding.
 */
export type TypedMessage =
  | { type: 'Q'; sql: string; raw: Buffer }
  | { type: 'P'; name: string; sql: string; paramTypes: number; raw: Buffer }
  | { type: 'B'; portal: string; statement: string; paramCount: number; raw: Buffer }
  | { type: 'D'; target: 'S' | 'P'; name: string; raw: Buffer }
  | { type: 'E'; portal: string; maxRows: number; raw: Buffer }
  | { type: 'C'; target: 'S' | 'P'; name: string; raw: Buffer }
  | { type: 'S'; raw: Buffer }
  | { type: 'H'; raw: Buffer }
  | { type: 'F'; functionOid: number; argCount: number; raw: Buffer }
  | { type: 'd'; raw: Buffer }
  | { type: 'c'; raw: Buffer }
  | { type: 'f'; message: string; raw: Buffer }
  | { type: 'X'; raw: Buffer }
  | { type: 'p'; raw: Buffer };

export type TypedCode = TypedMessage['type'];

/** First bytes of a message too large to buffer. */
export type LargeHead =
  | { type: 'Q' }
  | { type: 'P'; name: string }
  | { type: 'B'; portal: string; statement: string }
  | { type: 'F'; functionOid: number }
  | { type: 'd' };

export type DecodeEvent =
  | { kind: 'startup'; packet: StartupPacket; raw: Buffer }
  | { kind: 'message'; message: TypedMessage }
  | {
      kind: 'large-start';
      head: LargeHead;
      /** Total frame length (type byte + length word + body). */
      frameLength: number;
      /** The frame's first bytes (header and the part of the body already read). */
      prefix: Buffer;
    }
  | { kind: 'large-data'; data: Buffer }
  | { kind: 'large-end' };

// ───────────────────────────── limits per type ────────────────────────────

/** Body length limits (PostgreSQL's, after the 4-byte length word). */
const LIMITS: Record<TypedCode, number> = {
  Q: LARGE_MESSAGE_LIMIT,
  P: LARGE_MESSAGE_LIMIT,
  B: LARGE_MESSAGE_LIMIT,
  F: LARGE_MESSAGE_LIMIT,
  d: LARGE_MESSAGE_LIMIT,
  D: SMALL_MESSAGE_LIMIT,
  E: SMALL_MESSAGE_LIMIT,
  C: SMALL_MESSAGE_LIMIT,
  S: SMALL_MESSAGE_LIMIT,
  H: SMALL_MESSAGE_LIMIT,
  c: SMALL_MESSAGE_LIMIT,
  f: SMALL_MESSAGE_LIMIT,
  X: SMALL_MESSAGE_LIMIT,
  p: SMALL_MESSAGE_LIMIT,
};

const STREAMABLE = new Set<TypedCode>(['Q', 'P', 'B', 'F', 'd']);

/** How much of a large message's body is read before `large-start` (names live there). */
export const LARGE_HEAD_BYTES = 4096;

function isTypedCode(c: string): c is TypedCode {
  return Object.prototype.hasOwnProperty.call(LIMITS, c);
}

// ───────────────────────────── body reader ────────────────────────────────

/** Cursor over one message body; every read is bounds-checked. */
class BodyReader {
  private pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly what: string,
  ) {}

  private fail(detail: string): never {
    throw new FrontendProtocolError(`invalid ${this.what} message: ${detail}`);
  }

  /** PostgreSQL reads 2-byte counts and codes unsigned (pq_getmsgint(…, 2)). */
  uint16(field: string): number {
    if (this.pos + 2 > this.buf.length) this.fail(`${field} runs past the end of the message`);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  int32(field: string): number {
    if (this.pos + 4 > this.buf.length) this.fail(`${field} runs past the end of the message`);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  byte(field: string): number {
    if (this.pos + 1 > this.buf.length) this.fail(`${field} runs past the end of the message`);
    return this.buf[this.pos++]!;
  }

  skip(n: number, field: string): void {
    if (n < 0 || this.pos + n > this.buf.length) this.fail(`${field} runs past the end of the message`);
    this.pos += n;
  }

  cstring(field: string, encoding: 'utf8' | 'latin1'): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) this.fail(`${field} is missing its NUL terminator`);
    const s = this.buf.toString(encoding, this.pos, end);
    this.pos = end + 1;
    return s;
  }

  /** A count followed by that many int16 format codes, each 0 (text) or 1 (binary). */
  formatCodes(field: string): number {
    const n = this.uint16(`${field} count`);
    for (let i = 0; i < n; i++) {
      const code = this.uint16(field);
      if (code !== 0 && code !== 1) this.fail(`unsupported ${field} ${code}`);
    }
    return n;
  }

  /** A count followed by that many length-prefixed values (-1 = NULL). */
  values(field: string): number {
    const n = this.uint16(`${field} count`);
    for (let i = 0; i < n; i++) {
      const len = this.int32(`${field} ${i + 1} length`);
      if (len === -1) continue;
      if (len < -1) this.fail(`${field} ${i + 1} has invalid length ${len}`);
      this.skip(len, `${field} ${i + 1}`);
    }
    return n;
  }

  end(): void {
    if (this.pos !== this.buf.length) this.fail(`${this.buf.length - this.pos} unexpected trailing byte(s)`);
  }
}

const NAMES: Record<TypedCode, string> = {
  Q: 'Query',
  P: 'Parse',
  B: 'Bind',
  D: 'Describe',
  E: 'Execute',
  C: 'Close',
  S: 'Sync',
  H: 'Flush',
  F: 'FunctionCall',
  d: 'CopyData',
  c: 'CopyDone',
  f: 'CopyFail',
  X: 'Terminate',
  p: 'password',
};

/** Decode one complete typed message body (exported for tests and fixtures). */
export function decodeTypedBody(type: TypedCode, body: Buffer, raw: Buffer): TypedMessage {
  const r = new BodyReader(body, NAMES[type]);
  switch (type) {
    case 'Q': {
      const sql = r.cstring('query string', 'utf8');
      r.end();
      return { type, sql, raw };
    }
    case 'P': {
      const name = r.cstring('statement name', 'latin1');
      const sql = r.cstring('query string', 'utf8');
      const n = r.uint16('parameter type count');
      for (let i = 0; i < n; i++) r.int32('parameter type');
      r.end();
      return { type, name, sql, paramTypes: n, raw };
    }
    case 'B': {
      const portal = r.cstring('portal name', 'latin1');
      const statement = r.cstring('statement name', 'latin1');
      const formats = r.formatCodes('parameter format code');
      const paramCount = r.values('parameter');
      // PostgreSQL: zero, one (applies to all) or one format per parameter.
      if (formats > 1 && formats !== paramCount) {
        throw new FrontendProtocolError(
          `invalid Bind message: ${formats} parameter formats but ${paramCount} parameters`,
        );
      }
      r.formatCodes('result format code');
      r.end();
      return { type, portal, statement, paramCount, raw };
    }
    case 'D':
    case 'C': {
      const t = r.byte('target');
      if (t !== 0x53 && t !== 0x50) {
        throw new FrontendProtocolError(`invalid ${NAMES[type]} message: target must be 'S' or 'P'`);
      }
      const name = r.cstring('name', 'latin1');
      r.end();
      return { type, target: t === 0x53 ? 'S' : 'P', name, raw };
    }
    case 'E': {
      const portal = r.cstring('portal name', 'latin1');
      const maxRows = r.int32('row limit');
      r.end();
      return { type, portal, maxRows, raw };
    }
    case 'F': {
      const functionOid = r.int32('function OID') >>> 0;
      const formats = r.formatCodes('argument format code');
      const argCount = r.values('argument');
      if (formats > 1 && formats !== argCount) {
        throw new FrontendProtocolError(
          `invalid FunctionCall message: ${formats} argument formats but ${argCount} arguments`,
        );
      }
      const resultFormat = r.uint16('result format code');
      if (resultFormat !== 0 && resultFormat !== 1) {
        throw new FrontendProtocolError(`invalid FunctionCall message: unsupported result format ${resultFormat}`);
      }
      r.end();
      return { type, functionOid, argCount, raw };
    }
    case 'f': {
      const message = r.cstring('error message', 'utf8');
      r.end();
      return { type, message, raw };
    }
    case 'S':
    case 'H':
    case 'c':
    case 'X':
      r.end();
      return { type, raw };
    case 'd':
    case 'p':
      return { type, raw };
  }
}

/** Decode an untyped startup-phase packet (length word included in `raw`). */
export function decodeStartupPacket(raw: Buffer): StartupPacket {
  const code = raw.readInt32BE(4);
  const len = raw.length;
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (len !== 8) throw new FrontendProtocolError(`invalid ${code === SSL_REQUEST_CODE ? 'SSL' : 'GSSENC'} request length ${len}`);
    return { type: code === SSL_REQUEST_CODE ? 'SSLRequest' : 'GSSENCRequest' };
  }
  if (code === CANCEL_REQUEST_CODE) {
    if (len !== 16) throw new FrontendProtocolError(`invalid cancel request length ${len}`);
    return { type: 'CancelRequest', processId: raw.readInt32BE(8), secretKey: raw.readInt32BE(12) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  if (major !== 3) {
    throw new FrontendProtocolError(`unsupported frontend protocol ${major}.${minor}: server supports 3.0 to 3.0`);
  }
  const r = new BodyReader(raw.subarray(8), 'startup');
  // Duplicates are kept in order: PostgreSQL applies them in order (the last
  // one wins), and pg-protocol itself appends a second client_encoding.
  const params: Array<[string, string]> = [];
  for (;;) {
    const name = r.cstring('parameter name', 'utf8');
    if (name === '') break;
    const value = r.cstring(`value of "${name}"`, 'utf8');
    params.push([name, value]);
  }
  r.end();
  return { type: 'Startup', major, minor, params };
}

// ───────────────────────────── the decoder ────────────────────────────────

export interface FrontendDecoderOptions {
  /**
   * Largest body delivered whole; larger streamable messages are streamed.
   * The gateway passes `limits.body_buffer` here.
   */
  maxBuffered: number;
}

export class FrontendDecoder {
  /** 'startup' until the session has accepted a StartupMessage. */
  phase: 'startup' | 'typed' = 'startup';
  private buf: Buffer = Buffer.alloc(0);
  /** Remaining frame bytes of a message being streamed. */
  private streaming = 0;
  private failed: FrontendProtocolError | null = null;
  private readonly maxBuffered: number;

  constructor(opts: FrontendDecoderOptions) {
    this.maxBuffered = Math.max(0, Math.floor(opts.maxBuffered));
  }

  /** Bytes received but not yet returned as events. */
  get bufferedBytes(): number {
    return this.buf.length;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** Next event, or null when more bytes are needed. Throws FrontendProtocolError (and keeps throwing it). */
  next(): DecodeEvent | null {
    if (this.failed) throw this.failed;
    try {
      return this.step();
    } catch (err) {
      if (err instanceof FrontendProtocolError) this.failed = err;
      throw err;
    }
  }

  private take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  private step(): DecodeEvent | null {
    if (this.inLarge) {
      if (this.streaming === 0) {
        this.inLarge = false;
        return { kind: 'large-end' };
      }
      if (this.buf.length === 0) return null;
      const n = Math.min(this.streaming, this.buf.length);
      this.streaming -= n;
      return { kind: 'large-data', data: this.take(n) };
    }
    return this.phase === 'startup' ? this.startupStep() : this.typedStep();
  }

  /** True between `large-start` and `large-end`. */
  private inLarge = false;

  private startupStep(): DecodeEvent | null {
    if (this.buf.length < 4) return null;
    const len = this.buf.readInt32BE(0);
    if (len < 8 || len > MAX_STARTUP_PACKET) {
      throw new FrontendProtocolError(`invalid length of startup packet: ${len}`);
    }
    if (this.buf.length < len) return null;
    const raw = this.take(len);
    return { kind: 'startup', packet: decodeStartupPacket(raw), raw };
  }

  private typedStep(): DecodeEvent | null {
    if (this.buf.length < 1) return null;
    const code = String.fromCharCode(this.buf[0]!);
    // Validate the type before trusting the length word: after a desync a
    // garbage length must not make us wait for (or allocate) gigabytes.
    if (!isTypedCode(code)) {
      throw new FrontendProtocolError(`invalid frontend message type ${this.buf[0]}`);
    }
    if (this.buf.length < 5) return null;
    const len = this.buf.readInt32BE(1);
    if (len < 4) throw new FrontendProtocolError(`invalid message length ${len} for ${NAMES[code]}`);
    const bodyLen = len - 4;
    if (bodyLen > LIMITS[code]) {
      throw new FrontendProtocolError(`invalid message length ${len} for ${NAMES[code]}: over the ${LIMITS[code]}-byte limit`);
    }
    const frameLen = len + 1;
    if (bodyLen > this.maxBuffered && STREAMABLE.has(code)) {
      const headLen = largeHeadLength(code, this.buf.subarray(5, 5 + Math.min(bodyLen, LARGE_HEAD_BYTES)), bodyLen);
      if (headLen === null) return null;
      const head = largeHead(code, this.buf.subarray(5, 5 + headLen));
      const prefix = this.take(Math.min(this.buf.length, frameLen));
      this.streaming = frameLen - prefix.length;
      this.inLarge = true;
      return { kind: 'large-start', head, frameLength: frameLen, prefix };
    }
    if (this.buf.length < frameLen) return null;
    const raw = this.take(frameLen);
    return { kind: 'message', message: decodeTypedBody(code, raw.subarray(5), raw) };
  }
}

/**
 * Bytes of a large message's body needed before `large-start` (its leading
 * names), or null to wait for more. A name that does not end within
 * LARGE_HEAD_BYTES is rejected by `largeHead`.
 */
function largeHeadLength(code: TypedCode, avail: Buffer, bodyLen: number): number | null {
  const cap = Math.min(bodyLen, LARGE_HEAD_BYTES);
  const nulls = code === 'P' ? 1 : code === 'B' ? 2 : 0;
  if (code === 'F') return avail.length >= 4 ? 4 : null;
  let pos = 0;
  for (let i = 0; i < nulls; i++) {
    const end = avail.indexOf(0, pos);
    if (end < 0) return avail.length >= cap ? cap : null;
    pos = end + 1;
  }
  return pos;
}

/** Names at the start of a large message; a name that does not fit in the head is rejected. */
function largeHead(code: TypedCode, head: Buffer): LargeHead {
  const r = new BodyReader(head, NAMES[code]);
  switch (code) {
    case 'Q':
      return { type: 'Q' };
    case 'P':
      return { type: 'P', name: r.cstring('statement name', 'latin1') };
    case 'B': {
      const portal = r.cstring('portal name', 'latin1');
      const statement = r.cstring('statement name', 'latin1');
      return { type: 'B', portal, statement };
    }
    case 'F':
      return { type: 'F', functionOid: r.int32('function OID') >>> 0 };
    default:
      return { type: 'd' };
  }
}
