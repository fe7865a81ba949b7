/**
 * Credential injection: pure functions that write a resolved credential's
 * real secret into what an engine sends upstream. They never touch sockets;
 * engines pass plain header objects (Node's lower-case `IncomingHttpHeaders`
 * shape) or ask for handshake fields.
 *
 * HTTP rule: the gateway owns authentication to the upstream. Every header
 * that could carry the agent's own credential for this request
 * (`Authorization`, `x-api-key`, the credential's configured header) is
 * removed before the real one is written, so a placeholder — or a token the
 * agent smuggled in — never travels next to the injected secret.
 */
import type { Credential } from '../policy/types.js';
import type { CredentialMaterial } from '../gateway/contracts.js';

export type HeaderMap = Record<string, string | string[] | number | undefined>;

export class InjectionError extends Error {
  override name = 'InjectionError';
}

/** Header names (lower-case) that carry authentication for this credential, in any request. */
export function authHeaderNames(credential: Pick<Credential, 'type' | 'header'>): string[] {
  const names = ['authorization', 'x-api-key'];
  if (credential.type === 'header_token' && credential.header) names.push(credential.header.toLowerCase());
  if (credential.type === 'clickhouse_credential') names.push('x-clickhouse-user', 'x-clickhouse-key');
  return [...new Set(names)];
}

function slot(material: CredentialMaterial, name: string): string {
  const v = material.slots[name];
  if (v === undefined || v === '') {
    throw new InjectionError(`credential ${material.credential.id} has no secret for slot ${name}`);
  }
  if (/[\r\n\0]/.test(v)) {
    // The vault refuses such values; this guards material built elsewhere.
    throw new InjectionError(`credential ${material.credential.id} (slot ${name}) contains a line break or NUL and cannot be sent in a header`);
  }
  return v;
}

function withoutHeaders(headers: HeaderMap, drop: readonly string[]): HeaderMap {
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(headers)) if (!drop.includes(k.toLowerCase())) out[k] = v;
  return out;
}

function basic(user: string, password: string, credentialId: string): string {
  if (user.includes(':')) throw new InjectionError(`credential ${credentialId}: a Basic auth user name cannot contain ":"`);
  return 'Basic ' + Buffer.from(`${user}:${password}`, 'utf8').toString('base64');
}

/**
 * Headers for the upstream request with the credential injected. Returns a
 * new object; the input is not modified. `passthrough` and `mtls_credential`
 * leave the headers as they are (the agent's own auth, or TLS-level auth).
 */
export function injectHttpCredential(headers: HeaderMap, material: CredentialMaterial): HeaderMap {
  const cred = material.credential;
  switch (cred.type) {
    case 'passthrough':
    case 'mtls_credential':
      return { ...headers };
    case 'bearer_token':
      return { ...withoutHeaders(headers, authHeaderNames(cred)), authorization: `Bearer ${slot(material, 'token')}` };
    case 'slack_tokens':
      return { ...withoutHeaders(headers, authHeaderNames(cred)), authorization: `Bearer ${slot(material, 'bot')}` };
    case 'anthropic_manual_key':
      return { ...withoutHeaders(headers, authHeaderNames(cred)), 'x-api-key': slot(material, 'token') };
    case 'header_token': {
      if (!cred.header) throw new InjectionError(`credential ${cred.id} (header_token) names no header`);
      const name = cred.header.toLowerCase();
      if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) throw new InjectionError(`credential ${cred.id}: "${cred.header}" is not a valid header name`);
      return { ...withoutHeaders(headers, authHeaderNames(cred)), [name]: `${cred.prefix ?? ''}${slot(material, 'token')}` };
    }
    case 'basic_auth':
      return {
        ...withoutHeaders(headers, authHeaderNames(cred)),
        authorization: basic(cred.username ?? '', slot(material, 'password'), cred.id),
      };
    case 'clickhouse_credential':
      // ClickHouse's HTTP interface accepts Basic auth; X-ClickHouse-User/Key from the agent are dropped.
      return {
        ...withoutHeaders(headers, authHeaderNames(cred)),
        authorization: basic(clickhouseUser(cred), slot(material, 'password'), cred.id),
      };
    case 'postgres_credential':
      throw new InjectionError(`credential ${cred.id} (postgres_credential) cannot be injected into an HTTP request`);
  }
}

/** Query parameters through which a ClickHouse HTTP client may send its own credentials (removed by the engine). */
export const CLICKHOUSE_URL_AUTH_PARAMS = ['user', 'password', 'quota_key'] as const;

/** Remove agent-supplied ClickHouse credentials from a URL's query (returns a new URL). */
export function stripClickhouseUrlAuth(url: URL): URL {
  const out = new URL(url.href);
  for (const p of CLICKHOUSE_URL_AUTH_PARAMS) out.searchParams.delete(p);
  return out;
}

function clickhouseUser(cred: Credential): string {
  return cred.user ?? 'default';
}

/** User and password the gateway authenticates upstream with (SCRAM/MD5/cleartext is the engine's business). */
export function postgresLogin(material: CredentialMaterial, agentUser: string): { user: string; password: string } {
  if (material.credential.type !== 'postgres_credential') {
    throw new InjectionError(`credential ${material.credential.id} is not a postgres_credential`);
  }
  return { user: material.credential.user ?? agentUser, password: slot(material, 'password') };
}

/** User and password for the ClickHouse native Hello (or HTTP auth). The user defaults to `default`. */
export function clickhouseLogin(material: CredentialMaterial): { user: string; password: string } {
  if (material.credential.type !== 'clickhouse_credential') {
    throw new InjectionError(`credential ${material.credential.id} is not a clickhouse_credential`);
  }
  return { user: clickhouseUser(material.credential), password: slot(material, 'password') };
}

/** Client certificate options for `tls.connect` (PEM text); `ca` only when the slot is set. */
export function mtlsOptions(material: CredentialMaterial): { cert: string; key: string; ca?: string } {
  if (material.credential.type !== 'mtls_credential') {
    throw new InjectionError(`credential ${material.credential.id} is not an mtls_credential`);
  }
  const cert = material.slots.cert;
  const key = material.slots.key;
  if (!cert || !key) throw new InjectionError(`credential ${material.credential.id} needs both cert and key`);
  return material.slots.ca ? { cert, key, ca: material.slots.ca } : { cert, key };
}

/**
 * The tokens an agent presented in auth-bearing headers, for choosing
 * between credentials by placeholder: `Authorization` with any scheme
 * (`Bearer x` → `x`; `Basic` → the decoded user and password), `x-api-key`,
 * and any extra header names (configured `header_token` headers; a known
 * prefix is stripped). Values are returned as found, deduplicated.
 */
export function presentedTokens(headers: HeaderMap, extra: ReadonlyArray<{ header: string; prefix?: string }> = []): string[] {
  const found = new Set<string>();
  const values = (name: string): string[] => {
    const out: string[] = [];
    for (const [k, v] of Object.entries(headers)) {
      if (k.toLowerCase() !== name || v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [String(v)]) out.push(one.trim());
    }
    return out;
  };
  for (const auth of values('authorization')) {
    const m = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s+(.+)$/.exec(auth);
    if (!m) {
      if (auth) found.add(auth);
      continue;
    }
    const [, scheme, rest] = m as unknown as [string, string, string];
    if (scheme.toLowerCase() === 'basic') {
      const decoded = Buffer.from(rest, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0) {
        if (colon > 0) found.add(decoded.slice(0, colon));
        if (colon < decoded.length - 1) found.add(decoded.slice(colon + 1));
      }
    } else {
      found.add(rest.trim());
    }
  }
  for (const v of values('x-api-key')) if (v) found.add(v);
  for (const { header, prefix } of extra) {
    for (const v of values(header.toLowerCase())) {
      const token = prefix && v.startsWith(prefix) ? v.slice(prefix.length) : v;
      if (token) found.add(token.trim());
    }
  }
  return [...found];
}
