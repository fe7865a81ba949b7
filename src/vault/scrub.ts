/**
 * The scrubber: removes every secret the gateway injected — and the ways an
 * upstream may echo it back encoded — from bytes flowing to the agent and
 * into logs, also when a value is split across chunks.
 *
 * Forms matched for each secret (UTF-8 bytes):
 *   - raw;
 *   - JSON string escapes: minimal (`JSON.stringify`), with `\/`, ASCII-only
 *     (`\uXXXX` for non-ASCII: Python lower case, Jackson upper, PHP also with
 *     `\/`), HTML-safe (`\u003c` `\u003e`
 *     `\u0026`, as Go), as .NET's System.Text.Json writes it (also `+ ' \` "`,
 *     upper case), and every character `\u`-escaped (both hex cases);
 *   - base64 and base64url at each of the three byte alignments the value can
 *     sit at inside a longer encoded blob (only the characters determined by
 *     the secret's bytes alone — so padded and unpadded encodings both match),
 *     and base64 of its base64 (one level of nesting);
 *   - hex, lower and upper case;
 *   - URL encoding: `encodeURIComponent`, strict RFC 3986, form encoding
 *     (space as `+`; also as URLSearchParams, Java and PHP write it) and every
 *     byte percent-encoded, each in both hex cases.
 *
 * Replacement: every matched byte becomes `*` (0x2A). Lengths never change,
 * so Content-Length, chunk sizes, Postgres/ClickHouse message lengths and
 * byte offsets the engines computed stay valid; `*` needs no escaping in
 * JSON strings, headers, URLs or SQL text. The edges of a base64 form (at
 * most one character each side, ≤ 6 bits) can stay visible.
 *
 * Values shorter than MIN_SECRET_BYTES are not scrubbed: redacting every
 * occurrence of a two-letter password would destroy unrelated output.
 *
 * Matching: a skip prefilter (Wu–Manber) in front of one Aho–Corasick
 * automaton over bytes. Every form is at least `window` bytes long (the
 * shortest form of any secret), so the scan looks only at the last two bytes
 * of each `window`-byte stretch and usually moves on by nearly a whole window;
 * the automaton (a dense transition table, cost per byte independent of the
 * number of secrets) runs only where a form may start. The automaton's
 * position and the window both only move forward, so input built to make every
 * window a candidate costs what the automaton alone costs — never more.
 * Typical bodies are scanned at several GiB/s (bench/http/scrub.ts).
 *
 * The streaming form keeps the automaton's state across chunks and holds
 * back only the bytes that could still grow into a form (at most the longest
 * form minus one), emitting everything else immediately.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { createHash } from 'node:crypto';

export const REDACTION_BYTE = 0x2a;
export const MIN_SECRET_BYTES = 4;
/** Encoded forms shorter than this are too likely to occur by chance (e.g. a 2-character base64 core). */
const MIN_FORM_BYTES = 4;

// ─────────────────────────── forms ───────────────────────────

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Base64 characters of `bytes` that do not depend on neighbours, for each of the three alignments. */
function base64Cores(bytes: Buffer): string[] {
  const cores: string[] = [];
  for (let k = 0; k < 3; k++) {
    const padded = Buffer.concat([Buffer.alloc(k), bytes, Buffer.alloc(3)]);
    const enc = padded.toString('base64');
    // character i covers bits [6i, 6i+6); the secret occupies bits [8k, 8(k+n))
    const first = Math.ceil((8 * k) / 6);
    const end = Math.floor((8 * (k + bytes.length)) / 6);
    if (end > first) cores.push(enc.slice(first, end));
  }
  return cores;
}

function toUrlAlphabet(s: string): string {
  return s.replace(/\+/g, '-').replace(/\//g, '_');
}

function percentAll(bytes: Buffer, upper: boolean): string {
  let out = '';
  for (const b of bytes) out += '%' + (upper ? b.toString(16).toUpperCase() : b.toString(16)).padStart(2, '0');
  return out;
}

function strictUriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}

/**
 * application/x-www-form-urlencoded as WHATWG URLSearchParams and Java's
 * URLEncoder write it: unlike encodeURIComponent they encode `~ ! ' ( )` and
 * keep `*`, so a password holding any of those matched neither URI form.
 */
function formEncode(s: string): string {
  return new URLSearchParams([['', s]]).toString().slice(1);
}

function lowerPercentHex(s: string): string {
  return s.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase());
}

/** The JSON `\uXXXX` escape of one UTF-16 unit, in lower- or upper-case hex. */
function unicodeEscape(unit: string, upper: boolean): string {
  const h = unit.charCodeAt(0).toString(16).padStart(4, '0');
  return '\\u' + (upper ? h.toUpperCase() : h);
}

function jsonEscapeAll(s: string, upper: boolean): string {
  let out = '';
  for (let i = 0; i < s.length; i++) out += unicodeEscape(s[i]!, upper);
  return out;
}

function jsonAsciiOnly(inner: string, upper: boolean): string {
  return inner.replace(/[\u007f-\uffff]/g, (c) => unicodeEscape(c, upper));
}

/**
 * As .NET's System.Text.Json writes a string by default (JavaScriptEncoder.Default): non-ASCII and
 * the HTML-sensitive `" & ' + < > \`` as upper-case `\uXXXX` — `+` included, so every base64 token
 * with a `+` in it came back in a form no other escaping produces.
 */
function jsonDotNet(inner: string): string {
  return jsonAsciiOnly(inner, true)
    .replace(/\\"/g, '\\u0022')
    .replace(/[&'+<>`]/g, (c) => unicodeEscape(c, true));
}

function jsonHtmlSafe(inner: string): string {
  return inner.replace(/[<>&\u2028\u2029]/g, (c) => unicodeEscape(c, false));
}

/**
 * Values longer than this (PEM keys and certificates) get only the forms an
 * echo of them plausibly takes — raw and JSON-escaped (and, as for every PEM,
 * each body line on its own, so a partial echo is caught) — instead of every
 * encoding: the encoded forms of a 2 KB key would cost tens of MB of automaton.
 */
const LONG_VALUE_BYTES = 256;
const PEM_LINE_MIN = 16;

/** Every byte form of one secret the scrubber looks for (deduplicated). */
export function secretForms(value: string): Buffer[] {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length < MIN_SECRET_BYTES) return [];
  const text = new Set<string>();
  const jsonInner = JSON.stringify(value).slice(1, -1);
  // ASCII-only escapes come in both hex cases (Python lower, Jackson's ESCAPE_NON_ASCII upper) and
  // with `\/` too (PHP's json_encode escapes both by default): each combination is a distinct form.
  for (const ascii of [jsonAsciiOnly(jsonInner, false), jsonAsciiOnly(jsonInner, true)]) text.add(ascii).add(ascii.replace(/\//g, '\\/'));
  for (const j of [jsonInner, jsonInner.replace(/\//g, '\\/'), jsonHtmlSafe(jsonInner), jsonDotNet(jsonInner)]) text.add(j);
  if (/-----BEGIN [A-Z0-9 ]+-----/.test(value)) {
    // Each base64 line of a PEM on its own: an upstream may echo part of a certificate or key.
    for (const line of value.split(/\r?\n/)) {
      if (line.length < PEM_LINE_MIN || line.startsWith('-----')) continue;
      text.add(line);
      text.add(line.replace(/\//g, '\\/'));
    }
  }
  if (bytes.length <= LONG_VALUE_BYTES) {
    text.add(jsonEscapeAll(value, false));
    text.add(jsonEscapeAll(value, true));
    for (const core of base64Cores(bytes)) {
      text.add(core);
      text.add(toUrlAlphabet(core));
      text.add(core.replace(/\//g, '\\/'));
    }
    for (const core of base64Cores(Buffer.from(bytes.toString('base64')))) text.add(core);
    text.add(bytes.toString('hex'));
    text.add(bytes.toString('hex').toUpperCase());
    const uri = encodeURIComponent(value);
    const strict = strictUriEncode(value);
    const form = formEncode(value);
    // PHP's urlencode is the WHATWG form with `*` encoded too.
    const php = form.replace(/\*/g, '%2A');
    for (const u of [uri, strict, uri.replace(/%20/g, '+'), strict.replace(/%20/g, '+'), form, php, percentAll(bytes, true)]) {
      text.add(u);
      text.add(lowerPercentHex(u));
    }
  }
  const forms = new Map<string, Buffer>();
  forms.set(bytes.toString('latin1'), bytes);
  for (const t of text) {
    const b = Buffer.from(t, 'utf8');
    if (b.length >= MIN_FORM_BYTES) forms.set(b.toString('latin1'), b);
  }
  return [...forms.values()];
}

// ─────────────────────────── matcher ───────────────────────────

interface Automaton {
  /** Byte → class (0 = a byte no pattern contains). */
  classes: Uint16Array;
  classCount: number;
  /** Dense transitions: next = delta[state * classCount + class] (16-bit when the states fit). */
  delta: Uint32Array | Uint16Array;
  /** Length of the longest pattern ending in this state, 0 if none. */
  out: Uint32Array;
  /**
   * Length of the longest suffix of the state's string that can still grow
   * into a match (a complete form that no longer form extends is not counted):
   * how many trailing bytes to hold back.
   */
  live: Uint32Array;
  maxLen: number;
}

function compile(patterns: Buffer[]): Automaton {
  // Byte classes keep the table narrow: bytes no pattern uses all share class 0.
  const classes = new Uint16Array(256);
  let classCount = 1;
  for (const p of patterns) for (const b of p) if (classes[b] === 0) classes[b] = classCount++;

  // Trie.
  const children: Array<Map<number, number>> = [new Map()];
  const depth: number[] = [0];
  const terminal: number[] = [0];
  for (const p of patterns) {
    let s = 0;
    for (const b of p) {
      const c = classes[b]!;
      let next = children[s]!.get(c);
      if (next === undefined) {
        next = children.length;
        children.push(new Map());
        depth.push(depth[s]! + 1);
        terminal.push(0);
        children[s]!.set(c, next);
      }
      s = next;
    }
    terminal[s] = Math.max(terminal[s]!, p.length);
  }

  const n = children.length;
  const delta = n <= 0xffff ? new Uint16Array(n * classCount) : new Uint32Array(n * classCount);
  const out = new Uint32Array(n);
  const fail = new Uint32Array(n);
  // Breadth-first: a state's failure target is always shallower, hence complete, when we reach it.
  const queue: number[] = [];
  for (let c = 0; c < classCount; c++) {
    const next = children[0]!.get(c);
    if (next !== undefined) {
      delta[c] = next;
      fail[next] = 0;
      queue.push(next);
    }
  }
  for (let qi = 0; qi < queue.length; qi++) {
    const s = queue[qi]!;
    out[s] = terminal[s]! || out[fail[s]!]!;
    const row = s * classCount;
    const failRow = fail[s]! * classCount;
    for (let c = 0; c < classCount; c++) {
      const next = children[s]!.get(c);
      if (next !== undefined) {
        fail[next] = delta[failRow + c]!;
        delta[row + c] = next;
        queue.push(next);
      } else {
        delta[row + c] = delta[failRow + c]!;
      }
    }
  }
  // A state without children can only have completed a match: what may still grow is its failure state's suffix.
  const live = new Uint32Array(n);
  for (const s of queue) live[s] = children[s]!.size > 0 ? depth[s]! : live[fail[s]!]!;
  const maxLen = patterns.reduce((m, p) => Math.max(m, p.length), 0);
  return { classes, classCount, delta, out, live, maxLen };
}

/**
 * The prefilter (Wu–Manber): every form is at least `window` bytes long, so
 * the scan looks at windows of that length and reads only the last two bytes
 * of each. `shift[pair]` is how far the window may move right without passing
 * over the start of any form — the smallest distance from where that pair
 * occurs in the first `window` bytes of some form to that prefix's end, or
 * `window - 1` when the pair occurs in none. 0 means a form may start at the
 * window's first byte; only there does the automaton run.
 */
interface SkipTable {
  window: number;
  shift: Uint8Array;
}

function skipTable(patterns: Buffer[], prefilter: boolean): SkipTable {
  const window = patterns.reduce((m, p) => Math.min(m, p.length), Infinity);
  // Without the prefilter every window is a candidate: the automaton reads every byte.
  const shift = new Uint8Array(65536).fill(prefilter ? Math.min(255, window - 1) : 0);
  for (const p of patterns) {
    for (let j = 1; j < window; j++) {
      const pair = (p[j - 1]! << 8) | p[j]!;
      shift[pair] = Math.min(shift[pair]!, window - 1 - j);
    }
  }
  return { window, shift };
}

export interface ScanResult {
  /** The bytes with every match overwritten (`buf` itself, or `owned`, when nothing matched). */
  output: Buffer;
  /** Automaton state after the last byte: pass it to the next scan of the same stream. */
  state: number;
  /** Trailing bytes of `output` that could still be the start of a form: hold them back. */
  hold: number;
}

// ─────────────────────────── scrubber ───────────────────────────

export class Scrubber {
  /** Longest form in bytes; a stream holds back at most this minus one. */
  readonly maxPatternLength: number;
  private readonly ac: Automaton | null;
  private readonly skip: SkipTable | null;

  /** `prefilter: false` runs the automaton over every byte (the benchmark's baseline). */
  constructor(values: Iterable<string>, opts: { prefilter?: boolean } = {}) {
    const patterns = new Map<string, Buffer>();
    for (const v of values) for (const f of secretForms(v)) patterns.set(f.toString('latin1'), f);
    const list = [...patterns.values()];
    this.ac = list.length ? compile(list) : null;
    this.skip = list.length ? skipTable(list, opts.prefilter ?? true) : null;
    this.maxPatternLength = this.ac?.maxLen ?? 0;
  }

  get empty(): boolean {
    return this.ac === null;
  }

  /** A copy of `input` with every secret form overwritten by `*` (same length). Returns `input` itself when nothing matched. */
  scrubBuffer(input: Buffer): Buffer {
    if (!this.ac || input.length === 0) return input;
    return this.scan(input, 0, 0, null, false).output;
  }

  scrubText(text: string): string {
    // A UTF-16 unit is at most 3 UTF-8 bytes: text this short cannot hold the shortest form.
    if (!this.ac || text.length * 3 < this.skip!.window) return text;
    const bytes = Buffer.from(text, 'utf8');
    const out = this.scrubBuffer(bytes);
    return out === bytes ? text : out.toString('utf8');
  }

  /** Strings anywhere in a JSON-like value (object keys included), scrubbed; other values copied as is. */
  scrubDeep<T>(value: T): T {
    if (!this.ac) return value;
    return this.deep(value, 0) as T;
  }

  /** A Transform for byte streams; see the module comment for what it holds back. */
  stream(): Transform {
    return new ScrubStream(this.cursor());
  }

  /** The streaming scrubber without a stream around it, for adapters that pump bytes themselves. */
  cursor(): ScrubCursor {
    return new ScrubCursor(this);
  }

  /**
   * Scrub `buf`, whose first `from` bytes were held back by the previous scan
   * of the same stream (`state` is that scan's state; 0 and 0 for a new
   * stream). Matches may reach back into those bytes. Writes into `owned`
   * (which must be `buf`) when given, else into a copy made on the first
   * match. `keepState: false` skips computing the state (one-shot use).
   * @internal
   */
  scan(buf: Buffer, from: number, state: number, owned: Buffer | null, keepState = true): ScanResult {
    const { classes, classCount, delta, out, live, maxLen } = this.ac!;
    const { window, shift } = this.skip!;
    const n = buf.length;
    // Matches as [start, end) pairs; written after the scan, which must keep reading the original bytes.
    let spans: number[] | null = null;

    // 1. Forms that may have begun in the held bytes: the automaton, started in
    //    the previous scan's state, runs until each has matched or died.
    let s = state;
    let at = from;
    while (at < n && at - live[s]! < from) {
      s = delta[s * classCount + classes[buf[at]!]!]!;
      at++;
      const len = out[s]!;
      if (len !== 0) (spans ??= []).push(at - len, at);
    }

    // 2. The rest: skip window by window; where a form may start, let the
    //    automaton settle that start. The automaton's position only moves
    //    forward, and so does the window: the work is linear in the input
    //    even when every window is a candidate.
    let pos = at - live[s]! + window - 1;
    while (pos < n) {
      const step = shift[(buf[pos - 1]! << 8) | buf[pos]!]!;
      if (step !== 0) {
        pos += step;
        continue;
      }
      const start = pos - window + 1;
      if (start >= at) {
        // Every earlier start is settled (each was a candidate in turn): start afresh here.
        s = 0;
        at = start;
      }
      while (at < n && at - live[s]! <= start) {
        s = delta[s * classCount + classes[buf[at]!]!]!;
        at++;
        const len = out[s]!;
        if (len !== 0) (spans ??= []).push(at - len, at);
      }
      // Starts before the automaton's live suffix are settled too: skip their windows.
      pos = Math.max(pos + 1, at - live[s]! + window - 1);
    }

    // 3. The state after the last byte, for the next chunk: its longest
    //    suffix that may still grow into a form. One at least `window` long
    //    began at a candidate the automaton is still following (so it reached
    //    the end); a shorter one lies in the last `window - 1` bytes. Short
    //    inputs simply continue the previous state.
    let end = 0;
    if (keepState) {
      if (n - from < maxLen) {
        end = state;
        for (let i = from; i < n; i++) end = delta[end * classCount + classes[buf[i]!]!]!;
      } else {
        for (let i = n - window + 1; i < n; i++) end = delta[end * classCount + classes[buf[i]!]!]!;
        if (at === n && live[s]! > live[end]!) end = s;
      }
    }

    let target = owned;
    if (spans !== null) {
      target ??= Buffer.from(buf);
      // Overlapping spans are all filled: a longer match may cover bytes before a shorter one.
      for (let k = 0; k < spans.length; k += 2) target.fill(REDACTION_BYTE, Math.max(0, spans[k]!), spans[k + 1]!);
    }
    return { output: target ?? buf, state: end, hold: Math.min(live[end]!, n) };
  }

  private scrubFlattened(value: object): string {
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch {
      // Too deep for the stack, or not JSON: drop it rather than risk a secret.
    }
    return text === undefined ? '[not recorded: nested too deeply to scrub]' : this.scrubText(text);
  }

  private deep(value: unknown, level: number): unknown {
    if (typeof value === 'string') return this.scrubText(value);
    if (value === null || typeof value !== 'object') return value;
    if (Buffer.isBuffer(value)) return this.scrubBuffer(value);
    // Past the recursion limit the subtree must not pass unscrubbed (it did, secrets included):
    // it becomes its JSON text, scrubbed, or a marker when even that cannot be produced.
    if (level > DEEP_LIMIT) return this.scrubFlattened(value);
    if (Array.isArray(value)) return value.map((v) => this.deep(v, level + 1));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      // defineProperty, not assignment: a `__proto__` key from a parsed body must stay data.
      Object.defineProperty(out, this.scrubText(k), { value: this.deep(v, level + 1), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
}

/**
 * One byte stream through the scrubber: `push` returns what may be released
 * now (everything except a tail that could still begin a secret), `end`
 * returns the tail.
 */
export class ScrubCursor {
  private held: Buffer | null = null;
  private state = 0;

  constructor(private readonly scrubber: Scrubber) {}

  push(chunk: Buffer): Buffer {
    if (this.scrubber.empty || chunk.length === 0) return chunk;
    const held = this.held;
    const joined = held ? Buffer.concat([held, chunk]) : chunk;
    const from = held ? held.length : 0;
    const r = this.scrubber.scan(joined, from, this.state, held ? joined : null);
    this.state = r.state;
    const emit = r.output.length - r.hold;
    // Copy the held tail so a large chunk is not kept alive by a few bytes.
    this.held = r.hold ? Buffer.from(r.output.subarray(emit)) : null;
    return r.output.subarray(0, emit);
  }

  end(): Buffer {
    const tail = this.held ?? EMPTY;
    this.held = null;
    this.state = 0;
    return tail;
  }
}

const EMPTY = Buffer.alloc(0);
/** scrubDeep recurses this deep; below it a subtree is scrubbed as JSON text. */
const DEEP_LIMIT = 64;

class ScrubStream extends Transform {
  constructor(private readonly cursor: ScrubCursor) {
    super();
  }

  override _transform(chunk: Buffer | string, encoding: BufferEncoding, cb: TransformCallback): void {
    const out = this.cursor.push(typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk);
    cb(null, out.length ? out : undefined);
  }

  override _flush(cb: TransformCallback): void {
    const tail = this.cursor.end();
    cb(null, tail.length ? tail : undefined);
  }
}

// ─────────────────────────── shared instances ───────────────────────────

const cache = new Map<string, Scrubber>();
const CACHE_SIZE = 64;

/** A scrubber for this set of values, shared while the set is unchanged (engines ask per connection). */
export function scrubberFor(values: readonly string[]): Scrubber {
  const h = createHash('sha256');
  for (const v of [...values].sort()) h.update(v).update('\0');
  const key = h.digest('hex');
  const hit = cache.get(key);
  if (hit) {
    cache.delete(key);
    cache.set(key, hit);
    return hit;
  }
  const s = new Scrubber(values);
  cache.set(key, s);
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as string);
  return s;
}
