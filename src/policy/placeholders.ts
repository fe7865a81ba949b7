/**
 * Placeholders: what an agent holds instead of a secret. The HTTPS engine
 * reads them from auth-bearing headers (`placeholdersFromHeaders`) and puts
 * them in `action.placeholders`; `decide` uses them to pick a credential.
 * `clawpatrol run` exports them (`profilePlaceholders`).
 */
import type { PolicyModel } from './types.js';
import { generatedPlaceholder } from './compiled.js';
import { presentedTokens, type HeaderMap } from '../vault/inject.js';

/**
 * Every string in the request that could be a placeholder: the token of
 * `Authorization` (Bearer or any scheme, Basic — both user and password — or
 * raw), `x-api-key`, and the headers of `header_token` credentials. `extra`
 * takes header names, or `{ header, prefix }` so a configured prefix is
 * stripped. The vault's `presentedTokens` does the reading (one
 * implementation for the engine, the vault and the policy).
 */
export function placeholdersFromHeaders(
  headers: HeaderMap,
  extraHeaderNames: Iterable<string | { header: string; prefix?: string }> = [],
): string[] {
  const extra = [...extraHeaderNames].map((h) => (typeof h === 'string' ? { header: h } : h));
  return presentedTokens(headers, extra);
}

/** The `header_token` headers (with prefixes) of a policy, for `placeholdersFromHeaders`. */
export function placeholderHeaders(model: PolicyModel): Array<{ header: string; prefix?: string }> {
  const out: Array<{ header: string; prefix?: string }> = [];
  for (const c of model.credentials.values()) {
    if (c.type !== 'header_token' || !c.header) continue;
    out.push(c.prefix ? { header: c.header, prefix: c.prefix } : { header: c.header });
  }
  return out;
}

export interface ExportedPlaceholder {
  /** Credential id, e.g. `bearer_token.github`. */
  credential: string;
  /** The profile entry's placeholder, or the generated `cp_ph_<credential-name>`. */
  placeholder: string;
  /** Environment variable `clawpatrol run` exports it in, when the credential has one. */
  env?: string;
}

/** What `clawpatrol run` exports for a profile (empty for an unknown profile). */
export function profilePlaceholders(model: PolicyModel, profile: string): ExportedPlaceholder[] {
  const p = model.profiles.get(profile);
  if (!p) return [];
  const out: ExportedPlaceholder[] = [];
  for (const entry of p.entries) {
    const cred = model.credentials.get(entry.credential);
    if (!cred || cred.type === 'passthrough') continue;
    const placeholder = entry.placeholder ?? generatedPlaceholder(cred);
    out.push(cred.env ? { credential: cred.id, placeholder, env: cred.env } : { credential: cred.id, placeholder });
  }
  return out;
}
