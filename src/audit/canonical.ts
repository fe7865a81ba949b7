/**
 * Canonical JSON for hashing audit records: object keys sorted by UTF-16
 * code units, no whitespace, strings and numbers as `JSON.stringify` writes
 * them, `undefined` members dropped. For the JSON values audit records hold
 * this is the JSON Canonicalization Scheme (RFC 8785), so a SIEM can
 * recompute a record's hash with any JCS library.
 */
export function canonicalJson(value: unknown): string {
  return write(value, 0);
}

function write(value: unknown, depth: number): string {
  if (depth > 200) throw new TypeError('canonicalJson: value nested too deeply');
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonicalJson: non-finite number');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        return '[' + value.map((v) => (v === undefined || typeof v === 'function' ? 'null' : write(v, depth + 1))).join(',') + ']';
      }
      const maybe = value as { toJSON?: () => unknown };
      if (typeof maybe.toJSON === 'function') return write(maybe.toJSON(), depth + 1);
      const keys = Object.keys(value).sort();
      const parts: string[] = [];
      for (const k of keys) {
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
