/**
 * Path normalisation: the path rules see is the path the upstream resolves,
 * because the gateway forwards the same canonical form it decided on.
 *
 * From the raw request path:
 *  1. `\` becomes `/` (WHATWG URL parsing, used by browsers and most Node and
 *     Go-adjacent stacks, treats it as a separator for http(s)).
 *  2. Every `%XX` must be two hex digits. Escapes of unreserved characters
 *     (`A–Z a–z 0–9 - . _ ~`) are decoded (`%72efunds` → `refunds`, `%2e%2e` →
 *     `..`); all other escapes stay encoded with upper-case hex.
 *  3. Dot segments are removed (RFC 3986 §5.2.4; `..` never climbs above `/`)
 *     and empty segments merged (`//` → `/`); a trailing slash is kept.
 *  4. A segment that still hides a dot segment once fully decoded — `..%2F`,
 *     `..%5C`, `%2E%2E%2Fx` or Tomcat's `..;x` — is refused (400): upstreams
 *     disagree on whether `%2F` separates segments, so no single answer is safe.
 *     So are decoded control characters (`%00`, `%0A`, …) and paths that are
 *     not UTF-8 once decoded.
 *
 * The canonical (still encoded) path is what goes upstream; `http.path` is
 * that path percent-decoded exactly once (`%252e` → `%2e`, never `.`).
 */
import { HttpParseError } from './h1-parser.js';

export interface NormalisedPath {
  /** Decoded once, for `http.path`. */
  path: string;
  /** Canonical encoded form to send upstream. */
  forward: string;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function normalisePath(rawPath: string): NormalisedPath {
  if (rawPath === '*') return { path: '*', forward: '*' };
  const slashed = rawPath.replace(/\\/g, '/');
  if (!slashed.startsWith('/')) throw new HttpParseError(400, 'path must start with /');

  const segments = slashed.split('/').slice(1).map(canonicalSegment);
  const out: string[] = [];
  let trailingSlash = false;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (seg === '' || seg === '.') {
      trailingSlash = last;
    } else if (seg === '..') {
      out.pop();
      trailingSlash = last;
    } else {
      checkHiddenDotSegment(seg);
      out.push(seg);
      trailingSlash = false;
    }
  }
  const forward = '/' + out.join('/') + (trailingSlash && out.length > 0 ? '/' : '');
  return { path: decodeOnce(forward), forward };
}

/** Decode unreserved escapes, upper-case the others, reject malformed ones. */
function canonicalSegment(seg: string): string {
  if (!seg.includes('%')) return seg;
  let out = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c !== '%') {
      out += c;
      continue;
    }
    const hex = seg.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw new HttpParseError(400, 'malformed percent-encoding in path');
    const ch = String.fromCharCode(parseInt(hex, 16));
    out += UNRESERVED.test(ch) ? ch : '%' + hex.toUpperCase();
    i += 2;
  }
  return out;
}

function checkHiddenDotSegment(seg: string): void {
  const decoded = decodeOnce(seg);
  for (const piece of decoded.split(/[/\\]/)) {
    const beforeParams = piece.split(';')[0];
    // The segment itself is not `.`/`..` (those were resolved), so a dot
    // segment inside it can only have been hidden by encoding or `;params`.
    if (beforeParams === '.' || beforeParams === '..') {
      throw new HttpParseError(400, 'ambiguous path: encoded or parameterised dot segment');
    }
  }
}

function decodeOnce(s: string): string {
  if (!s.includes('%')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x25) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(c);
    }
  }
  for (const b of bytes) {
    if (b < 0x20 || b === 0x7f) throw new HttpParseError(400, 'control character in path');
  }
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new HttpParseError(400, 'path is not UTF-8 once percent-decoded');
  }
}

/** `http.query`: application/x-www-form-urlencoded reading of the raw query, every value kept. */
export function parseQuery(rawQuery: string | null): Record<string, string[]> {
  const map = new Map<string, string[]>();
  if (rawQuery) {
    for (const [k, v] of new URLSearchParams(rawQuery)) {
      const list = map.get(k);
      if (list) list.push(v);
      else map.set(k, [v]);
    }
  }
  return objectSortedByKey(map);
}

/**
 * A map as an object whose keys are in sorted order: the audit log writes
 * facts whose keys are already canonical as they are (audit/record-json.ts),
 * which costs less than the sort here.
 */
export function objectSortedByKey<V>(map: Map<string, V>): Record<string, V> {
  return Object.fromEntries(map.size > 1 ? [...map].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)) : map);
}
