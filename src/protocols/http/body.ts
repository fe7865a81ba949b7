/**
 * Request body inspection: what `http.body` / `http.body_json` say about the
 * bytes the client sent. The original bytes are always what goes upstream;
 * this only decides what the rules see.
 *
 * - Content-Encoding `gzip`/`x-gzip`, `deflate` (zlib or raw) and `br` are
 *   decoded, in reverse order of application, with the decoded size capped at
 *   the body limit (zip-bomb guard). `identity` is a no-op.
 * - Anything that cannot be inspected — over the limit, an unknown coding,
 *   a corrupt stream, output past the cap — gives `body_truncated: true`, so
 *   every rule that reads the body fails closed.
 * - `body_json` is parsed whatever the Content-Type says (JSON sent as
 *   `application/octet-stream` is still JSON to the upstream). A JSON object
 *   with a repeated key is not inspectable: parsers disagree on which value
 *   wins, so the rules could see a different value than the upstream uses.
 */
import zlib from 'node:zlib';

export interface BodyFacts {
  body: string;
  body_json: unknown;
  body_truncated?: boolean;
}

export const EMPTY_BODY: BodyFacts = Object.freeze({ body: '', body_json: {} }) as BodyFacts;
const UNKNOWN_BODY: BodyFacts = Object.freeze({ body: '', body_json: {}, body_truncated: true }) as BodyFacts;

export interface InspectOptions {
  /** False when the client sent more than `limit` bytes (only a prefix is held). */
  complete: boolean;
  /** The request's Content-Encoding field value(s), combined. */
  contentEncoding?: string | undefined;
  /** The request's Content-Type (its `charset` says how the text is encoded). */
  contentType?: string | undefined;
  /** `limits.body_buffer`: cap for both the raw and the decoded body. */
  limit: number;
}

export function inspectBody(bytes: Buffer, opts: InspectOptions): BodyFacts {
  if (!opts.complete || bytes.length > opts.limit) return UNKNOWN_BODY;
  if (bytes.length === 0) return EMPTY_BODY;
  const decoded = decodeContent(bytes, opts.contentEncoding, opts.limit);
  if (decoded === null) return UNKNOWN_BODY;
  const body = decodeText(decoded, opts.contentType);
  if (body === null) return UNKNOWN_BODY;
  const json = parseJsonBody(body);
  if (json === AMBIGUOUS) return UNKNOWN_BODY;
  return { body, body_json: json === NOT_JSON ? {} : json };
}

const utf16le = new TextDecoder('utf-16le');
const utf16be = new TextDecoder('utf-16be');

/**
 * The body as text, in the encoding the upstream will read it in. Servers
 * honour a UTF-16 `charset` or byte-order mark (Express's body-parser,
 * ASP.NET): read as UTF-8, such a JSON body would be `{}` to the rules while
 * the upstream acts on its fields. UTF-16 is decoded; what cannot be read
 * reliably (UTF-32, `charset=utf-16` without a BOM, whose byte order servers
 * guess differently) is null — unknown, so rules that read the body fail closed.
 */
function decodeText(bytes: Buffer, contentType: string | undefined): string | null {
  const b0 = bytes[0];
  const b1 = bytes[1];
  if ((b0 === 0xff && b1 === 0xfe && bytes[2] === 0 && bytes[3] === 0) || (b0 === 0 && b1 === 0 && bytes[2] === 0xfe && bytes[3] === 0xff)) return null;
  // TextDecoder drops the BOM itself.
  if (b0 === 0xff && b1 === 0xfe) return utf16le.decode(bytes);
  if (b0 === 0xfe && b1 === 0xff) return utf16be.decode(bytes);
  const charset = contentType === undefined ? undefined : /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1]?.toLowerCase();
  if (charset === 'utf-16le') return utf16le.decode(bytes);
  if (charset === 'utf-16be') return utf16be.decode(bytes);
  if (charset !== undefined && /^(?:utf-?16|utf-?32|ucs-?[24])/.test(charset)) return null;
  return bytes.toString('utf8');
}

/** Decoded bytes, or null when the encoding is unknown, corrupt, or expands past `cap`. */
export function decodeContent(bytes: Buffer, contentEncoding: string | undefined, cap: number): Buffer | null {
  let data = bytes;
  for (const coding of contentCodings(contentEncoding).reverse()) {
    const opts = { maxOutputLength: Math.max(cap, 1) };
    try {
      if (coding === 'gzip' || coding === 'x-gzip') data = zlib.gunzipSync(data, opts);
      else if (coding === 'br') data = zlib.brotliDecompressSync(data, opts);
      else if (coding === 'deflate') data = inflateEither(data, opts);
      else return null;
    } catch {
      return null;
    }
    if (data.length > cap) return null;
  }
  return data;
}

/** A Content-Encoding value as the list of codings in the order they were applied, lower case, `identity` left out. */
export function contentCodings(contentEncoding: string | undefined): string[] {
  return (contentEncoding ?? '')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
}

/** RFC 9110 says zlib-wrapped; some clients send raw deflate. Accept both. */
function inflateEither(data: Buffer, opts: zlib.ZlibOptions): Buffer {
  try {
    return zlib.inflateSync(data, opts);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw err;
    return zlib.inflateRawSync(data, opts);
  }
}

const NOT_JSON = Symbol('not-json');
const AMBIGUOUS = Symbol('ambiguous-json');

function parseJsonBody(text: string): unknown {
  const t = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch {
    return NOT_JSON;
  }
  if (hasDuplicateKeys(t)) return AMBIGUOUS;
  return value;
}

/**
 * Scan already-valid JSON text for an object with a repeated key. Only runs
 * after JSON.parse succeeded, so the grammar is known to be well-formed.
 * String contents are skipped with `indexOf` (an agent's LLM call is mostly
 * long strings), and a key is decoded only when it holds an escape.
 */
export function hasDuplicateKeys(json: string): boolean {
  // Stack of key sets for open containers; null marks an array.
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  let i = 0;
  while (i < json.length) {
    const c = json.charCodeAt(i);
    if (c === OPEN_BRACE) {
      stack.push(new Set());
      expectKey = true;
      i++;
    } else if (c === OPEN_BRACKET) {
      stack.push(null);
      expectKey = false;
      i++;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      stack.pop();
      expectKey = false;
      i++;
    } else if (c === COMMA) {
      expectKey = stack[stack.length - 1] instanceof Set;
      i++;
    } else if (c === QUOTE) {
      const end = closingQuote(json, i + 1);
      if (expectKey) {
        const raw = json.slice(i + 1, end);
        const key = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        const keys = stack[stack.length - 1] as Set<string>;
        if (keys.has(key)) return true;
        keys.add(key);
        expectKey = false;
      }
      i = end + 1;
    } else {
      i++;
    }
  }
  return false;
}

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Index of the quote that closes the string whose contents start at `from`
 * (one preceded by an even run of backslashes); the text's length when
 * there is none (not JSON.parse-valid text: never loop on it).
 */
function closingQuote(json: string, from: number): number {
  let q = json.indexOf('"', from);
  for (;;) {
    if (q === -1) return json.length;
    let backslashes = 0;
    while (json.charCodeAt(q - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return q;
    q = json.indexOf('"', q + 1);
  }
}
