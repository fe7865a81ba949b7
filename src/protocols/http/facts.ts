/**
 * `http.*` facts from a parsed request (HTTP/1.1 or HTTP/2 alike).
 */
import type { HttpFacts } from '../../policy/types.js';
import type { BodyFacts } from './body.js';
import type { HeaderField } from './h1-parser.js';
import { normalisePath, parseQuery, type NormalisedPath } from './path.js';

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
  return Object.fromEntries(map);
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
  const facts: HttpFacts = {
    method: input.method,
    path: norm.path,
    raw_path: input.rawPath,
    host: input.host,
    query: parseQuery(input.rawQuery),
    headers: headerFacts(input.headers),
    body: input.body.body,
    body_json: input.body.body_json,
  };
  if (input.body.body_truncated) facts.body_truncated = true;
  return facts;
}
