/**
 * Canonical JSON for hashing audit records: object keys sorted by UTF-16
 * code units, no whitespace, strings and numbers as `JSON.stringify` writes
 * them, `undefined` members dropped. For the JSON values audit records hold
 * this is the JSON Canonicalization Scheme (RFC 8785), so a SIEM can
 * recompute a record's hash with any JCS library.
 *
 * Fast path: `inOrder` hands back the value itself wherever its keys are
 * already sorted, and a copy with keys inserted in sorted order only where
 * they are not (copy-on-write, so a value that is canonical already costs no
 * allocation); the native `JSON.stringify` then writes it. JavaScript
 * objects always list integer-like keys ("9", "10") first in numeric order,
 * which is not code-unit order, so a value containing such keys takes the
 * slow path, which writes every member itself.
 */
export function canonicalJson(value: unknown): string {
  try {
    return JSON.stringify(inOrder(value, 0)) ?? 'null';
  } catch (err) {
    if (err !== INTEGER_KEY) throw err;
    return write(value, 0);
  }
}

/** Thrown (and caught by the callers in this module's family) when a value needs the slow path. */
export const INTEGER_KEY = Symbol('integer-like key');
const MAX_DEPTH = 200;

export function isIntegerKey(k: string): boolean {
  const c = k.charCodeAt(0);
  return c >= 48 && c <= 57 && /^(0|[1-9]\d{0,9})$/.test(k);
}

function scalar(value: unknown): unknown {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
  if (typeof value === 'bigint') throw new TypeError('canonicalJson: bigint is not JSON');
  return value;
}

/**
 * `value` with every object's keys in code-unit order, for `JSON.stringify`:
 * the value itself when that is already so, else a copy of the parts that
 * are not. Throws INTEGER_KEY when a key would be reordered by the engine.
 */
export function inOrder(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return scalar(value);
  if (depth > MAX_DEPTH) throw new TypeError('canonicalJson: value nested too deeply');
  if (Array.isArray(value)) {
    let out: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      const c = inOrder(v, depth + 1);
      if (c !== v && out === null) out = value.slice(0, i);
      if (out !== null) out.push(c);
    }
    return out ?? value;
  }
  const maybe = value as { toJSON?: () => unknown };
  if (typeof maybe.toJSON === 'function') return inOrder(maybe.toJSON(), depth + 1);
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  let sorted = true;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    if (isIntegerKey(k)) throw INTEGER_KEY;
    if (i > 0 && keys[i - 1]! > k) sorted = false;
  }
  if (!sorted) keys.sort();
  let out: Record<string, unknown> | null = sorted ? null : {};
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const v = obj[k];
    const c = inOrder(v, depth + 1);
    if (out === null) {
      if (c === v) continue;
      out = {};
      for (let j = 0; j < i; j++) setMember(out, keys[j]!, obj[keys[j]!]);
    }
    setMember(out, k, c);
  }
  return out ?? value;
}

/** `out[k] = v`, except that a `__proto__` key stays an own member instead of setting the prototype. */
export function setMember(out: Record<string, unknown>, k: string, v: unknown): void {
  // `__proto__` (JSON.parse makes it an own key) must stay a member, never become the copy's prototype.
  if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  else out[k] = v;
}

/** The slow path: every member written here, keys sorted, for values with integer-like keys. */
export function write(value: unknown, depth: number): string {
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
      return writeMembers(value as Record<string, unknown>, Object.keys(value).sort(), depth);
    }
    case 'bigint':
      throw new TypeError('canonicalJson: bigint is not JSON');
    default:
      throw new TypeError(`canonicalJson: ${typeof value} is not JSON`);
  }
}

/** The JSON object text of `obj`'s members `keys`, in that order (the object itself at `depth`), as JSON leaves members out. */
export function writeMembers(obj: Record<string, unknown>, keys: readonly string[], depth: number): string {
  const parts: string[] = [];
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
    parts.push(JSON.stringify(k) + ':' + write(v, depth + 1));
  }
  return '{' + parts.join(',') + '}';
}
