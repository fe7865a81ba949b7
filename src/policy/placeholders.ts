/**
 * Placeholders: what an agent holds instead of a secret. The HTTPS engine
 * reads them from auth-bearing headers (`placeholdersFromHeaders`) and puts
 * them in `action.placeholders`; `decide` uses them to pick a credential.
 * `clawpatrol run` exports them (`profilePlaceholders`).
 */
import type { PolicyModel } from './types.js';
import { generatedPlaceholder } from './compiled.js';

type HeaderValue = string | string[] | undefined;

function values(v: HeaderValue): string[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

function decodeBasic(b64: string): string[] {
  const text = Buffer.from(b64, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  return colon < 0 ? [text] : [text.slice(0, colon), text.slice(colon + 1)];
}

/** Candidates in one auth-bearing value: the whole value and, after a scheme or prefix, the token. */
function fromAuthValue(value: string, out: Set<string>): void {
  const v = value.trim();
  if (v === '') return;
  out.add(v);
  const m = /^([A-Za-z][\w-]*)\s+(\S+)\s*$/.exec(v);
  if (!m) return;
  const token = m[2]!;
  out.add(token);
  if (m[1]!.toLowerCase() === 'basic') for (const part of decodeBasic(token)) if (part) out.add(part);
}

/**
 * Every string in the request that could be a placeholder: the token of
 * `Authorization` (Bearer, Basic — both user and password — or raw),
 * `x-api-key`, and the headers named by `header_token` credentials
 * (`extraHeaderNames`, any case). Keys of `headers` may be in any case;
 * values may be strings or lists.
 */
export function placeholdersFromHeaders(headers: Record<string, HeaderValue>, extraHeaderNames: Iterable<string> = []): string[] {
  const wanted = new Set(['authorization', 'x-api-key']);
  for (const n of extraHeaderNames) wanted.add(n.toLowerCase());
  const out = new Set<string>();
  for (const [name, value] of Object.entries(headers)) {
    if (!wanted.has(name.toLowerCase())) continue;
    for (const v of values(value)) for (const part of v.split(',')) fromAuthValue(part, out);
  }
  return [...out];
}

/** Header names configured on `header_token` credentials (lower case), for `placeholdersFromHeaders`. */
export function placeholderHeaderNames(model: PolicyModel): string[] {
  const out = new Set<string>();
  for (const c of model.credentials.values()) if (c.type === 'header_token' && c.header) out.add(c.header);
  return [...out];
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
