/**
 * Canonical JSON for hashing audit records: object keys sorted by UTF-16
 * code units, no whitespace, strings and numbers as `JSON.stringify` writes
 * them, `undefined` members dropped. For the JSON values audit records hold
 * this is the JSON Canonicalization Scheme (RFC 8785), so a SIEM can
 * recompute a record's hash with any JCS library.
 *
 * Fast path: rebuild the value with keys inserted in sorted order and let
 * the native `JSON.stringify` write it. JavaScript objects always list
 * integer-like keys ("9", "10") first in numeric order, which is not code-unit
 * order, so a value containing such keys takes the slow path, which writes
 * every member itself.
 */
export function canonicalJson(value: unknown): string {
  try {
    return JSON.stringify(sorted(value, 0)) ?? 'null';
  } catch (err) {
    if (err !== INTEGER_KEY) throw err;
    return write(value, 0);
  }
}

const INTEGER_KEY = Symbol('integer-like key');
const MAX_DEPTH = 200;

function isIntegerKey(k: string): boolean {
  const c = k.charCodeAt(0);
  return c >= 48 && c <= 57 && /^(0|[1-9]\d{0,9})$/.test(k);
}

function scalar(value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
  if (typeof value === 'bigint') throw new TypeError('canonicalJson: bigint is not JSON');
  return value;
}

function sorted(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return scalar(value);
  if (depth > MAX_DEPTH) throw new TypeError('canonicalJson: value nested too deeply');
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = sorted(value[i], depth + 1);
    return out;
  }
  const maybe = value as { toJSON?: () => unknown };
  if (typeof maybe.toJSON === 'function') return sorted(maybe.toJSON(), depth + 1);
  const keys = Object.keys(value).sort();
  // Null prototype: a `__proto__` member (JSON.parse makes it an own key) stays a member, never a prototype.
  const out = Object.create(null) as Record<string, unknown>;
  for (const k of keys) {
    if (isIntegerKey(k)) throw INTEGER_KEY;
    out[k] = sorted((value as Record<string, unknown>)[k], depth + 1);
  }
  return out;
}

function write(value: unknown, depth: number): string {
  if (depth > MAX_DEPTH) throw new TypeError('canonicalJson: value nested too deeply');
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      return JSON.stringify(scalar(value));
    case 'object': {
      if (Array.isArray(value)) {
        return '[' + value.map((v) => (v === undefined || typeof v === 'function' || typeof v === 'symbol' ? 'null' : write(v, depth + 1))).join(',') + ']';
      }
      const maybe = value as { toJSON?: () => unknown };
      if (typeof maybe.toJSON === 'function') return write(maybe.toJSON(), depth + 1);
      const parts: string[] = [];
      for (const k of Object.keys(value).sort()) {
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
        parts.push(JSON.stringify(k) + ':' + write(v, depth + 1));
      }
      return '{' + parts.join(',') + '}';
    }
    case 'bigint':
      throw new TypeError('canonicalJson: bigint is not JSON');
    default:
      throw new TypeError(`canonicalJson: ${typeof value} is not JSON`);
  }
}
