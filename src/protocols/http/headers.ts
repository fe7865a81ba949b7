/**
 * Header hygiene between the agent and the upstream, in both directions.
 * Fields are `[name, value]` pairs so repeated fields and their order survive.
 */
import type { PolicyModel } from '../../policy/types.js';
import { SENSITIVE_HEADERS, credentialHeaders } from '../../audit/redact.js';
import type { Scrubber } from '../../vault/scrub.js';
import type { HeaderField } from './h1-parser.js';

export type FieldList = Array<[string, string]>;

/** Connection-specific fields (RFC 9110 §7.6.1, RFC 9113 §8.2.2): never forwarded as is. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
  'http2-settings',
]);

const NO_TOKENS: ReadonlySet<string> = new Set();

/** Lower-case names listed by `Connection` (most messages have none: no set is made). */
function connectionTokens<F>(fields: readonly F[], name: (f: F) => string, value: (f: F) => string): ReadonlySet<string> {
  let out: Set<string> | null = null;
  for (const f of fields) {
    const n = name(f);
    if (n.length !== 10 || n.toLowerCase() !== 'connection') continue;
    for (const t of value(f).split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok) (out ??= new Set()).add(tok);
    }
  }
  return out ?? NO_TOKENS;
}
const fieldName = (f: HeaderField): string => f.name;
const fieldValueOf = (f: HeaderField): string => f.value;
const pairName = (f: [string, string]): string => f[0];
const pairValue = (f: [string, string]): string => f[1];

export interface UpstreamHeaderOptions {
  /** Keep `Upgrade: websocket` / `Connection: Upgrade` (WebSocket handshake). */
  websocket: boolean;
  /** Keep `te: trailers` (gRPC over HTTP/2 needs it). */
  keepTeTrailers: boolean;
}

/**
 * What the agent sent, minus what must not travel upstream: hop-by-hop
 * fields (and those `Connection` names), `Expect` (the gateway answers it),
 * framing (`Content-Length` is set from the body the gateway sends) and
 * `Host` (set from the decided host). For WebSockets, `Sec-WebSocket-Extensions`
 * is dropped so no compression is negotiated and every frame stays readable.
 * Returned as a lower-case header map for the HTTP clients and the injector.
 */
export function upstreamRequestHeaders(fields: readonly HeaderField[], opts: UpstreamHeaderOptions): Record<string, string | string[]> {
  const listed = connectionTokens(fields, fieldName, fieldValueOf);
  const out: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (const { name, value } of fields) {
    const key = name.toLowerCase();
    if (key === 'host' || key === 'content-length' || key === 'expect') continue;
    if (key === 'te') {
      if (opts.keepTeTrailers && value.trim().toLowerCase() === 'trailers') out[key] = 'trailers';
      continue;
    }
    if (HOP_BY_HOP.has(key) || (listed.has(key) && !(opts.websocket && key === 'upgrade'))) continue;
    if (opts.websocket && key === 'sec-websocket-extensions') continue;
    const prev = out[key];
    if (prev === undefined) out[key] = value;
    // HTTP/2 splits cookies across fields; towards HTTP/1.1 they must be one
    // field joined with "; " (RFC 9113 §8.2.3) — an upstream reading only the
    // first would see fewer cookies than the rules (http.headers.cookie) did.
    else if (key === 'cookie') out[key] = `${String(prev)}; ${value}`;
    else if (Array.isArray(prev)) prev.push(value);
    else out[key] = [prev, value];
  }
  if (opts.websocket) {
    out['connection'] = 'Upgrade';
    out['upgrade'] = 'websocket';
  }
  return out;
}

/** Response fields that hand the agent credentials or move it off the gateway. */
const CREDENTIAL_BEARING = new Set(['set-cookie', 'set-cookie2', 'alt-svc', 'authentication-info', 'proxy-authentication-info']);

/**
 * `WWW-Authenticate` may stay only as a plain Basic realm challenge: other
 * schemes carry tokens, nonces or error details about the injected secret,
 * and a field listing several challenges cannot be filtered reliably.
 */
const BASIC_REALM = /^Basic[ \t]+realm[ \t]*=[ \t]*"[^"\\]*"(?:[ \t]*,[ \t]*charset[ \t]*=[ \t]*"?utf-8"?)?$/i;

export interface ResponseHeaderOptions {
  /** A 101 to a WebSocket upgrade: keep Upgrade/Connection. */
  websocket?: boolean;
  /** Secrets to remove from values. */
  scrubber: Scrubber;
  /** Lower-cased secrets to look for in (lower-cased) field names. */
  names: Scrubber;
}

/**
 * A field name that holds a secret: an upstream reflecting the credential as
 * a name (`x-<token>: 1`). Scrubbing would leave a meaningless name, so the
 * field is dropped. `key` is lower case, as `names` expects.
 */
function nameHoldsSecret(key: string, names: Scrubber): boolean {
  return names.scrubText(key) !== key;
}

/** Response fields safe to hand to the agent: hop-by-hop and credential-bearing ones removed, secrets scrubbed. */
export function sanitiseResponseHeaders(fields: readonly [string, string][], opts: ResponseHeaderOptions): FieldList {
  const listed = connectionTokens(fields, pairName, pairValue);
  const out: FieldList = [];
  for (const [name, value] of fields) {
    const key = name.toLowerCase();
    if (opts.websocket && (key === 'upgrade' || key === 'connection')) {
      out.push([name, value]);
      continue;
    }
    if (HOP_BY_HOP.has(key) || listed.has(key) || CREDENTIAL_BEARING.has(key) || nameHoldsSecret(key, opts.names)) continue;
    if (key === 'www-authenticate' && !BASIC_REALM.test(value.trim())) continue;
    if (opts.websocket && key === 'sec-websocket-extensions') continue;
    out.push([name, opts.scrubber.scrubText(value)]);
  }
  return out;
}

/** Node's `rawHeaders` / `rawTrailers` (flat name, value, …) as pairs. */
export function pairs(raw: readonly string[]): FieldList {
  const out: FieldList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

/** Trailers from an upstream: only end-to-end fields, scrubbed; never framing or routing fields. */
export function sanitiseTrailers(fields: Iterable<[string, string]>, opts: ResponseHeaderOptions): FieldList {
  const out: FieldList = [];
  for (const [name, value] of fields) {
    const key = name.toLowerCase();
    if (HOP_BY_HOP.has(key) || CREDENTIAL_BEARING.has(key) || key === 'content-length' || key === 'host' || key.startsWith(':')) continue;
    if (nameHoldsSecret(key, opts.names)) continue;
    out.push([name, opts.scrubber.scrubText(value)]);
  }
  return out;
}

/** Lower-case names of the request fields that carry credentials: the usual ones (as the audit log masks them) and every `header_token` header. */
export function credentialHeaderNames(model: Pick<PolicyModel, 'credentials'>): Set<string> {
  return new Set([...SENSITIVE_HEADERS, ...credentialHeaders(model)]);
}

/**
 * Fields that must not arrive as request trailers (RFC 9110 §6.5.1): they
 * frame or route the message, control how it is handled, or describe its
 * content — a recipient that merged one into the header section would act on
 * a field no rule saw. Credential fields join them: the gateway injects those.
 */
const NOT_AS_TRAILERS = new Set([
  ...HOP_BY_HOP,
  'content-length',
  'host',
  'content-type',
  'content-encoding',
  'content-range',
  'content-location',
  'expect',
  'max-forwards',
  'cache-control',
  'pragma',
  'range',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'if-range',
]);

/**
 * The agent's request trailers as they go upstream. They arrive after the
 * decision, so no rule could check them; the ones that could change what the
 * rules decided on (framing, routing, conditionals, content description,
 * credentials) refuse the request instead — never dropped silently.
 */
export function forwardableRequestTrailers(fields: readonly HeaderField[], credentials: ReadonlySet<string>): FieldList {
  const out: FieldList = [];
  for (const { name, value } of fields) {
    const key = name.toLowerCase();
    if (NOT_AS_TRAILERS.has(key) || credentials.has(key) || key.startsWith(':')) {
      throw new Error(`request trailer ${JSON.stringify(name)} is not accepted: it arrives after the policy decided, and it could change how the request is handled`);
    }
    out.push([name, value]);
  }
  return out;
}

export function fieldValue(fields: readonly HeaderField[], name: string): string | undefined {
  const matches = fields.filter((f) => f.name.toLowerCase() === name);
  return matches.length === 0 ? undefined : matches.map((f) => f.value).join(', ');
}
