/**
 * What may be written about an action: its facts with sensitive header
 * values replaced by `***` and every vault value (in any encoding the
 * scrubber knows) overwritten wherever it appears — statement text, bodies,
 * parsed JSON, query strings, header values.
 */
import type { Action, Facts, PolicyModel } from '../policy/types.js';
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

/** A redacted deep copy of the action's facts. */
export function redactFacts(action: Pick<Action, 'facts'>, secrets: Scrubber | readonly string[], opts: RedactOptions = {}): Facts {
  const scrubber = secrets instanceof Scrubber ? secrets : scrubberFor(secrets);
  const sensitive = new Set(SENSITIVE_HEADERS);
  for (const h of opts.headers ?? []) sensitive.add(h.toLowerCase());
  const facts = action.facts;
  let out: Facts = { ...facts };
  if (facts.http) {
    // fromEntries defines own properties: a header named `__proto__` stays a header.
    const headers = Object.fromEntries(
      Object.entries(facts.http.headers ?? {}).map(([k, v]) => [k, sensitive.has(k.toLowerCase()) ? REDACTED : v]),
    ) as Record<string, string>;
    out = { ...out, http: { ...facts.http, headers } };
  }
  return scrubber.scrubDeep(out);
}

/**
 * The Enforcer's `redactFacts` dependency: follows policy reloads (headers)
 * and the vault's current values.
 */
export function createFactsRedactor(deps: {
  model: () => Pick<PolicyModel, 'credentials'>;
  secrets: Pick<SecretResolver, 'allValues'>;
}): (action: Action) => Facts {
  let lastModel: Pick<PolicyModel, 'credentials'> | null = null;
  let headers: string[] = [];
  return (action) => {
    const model = deps.model();
    if (model !== lastModel) {
      headers = credentialHeaders(model);
      lastModel = model;
    }
    return redactFacts(action, deps.secrets.allValues(), { headers });
  };
}
