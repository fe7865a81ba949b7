/**
 * `http.*` facts from a parsed request (HTTP/1.1 or HTTP/2 alike).
 */
import type { HttpFacts } from '../../policy/types.js';
import type { BodyFacts } from './body.js';
import type { HeaderField } from './h1-parser.js';
import { normalisePath, objectSortedByKey, parseQuery, type NormalisedPath } from './path.js';

/**
 * Lower-case keys; repeated fields joined with ", " (RFC 9110 §5.3), except
 * `cookie`, joined with "; " as HTTP/2 requires (RFC 9113 §8.2.3) so that
 * both protocols give the same fact.
 */
export function headerFacts(fields: readonly HeaderField[]): Record<string, string> {
  const map = new Map<string, string>();
  for (const { name, value } of fields) {
    const key = name.toLowerCase();
    const prev = map.get(key);
    map.set(key, prev === undefined ? value : prev + (key === 'cookie' ? '; ' : ', ') + value);
  }
  return objectSortedByKey(map);
}

export interface FactsInput {
  method: string;
  rawPath: string;
  rawQuery: string | null;
  /** Normalised host (lower-case, no trailing dot, no port). */
  host: string;
  headers: readonly HeaderField[];
  body: BodyFacts;
  /** Pass when already computed (the adapter also needs `forward`). */
  normalised?: NormalisedPath;
}

export function buildHttpFacts(input: FactsInput): HttpFacts {
  const norm = input.normalised ?? normalisePath(input.rawPath);
  // Keys in canonical (sorted) order, so the audit log writes these facts as they are (audit/record-json.ts).
  return {
    body: input.body.body,
    body_json: input.body.body_json,
    ...(input.body.body_truncated ? { body_truncated: true } : {}),
    headers: headerFacts(input.headers),
    host: input.host,
    method: input.method,
    path: norm.path,
    query: parseQuery(input.rawQuery),
    raw_path: input.rawPath,
  };
}
