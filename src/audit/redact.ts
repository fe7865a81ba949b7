/**
 * What may be written about an action: its facts with sensitive header
 * values replaced by `***` and every vault value (in any encoding the
 * scrubber knows) overwritten wherever it appears — statement text, bodies,
 * query strings, header values.
 *
 * An HTTP action's `body_json` is left out: the HTTP engine parses it from
 * `body` (src/protocols/http/body.ts), which the record keeps, so storing
 * both would write every inspected body twice. For an agent's LLM call
 * (tens of KB of JSON) that was half the record, and half the work to redact,
 * encode, hash and compress it.
 */
import type { Action, Facts, GatewayConfig, PolicyModel } from '../policy/types.js';
import type { SecretResolver } from '../gateway/contracts.js';
import { Scrubber, scrubberFor } from '../vault/scrub.js';

export const REDACTED = '***';

/** Header names (lower-case) whose values are credentials in any request. */
export const SENSITIVE_HEADERS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'x-auth-token',
  'x-clickhouse-key',
  'x-amz-security-token',
  'private-token',
];

/** The configured `header_token` headers of a policy (lower-case). */
export function credentialHeaders(model: Pick<PolicyModel, 'credentials'>): string[] {
  const out = new Set<string>();
  for (const c of model.credentials.values()) if (c.type === 'header_token' && c.header) out.add(c.header.toLowerCase());
  return [...out];
}

export interface RedactOptions {
  /** More header names to mask (configured header_token headers). */
  headers?: Iterable<string>;
}

/**
 * The action's facts as they may be recorded: sensitive header values
 * masked and every secret form overwritten (a copy when anything changed;
 * the facts themselves when there was nothing to redact — records are not
 * mutated after they are appended, so sharing them is safe).
 */
export function redactFacts(action: Pick<Action, 'facts'>, secrets: Scrubber | readonly string[], opts: RedactOptions = {}): Facts {
  const scrubber = secrets instanceof Scrubber ? secrets : scrubberFor(secrets);
  return redactWith(action.facts, scrubber, sensitiveHeaderSet(opts.headers ?? []));
}

function sensitiveHeaderSet(extra: Iterable<string>): ReadonlySet<string> {
  const sensitive = new Set(SENSITIVE_HEADERS);
  for (const h of extra) sensitive.add(h.toLowerCase());
  return sensitive;
}

function redactWith(facts: Facts, scrubber: Scrubber, sensitive: ReadonlySet<string>): Facts {
  let out: Facts = facts;
  if (facts.http) {
    // fromEntries defines own properties: a header named `__proto__` stays a header.
    const headers = Object.fromEntries(
      Object.entries(facts.http.headers ?? {}).map(([k, v]) => [k, sensitive.has(k.toLowerCase()) ? REDACTED : v]),
    ) as Record<string, string>;
    const { body_json: _derivedFromBody, ...http } = facts.http;
    out = { ...facts, http: { ...http, headers } as Facts['http'] };
  }
  if (scrubber.empty || !mayHoldSecret(out, scrubber)) return out;
  return scrubber.scrubDeep(out);
}

function sameValues(a: readonly string[], b: readonly string[] | null): boolean {
  if (b === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Separator between the strings `mayHoldSecret` scans together. */
const JOIN = '\0';

/**
 * False only when no string of `value` (keys included, as scrubDeep scrubs
 * them) contains any form of any secret — then scrubDeep would return an
 * equal copy, and the facts can be recorded as they are. Every string is
 * scanned in one pass over their concatenation: a form inside one string is
 * inside the concatenation too, so this never misses one (a form that only
 * spans a separator merely sends the facts down the exact path).
 */
function mayHoldSecret(value: unknown, scrubber: Scrubber): boolean {
  const parts: string[] = [];
  if (!collectStrings(value, parts, 0)) return true;
  if (parts.length === 0) return false;
  const bytes = Buffer.from(parts.join(JOIN), 'utf8');
  return scrubber.scrubBuffer(bytes) !== bytes;
}

/** Push every string under `value`; false when something is not plain JSON-like data (scrub it exactly). */
function collectStrings(value: unknown, out: string[], level: number): boolean {
  if (typeof value === 'string') {
    out.push(value);
    return true;
  }
  if (value === null || typeof value !== 'object') return true;
  if (level > 64 || Buffer.isBuffer(value)) return false;
  if (Array.isArray(value)) {
    for (const v of value) if (!collectStrings(v, out, level + 1)) return false;
    return true;
  }
  for (const k in value) {
    if (!Object.prototype.hasOwnProperty.call(value, k)) continue;
    out.push(k);
    if (!collectStrings((value as Record<string, unknown>)[k], out, level + 1)) return false;
  }
  return true;
}

/**
 * The Enforcer's `redactFacts` dependency: follows policy reloads (headers)
 * and the vault's current values. It runs for every audit record, so the
 * scrubber (an automaton compiled from every form of every secret) is
 * reused for as long as the vault hands out the same values (the same
 * array — the vault caches it — or an equal one), and the header set for as
 * long as the policy is the same.
 */
export function createFactsRedactor(deps: {
  model: () => Pick<PolicyModel, 'credentials'> & { gateway?: Pick<GatewayConfig, 'auditBodyLimit'> };
  secrets: Pick<SecretResolver, 'allValues'>;
}): (action: Action) => Facts {
  let lastModel: Pick<PolicyModel, 'credentials'> | null = null;
  let sensitive: ReadonlySet<string> = sensitiveHeaderSet([]);
  let lastValues: readonly string[] | null = null;
  let scrubber: Scrubber | null = null;
  return (action) => {
    const model = deps.model();
    if (model !== lastModel) {
      sensitive = sensitiveHeaderSet(credentialHeaders(model));
      lastModel = model;
    }
    const values = deps.secrets.allValues();
    if (scrubber === null || (values !== lastValues && !sameValues(values, lastValues))) scrubber = scrubberFor(values);
    lastValues = values;
    const out = redactWith(action.facts, scrubber, sensitive);
    const limit = model.gateway?.auditBodyLimit;
    return limit === undefined ? out : withBodyCut(out, limit);
  };
}

/**
 * `gateway.audit_body_limit`: the recorded HTTP body cut to at most `limit`
 * bytes of UTF-8, at a character boundary, with the whole body's size beside
 * it (`body_total_bytes`). The facts are already scrubbed, so a cut can never
 * leave part of a secret behind.
 */
export function withBodyCut(facts: Facts, limit: number): Facts {
  const http = facts.http;
  if (!http || typeof http.body !== 'string' || http.body.length === 0) return facts;
  // A UTF-16 unit is at most 3 bytes of UTF-8: a body this short fits without encoding it.
  if (http.body.length * 3 <= limit) return facts;
  const bytes = Buffer.from(http.body, 'utf8');
  if (bytes.length <= limit) return facts;
  let end = limit;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--; // not inside a multi-byte character
  const { body: _whole, ...rest } = http;
  // Keys in canonical order (body, body_total_bytes, body_truncated?, headers, …): the audit log writes them as they are.
  return { ...facts, http: { body: bytes.toString('utf8', 0, end), body_total_bytes: bytes.length, ...rest } as Facts['http'] };
}
