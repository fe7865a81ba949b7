/**
 * A strict HTTP/1.1 request parser as a sans-I/O state machine.
 *
 * Bytes go in with `feed()`, events come out of `next()`. Nothing here knows
 * about sockets, so the same code parses live traffic, `raw` fixtures and
 * fuzz input.
 *
 * Why not Node's llhttp: probed on Node 20.20 (docs/https.md, "Why a
 * hand-written parser"), llhttp accepts `Transfer-Encoding: xyz, chunked`,
 * two `Host` fields and `Transfer-Encoding` on HTTP/1.0 requests, and it
 * cannot be driven without a socket (fixtures, fuzzing) or stopped between
 * the head and the body while a decision is pending. A firewall must read
 * framing exactly one way, so every ambiguity below is a hard error:
 *
 *  - bare LF or bare CR anywhere in the head, chunk lines or trailers;
 *  - obs-fold, whitespace before the colon, control characters in values;
 *  - Content-Length together with Transfer-Encoding (RFC 9112 §6.3 rule 3);
 *  - more than one Content-Length field, a list, a sign or non-digits;
 *  - any Transfer-Encoding other than exactly one `chunked` (no lists, no
 *    empty elements, no parameters, no HTAB), and any on HTTP/1.0;
 *  - chunk sizes that are not 1–16 hex digits, malformed chunk extensions,
 *    chunk data not followed by CRLF;
 *  - missing or repeated Host on HTTP/1.1.
 *
 * Errors carry the status to answer with; the connection must then close,
 * because the byte stream can no longer be trusted.
 */

export interface HeaderField {
  /** Field name as sent (case preserved). */
  name: string;
  /** Field value with leading/trailing SP and HTAB removed. */
  value: string;
}

export type BodyFraming =
  | { kind: 'none' }
  | { kind: 'length'; length: number }
  | { kind: 'chunked' }
  /** Responses only: the body ends when the connection does. */
  | { kind: 'close' };

export interface RequestHead {
  method: string;
  /** The request-target exactly as sent. */
  target: string;
  version: '1.0' | '1.1';
  headers: HeaderField[];
  framing: BodyFraming;
  /** Whether the connection may carry another request after this one. */
  keepAlive: boolean;
  /** `Expect: 100-continue` on an HTTP/1.1 request. */
  expectContinue: boolean;
  /** Lower-case protocol named by `Upgrade` when `Connection` lists `upgrade`; else null. */
  upgrade: string | null;
  /** Size of the request line and header section on the wire. */
  headBytes: number;
}

export type ParseEvent<Head = RequestHead> =
  | { type: 'head'; head: Head }
  | { type: 'body'; data: Buffer }
  | { type: 'end'; trailers: HeaderField[]; trailerBytes: number }
  | { type: 'error'; status: number; reason: string };

export interface ParserLimits {
  /** Longest request line (414 beyond). */
  maxRequestLine: number;
  /** Largest header section, request line included (431 beyond). */
  maxHeadBytes: number;
  /** Most header fields (431 beyond). */
  maxHeaders: number;
  /** Longest chunk-size line including extensions. */
  maxChunkLine: number;
  /** Largest trailer section. */
  maxTrailerBytes: number;
}

export const DEFAULT_PARSER_LIMITS: ParserLimits = {
  maxRequestLine: 16 * 1024,
  maxHeadBytes: 64 * 1024,
  maxHeaders: 256,
  maxChunkLine: 4096,
  maxTrailerBytes: 16 * 1024,
};

export class HttpParseError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpParseError';
  }
}

type State =
  | 'start'
  | 'headers'
  | 'body-length'
  | 'body-close'
  | 'chunk-size'
  | 'chunk-data'
  | 'chunk-data-end'
  | 'trailers'
  | 'failed';

const CR = 0x0d;
const LF = 0x0a;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/** A CR or LF inside a line: the line-by-line reader refuses it with its own message. */
function hasBareLineBreak(line: string): boolean {
  return line.indexOf('\r') !== -1 || line.indexOf('\n') !== -1;
}

/** Empty lines tolerated before a request line (RFC 9112 §2.2 "SHOULD ignore at least one"). */
const MAX_LEADING_EMPTY_LINES = 8;

/**
 * What requests and responses share: lines, header fields, and the framing
 * of the body (length, chunked with trailers, or — responses only — until the
 * connection closes). A subclass reads the start line and decides the framing.
 */
abstract class MessageParser<Head extends { framing: BodyFraming }> {
  protected readonly limits: ParserLimits;
  private buf: Buffer = Buffer.alloc(0);
  private state: State = 'start';
  private emptyLines = 0;
  private eof = false;
  // Per-message scratch.
  private fields: HeaderField[] = [];
  private headBytes = 0;
  private remaining = 0;
  private trailerBytes = 0;
  private head: Head | null = null;

  constructor(limits: Partial<ParserLimits> = {}) {
    this.limits = { ...DEFAULT_PARSER_LIMITS, ...limits };
  }

  /** `request` or `response`, for error messages. */
  protected abstract readonly kind: string;
  /** What the first line is called (`request line`, `status line`), for error messages. */
  protected abstract readonly firstLine: string;
  /** Parse the start line (throws HttpParseError); `finishHead` gets the result. */
  protected abstract startLine(line: string): void;
  protected abstract finishHead(fields: HeaderField[], headBytes: number): Head;
  /** Whether the start line just read opens a message (false: skip it, e.g. an interim 1xx response). */
  protected keepHead(_head: Head): boolean {
    return true;
  }

  feed(chunk: Buffer): void {
    if (this.state === 'failed' || chunk.length === 0) return;
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** The peer closed the connection: a body delimited by the close ends; anything else in progress is cut off. */
  feedEnd(): void {
    this.eof = true;
  }

  /** True once an error was returned; the parser accepts nothing more. */
  get failed(): boolean {
    return this.state === 'failed';
  }

  /** True while part of a message has arrived but not all of it (a close now truncates it). */
  get midMessage(): boolean {
    return this.state !== 'start' && this.state !== 'failed' ? true : this.state === 'start' && this.buf.length > 0;
  }

  /** How many bytes are held, received but not yet parsed. */
  get bufferedBytes(): number {
    return this.buf.length;
  }

  /** Bytes received but not yet parsed (after a CONNECT or an upgrade they belong to the new protocol). */
  takeBuffered(): Buffer {
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }

  /** The next event, or null when more bytes are needed. After `end` the next call starts the next message. */
  next(): ParseEvent<Head> | null {
    try {
      return this.step();
    } catch (err) {
      if (err instanceof HttpParseError) {
        this.state = 'failed';
        this.buf = Buffer.alloc(0);
        return { type: 'error', status: err.status, reason: err.message };
      }
      throw err;
    }
  }

  private step(): ParseEvent<Head> | null {
    for (;;) {
      switch (this.state) {
        case 'failed':
          return null;
        case 'start': {
          if (this.takeWholeHead()) {
            const event = this.completeHead();
            if (event === null) continue;
            return event;
          }
          const line = this.takeLine(this.limits.maxRequestLine, 414, `${this.firstLine} too long`);
          if (line === null) return this.cutOff(false);
          if (line.length === 0) {
            if (++this.emptyLines > MAX_LEADING_EMPTY_LINES) throw new HttpParseError(400, `too many empty lines before the ${this.firstLine}`);
            continue;
          }
          this.emptyLines = 0;
          this.startLine(line);
          this.fields = [];
          this.headBytes = line.length + 2;
          this.state = 'headers';
          continue;
        }
        case 'headers': {
          const got = this.takeField('header', this.limits.maxHeadBytes - this.headBytes, `${this.kind} header section too large`);
          if (got === null) return this.cutOff(true);
          if (got === 'field') continue;
          const event = this.completeHead();
          if (event === null) continue;
          return event;
        }
        case 'body-length': {
          if (this.remaining === 0) return this.endMessage([]);
          if (this.buf.length === 0) return this.cutOff(true);
          return { type: 'body', data: this.takeBytes(this.remaining) };
        }
        case 'body-close': {
          if (this.buf.length > 0) return { type: 'body', data: this.takeBytes(this.buf.length) };
          return this.eof ? this.endMessage([]) : null;
        }
        case 'chunk-size': {
          const line = this.takeLine(this.limits.maxChunkLine, 400, 'chunk size line too long');
          if (line === null) return this.cutOff(true);
          const size = parseChunkSizeLine(line);
          if (size === 0) {
            this.trailerBytes = 0;
            this.fields = [];
            this.state = 'trailers';
          } else {
            this.remaining = size;
            this.state = 'chunk-data';
          }
          continue;
        }
        case 'chunk-data': {
          if (this.buf.length === 0) return this.cutOff(true);
          const data = this.takeBytes(this.remaining);
          if (this.remaining === 0) this.state = 'chunk-data-end';
          return { type: 'body', data };
        }
        case 'chunk-data-end': {
          if (this.buf.length < 2) {
            if (this.buf.length === 1 && this.buf[0] !== CR) throw new HttpParseError(400, 'chunk data not followed by CRLF');
            return this.cutOff(true);
          }
          if (this.buf[0] !== CR || this.buf[1] !== LF) throw new HttpParseError(400, 'chunk data not followed by CRLF');
          this.buf = this.buf.subarray(2);
          this.state = 'chunk-size';
          continue;
        }
        case 'trailers': {
          const got = this.takeField('trailer', this.limits.maxTrailerBytes - this.trailerBytes, 'trailer section too large');
          if (got === null) return this.cutOff(true);
          if (got === 'field') continue;
          return this.endMessage(this.fields);
        }
      }
    }
  }

  /** The start line and fields are read: the head event, or null when the head is skipped (an interim 1xx). */
  private completeHead(): ParseEvent<Head> | null {
    const head = this.finishHead(this.fields, this.headBytes);
    if (!this.keepHead(head)) {
      this.state = 'start';
      return null;
    }
    this.head = head;
    if (head.framing.kind === 'length') {
      this.remaining = head.framing.length;
      this.state = 'body-length';
    } else if (head.framing.kind === 'chunked') {
      this.state = 'chunk-size';
    } else if (head.framing.kind === 'close') {
      this.state = 'body-close';
    } else {
      this.state = 'body-length';
      this.remaining = 0;
    }
    return { type: 'head', head };
  }

  /**
   * The common case in one pass: the whole head is buffered, within the
   * limits, and every line is well-formed. Then it is decoded as one latin1
   * string and split, instead of line by line (one buffer scan, copy and
   * slice per line). Anything unusual — leading empty lines, a line over a
   * limit, a bare CR or LF, a field the grammar refuses — returns false
   * with nothing consumed, and the line-by-line path reads the same bytes
   * and reports exactly what is wrong.
   */
  private takeWholeHead(): boolean {
    const buf = this.buf;
    if (buf.length < 4 || buf[0] === CR || buf[0] === LF) return false;
    const end = buf.indexOf(HEAD_END);
    if (end === -1) return false;
    const headBytes = end + 4;
    if (headBytes > this.limits.maxHeadBytes) return false;
    const text = buf.toString('latin1', 0, end + 2);
    let at = text.indexOf('\r\n');
    if (at > this.limits.maxRequestLine) return false;
    const first = text.slice(0, at);
    if (hasBareLineBreak(first)) return false;
    const fields: HeaderField[] = [];
    try {
      this.startLine(first);
      for (at += 2; at < text.length; ) {
        const next = text.indexOf('\r\n', at);
        const line = text.slice(at, next);
        if (hasBareLineBreak(line) || fields.length >= this.limits.maxHeaders) return false;
        fields.push(parseFieldLine(line, 'header'));
        at = next + 2;
      }
    } catch (err) {
      if (err instanceof HttpParseError) return false;
      throw err;
    }
    this.emptyLines = 0;
    this.fields = fields;
    this.headBytes = headBytes;
    this.buf = buf.subarray(headBytes);
    return true;
  }

  /** One line of a header or trailer section: a field (kept), the empty line that ends the section, or null when more bytes are needed. */
  private takeField(where: 'header' | 'trailer', room: number, tooLarge: string): 'field' | 'end' | null {
    const line = this.takeLine(room, 431, tooLarge);
    if (line === null) return null;
    if (where === 'header') this.headBytes += line.length + 2;
    else this.trailerBytes += line.length + 2;
    if (line.length === 0) return 'end';
    if (this.fields.length >= this.limits.maxHeaders) throw new HttpParseError(431, `too many ${where} fields`);
    this.fields.push(parseFieldLine(line, where));
    return 'field';
  }

  /** More bytes are needed: wait for them, unless the peer has closed (then the message is cut off). */
  private cutOff(inMessage: boolean): null {
    if (this.eof && (inMessage || this.buf.length > 0)) throw new HttpParseError(400, `connection closed in the middle of the ${this.kind}`);
    return null;
  }

  private endMessage(trailers: HeaderField[]): ParseEvent<Head> {
    const trailerBytes = this.head?.framing.kind === 'chunked' ? this.trailerBytes : 0;
    this.state = 'start';
    this.fields = [];
    this.head = null;
    return { type: 'end', trailers, trailerBytes };
  }

  private takeBytes(max: number): Buffer {
    const n = Math.min(max, this.buf.length);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    this.remaining -= n;
    return out;
  }

  /**
   * One CRLF-terminated line without its terminator, as latin1 text (so byte
   * values survive for validation), or null when incomplete. Bare LF and bare
   * CR are errors, not line ends.
   */
  private takeLine(max: number, status: number, tooLong: string): string | null {
    const lf = this.buf.indexOf(LF);
    if (lf === -1) {
      // Reject early rather than buffer an endless line; a lone CR must be the last byte.
      if (this.buf.length > max + 1) throw new HttpParseError(status, tooLong);
      const cr = this.buf.indexOf(CR);
      if (cr !== -1 && cr !== this.buf.length - 1) throw new HttpParseError(400, 'bare CR in message');
      return null;
    }
    // The first fault in the bytes is the one reported, so the reason does not depend on where
    // the packets happened to split: a CR before this line's end is a bare CR even when a bare
    // LF follows it.
    const cr = this.buf.indexOf(CR);
    if (cr !== -1 && cr < lf - 1) {
      if (cr >= max) throw new HttpParseError(status, tooLong);
      throw new HttpParseError(400, 'bare CR in message');
    }
    if (lf === 0 || this.buf[lf - 1] !== CR) throw new HttpParseError(400, 'bare LF in message (lines must end in CRLF)');
    if (lf - 1 > max) throw new HttpParseError(status, tooLong);
    const line = this.buf.toString('latin1', 0, lf - 1);
    this.buf = this.buf.subarray(lf + 1);
    return line;
  }
}

/** The request parser (the agent's side): see the module comment for what it refuses. */
export class Http1RequestParser extends MessageParser<RequestHead> {
  protected readonly kind = 'request';
  protected readonly firstLine = 'request line';
  private requestLine: { method: string; target: string; version: '1.0' | '1.1' } | null = null;

  protected startLine(line: string): void {
    this.requestLine = parseRequestLine(line);
  }

  protected finishHead(fields: HeaderField[], headBytes: number): RequestHead {
    return finishHead(this.requestLine!, fields, headBytes);
  }
}

export interface ResponseHead {
  version: '1.0' | '1.1';
  status: number;
  reason: string;
  headers: HeaderField[];
  /** `close`: the body runs until the upstream closes the connection. */
  framing: BodyFraming;
  /** Whether the connection may carry another request after this response. */
  keepAlive: boolean;
  /** Size of the status line and header section on the wire. */
  headBytes: number;
}

/**
 * The response parser (the upstream's side of a connection the gateway
 * opened). Framing is read the same strict way as requests — a response
 * whose framing could be read two ways would desynchronise a pooled
 * connection — plus what only responses have: no body after HEAD or for
 * 1xx/204/304, and a body delimited by the close when neither length nor
 * chunked is given. Interim 1xx responses (100, 102, 103) are skipped;
 * 101 is a head only when the request asked for an upgrade.
 */
export class Http1ResponseParser extends MessageParser<ResponseHead> {
  protected readonly kind = 'response';
  protected readonly firstLine = 'status line';
  private statusLine: { version: '1.0' | '1.1'; status: number; reason: string } | null = null;
  private method = 'GET';
  private upgrade = false;

  /** Before each request: what the next response answers. */
  expect(method: string, opts: { upgrade?: boolean } = {}): void {
    this.method = method;
    this.upgrade = opts.upgrade ?? false;
  }

  protected startLine(line: string): void {
    const m = /^HTTP\/1\.([01]) ([1-9][0-9]{2})(?: ([\t\x20-\x7e\x80-\xff]*))?$/.exec(line);
    if (!m) throw new HttpParseError(502, `malformed status line ${JSON.stringify(line.slice(0, 64))}`);
    this.statusLine = { version: m[1] === '1' ? '1.1' : '1.0', status: Number(m[2]), reason: m[3] ?? '' };
  }

  protected override keepHead(head: ResponseHead): boolean {
    return head.status >= 200 || (head.status === 101 && this.upgrade);
  }

  protected finishHead(headers: HeaderField[], headBytes: number): ResponseHead {
    const { version, status, reason } = this.statusLine!;
    const shaping = new ShapingFields(headers);
    if (status === 101 && !this.upgrade) throw new HttpParseError(502, '101 Switching Protocols to a request that asked for no upgrade');
    const keepAlive = version === '1.1' && !tokenList(shaping.connection).includes('close');
    if (status < 200 || status === 204 || status === 304 || this.method === 'HEAD') {
      // No body, whatever the fields say (RFC 9112 §6.3 rules 1–2).
      return { version, status, reason, headers, headBytes, framing: NO_BODY, keepAlive: keepAlive && status !== 101 };
    }
    const framing = bodyFraming(shaping['transfer-encoding'], shaping['content-length'], 502) ?? CLOSE_DELIMITED;
    return { version, status, reason, headers, headBytes, framing, keepAlive: keepAlive && framing.kind !== 'close' };
  }
}

// ───────────────────────────── grammar ──────────────────────────────────

/** RFC 9110 tchar. */
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Visible ASCII for the request-target; no obs-text, no fragment. */
const TARGET = /^[\x21-\x22\x24-\x7e]+$/;
/** field-content: VCHAR / obs-text / SP / HTAB — no other control characters. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** A request-target HTTP/1.1 accepts (and the gateway forwards): visible ASCII, no `#`. */
export function isRequestTarget(s: string): boolean {
  return TARGET.test(s);
}

export function isToken(s: string): boolean {
  return TCHAR.test(s);
}

/** A field value HTTP/1.1 can carry as is: visible latin1, SP and HTAB; no CR, LF, NUL or other controls. */
export function isFieldValue(s: string): boolean {
  return FIELD_VALUE.test(s);
}

function parseRequestLine(line: string): { method: string; target: string; version: '1.0' | '1.1' } {
  const parts = line.split(' ');
  if (parts.length !== 3) throw new HttpParseError(400, 'malformed request line');
  const [method, target, version] = parts as [string, string, string];
  if (!TCHAR.test(method)) throw new HttpParseError(400, 'invalid method');
  if (!TARGET.test(target)) throw new HttpParseError(400, 'invalid request-target');
  if (version === 'HTTP/1.1') return { method, target, version: '1.1' };
  if (version === 'HTTP/1.0') return { method, target, version: '1.0' };
  if (/^HTTP\/\d\.\d$/.test(version)) throw new HttpParseError(505, `unsupported HTTP version ${version}`);
  throw new HttpParseError(400, 'malformed HTTP version');
}

function parseFieldLine(line: string, where: 'header' | 'trailer'): HeaderField {
  const first = line.charCodeAt(0);
  if (first === 0x20 || first === 0x09) throw new HttpParseError(400, `obsolete line folding in ${where} section`);
  const colon = line.indexOf(':');
  if (colon <= 0) throw new HttpParseError(400, `malformed ${where} field line`);
  const name = line.slice(0, colon);
  if (!TCHAR.test(name)) throw new HttpParseError(400, `invalid ${where} field name ${JSON.stringify(name)}`);
  const rawValue = line.slice(colon + 1);
  const value = trimOws(rawValue);
  // HTAB is legal OWS, but `chunked\t` is read as an unknown coding by some
  // servers and as `chunked` by others: on framing fields, refuse it.
  if (rawValue.includes('\t') && FRAMING_FIELDS.has(name.toLowerCase())) {
    throw new HttpParseError(400, `tab in ${name} field`);
  }
  if (!FIELD_VALUE.test(value)) throw new HttpParseError(400, `invalid character in ${where} field ${name}`);
  return { name, value };
}

const FRAMING_FIELDS = new Set(['transfer-encoding', 'content-length']);

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return s.slice(a, b);
}

/**
 * The fields that shape a message, grouped by lower-case name in one pass
 * (heads are parsed for every request). Absent fields share one empty list.
 */
class ShapingFields {
  'transfer-encoding': readonly HeaderField[] = NONE;
  'content-length': readonly HeaderField[] = NONE;
  host: readonly HeaderField[] = NONE;
  connection: readonly HeaderField[] = NONE;
  expect: readonly HeaderField[] = NONE;
  upgrade: readonly HeaderField[] = NONE;

  constructor(headers: readonly HeaderField[]) {
    for (const h of headers) {
      // Only names as long as a shaping field's are lower-cased and compared.
      if (!SHAPING_LENGTHS.has(h.name.length)) continue;
      const key = h.name.toLowerCase();
      if (!SHAPING_FIELDS.has(key)) continue;
      const k = key as ShapingName;
      this[k] = this[k] === NONE ? [h] : [...this[k], h];
    }
  }
}
type ShapingName = 'transfer-encoding' | 'content-length' | 'host' | 'connection' | 'expect' | 'upgrade';
const SHAPING_FIELDS = new Set<string>(['transfer-encoding', 'content-length', 'host', 'connection', 'expect', 'upgrade'] satisfies ShapingName[]);
const SHAPING_LENGTHS = new Set([...SHAPING_FIELDS].map((n) => n.length));
const NONE: readonly HeaderField[] = [];
const NO_TOKENS: readonly string[] = [];

/** Lower-case tokens of a comma-separated list field (Connection, Upgrade). */
function tokenList(fields: readonly HeaderField[]): readonly string[] {
  if (fields.length === 0) return NO_TOKENS;
  const out: string[] = [];
  for (const { value: v } of fields) {
    for (const el of v.split(',')) {
      const t = trimOws(el).toLowerCase();
      if (t) out.push(t);
    }
  }
  return out;
}

function finishHead(
  line: { method: string; target: string; version: '1.0' | '1.1' },
  headers: HeaderField[],
  headBytes: number,
): RequestHead {
  const shaping = new ShapingFields(headers);
  const te = shaping['transfer-encoding'];
  const cl = shaping['content-length'];

  if (line.version === '1.1') {
    const hosts = shaping.host;
    if (hosts.length === 0) throw new HttpParseError(400, 'missing Host header');
    if (hosts.length > 1) throw new HttpParseError(400, 'more than one Host header');
  } else if (shaping.host.length > 1) {
    throw new HttpParseError(400, 'more than one Host header');
  }

  if (te.length > 0 && line.version === '1.0') throw new HttpParseError(400, 'Transfer-Encoding on an HTTP/1.0 request');
  const framing: BodyFraming = bodyFraming(te, cl, 400) ?? NO_BODY;

  if (line.method === 'CONNECT' && framing.kind !== 'none') {
    throw new HttpParseError(400, 'CONNECT request with content');
  }

  const connection = tokenList(shaping.connection);
  const keepAlive =
    line.version === '1.1' ? !connection.includes('close') : connection.includes('keep-alive') && !connection.includes('close');

  let expectContinue = false;
  const expect = shaping.expect;
  if (expect.length > 0 && line.version === '1.1') {
    const values = tokenList(expect);
    if (values.length !== 1 || values[0] !== '100-continue') {
      throw new HttpParseError(417, `unsupported expectation ${JSON.stringify(expect.map((h) => h.value).join(', '))}`);
    }
    expectContinue = true;
  }

  let upgrade: string | null = null;
  const upgrades = tokenList(shaping.upgrade);
  if (connection.includes('upgrade') && upgrades.length > 0) {
    upgrade = upgrades[0]!.split('/')[0]!;
  }

  return {
    method: line.method,
    target: line.target,
    version: line.version,
    headers,
    framing,
    keepAlive,
    expectContinue,
    upgrade,
    headBytes,
  };
}

// Shared, frozen: framings without data are the same for every message.
const NO_BODY: BodyFraming = Object.freeze({ kind: 'none' });
const CHUNKED: BodyFraming = Object.freeze({ kind: 'chunked' });
const CLOSE_DELIMITED: BodyFraming = Object.freeze({ kind: 'close' });

/**
 * The body framing named by Transfer-Encoding / Content-Length, read one way
 * only (null when neither is present); `status` is what a violation answers.
 */
function bodyFraming(te: readonly HeaderField[], cl: readonly HeaderField[], status: number): BodyFraming | null {
  if (te.length > 0 && cl.length > 0) {
    throw new HttpParseError(status, 'both Content-Length and Transfer-Encoding (ambiguous framing)');
  }
  if (te.length > 0) {
    if (te.length > 1) throw new HttpParseError(status, 'more than one Transfer-Encoding field');
    const raw = te[0]!.value;
    // Accept exactly one `chunked`: lists, empty elements, parameters or tabs are
    // read differently by different servers, and we re-frame the body anyway.
    if (raw.toLowerCase() !== 'chunked') {
      throw new HttpParseError(status, `unsupported or malformed Transfer-Encoding ${JSON.stringify(raw)}`);
    }
    return CHUNKED;
  }
  if (cl.length > 0) {
    if (cl.length > 1) throw new HttpParseError(status, 'more than one Content-Length field');
    const raw = cl[0]!.value;
    if (!/^[0-9]{1,15}$/.test(raw)) throw new HttpParseError(status, `invalid Content-Length ${JSON.stringify(raw)}`);
    const length = Number(raw);
    return length === 0 ? NO_BODY : { kind: 'length', length };
  }
  return null;
}

/**
 * `chunk-size [ chunk-ext ]` (RFC 9112 §7.1): 1–16 hex digits, then zero or
 * more `;name[=value]` with optional whitespace around `;` and `=` (BWS).
 */
function parseChunkSizeLine(line: string): number {
  const m = /^([0-9A-Fa-f]{1,16})(.*)$/.exec(line);
  if (!m) throw new HttpParseError(400, `invalid chunk size ${JSON.stringify(line.slice(0, 32))}`);
  validateChunkExtensions(m[2]!);
  const size = parseInt(m[1]!, 16);
  if (!Number.isSafeInteger(size)) throw new HttpParseError(400, 'chunk size too large');
  return size;
}

const CHUNK_EXT = /^[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?/;

function validateChunkExtensions(rest: string): void {
  let s = rest;
  while (s.length > 0) {
    const m = CHUNK_EXT.exec(s);
    if (!m) throw new HttpParseError(400, 'malformed chunk extension');
    s = s.slice(m[0].length);
  }
}
