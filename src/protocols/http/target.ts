/**
 * Request-target and authority parsing (RFC 9112 §3.2, RFC 3986 §3.2).
 * Pure functions; every malformed input is an `HttpParseError(400)`.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { HttpParseError } from './h1-parser.js';

export interface ParsedTarget {
  form: 'origin' | 'absolute' | 'authority' | 'asterisk';
  /** absolute-form only. */
  scheme?: 'http' | 'https';
  /** absolute-form and authority-form: `host[:port]` as sent. */
  authority?: string;
  /** The path exactly as sent (`*` for asterisk-form, '' for authority-form). */
  rawPath: string;
  /** Text after `?`, or null when there is none. */
  rawQuery: string | null;
}

export function parseRequestTarget(target: string, method: string): ParsedTarget {
  if (method === 'CONNECT') {
    // authority-form: host:port, nothing else (RFC 9110 §9.3.6).
    const a = parseAuthority(target);
    if (a.port === undefined) throw new HttpParseError(400, 'CONNECT target needs host:port');
    return { form: 'authority', authority: target, rawPath: '', rawQuery: null };
  }
  if (target === '*') {
    if (method !== 'OPTIONS') throw new HttpParseError(400, 'asterisk-form is only valid for OPTIONS');
    return { form: 'asterisk', rawPath: '*', rawQuery: null };
  }
  if (target.startsWith('/')) {
    const q = target.indexOf('?');
    return q === -1
      ? { form: 'origin', rawPath: target, rawQuery: null }
      : { form: 'origin', rawPath: target.slice(0, q), rawQuery: target.slice(q + 1) };
  }
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?]*)(.*)$/.exec(target);
  if (!m) throw new HttpParseError(400, 'invalid request-target');
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') throw new HttpParseError(400, `unsupported scheme ${scheme}`);
  const authority = m[2]!;
  // `http://api.github.com@evil.example/` is read differently by different
  // parsers; userinfo has no business in a request line.
  if (authority.includes('@')) throw new HttpParseError(400, 'userinfo in request-target');
  parseAuthority(authority);
  let rest = m[3]!;
  let rawQuery: string | null = null;
  const q = rest.indexOf('?');
  if (q !== -1) {
    rawQuery = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  return { form: 'absolute', scheme, authority, rawPath: rest === '' ? '/' : rest, rawQuery };
}

export interface Authority {
  /** Lower-case, no trailing dot; IPv6 without brackets. */
  host: string;
  port: number | undefined;
}

const REG_NAME = /^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/;

/** `host[:port]` from a Host header, an absolute-form target or CONNECT. */
export function parseAuthority(raw: string): Authority {
  let hostPart: string;
  let portPart: string | undefined;
  if (raw.startsWith('[')) {
    const close = raw.indexOf(']');
    if (close === -1) throw new HttpParseError(400, 'unterminated IPv6 literal');
    hostPart = raw.slice(1, close);
    const after = raw.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw new HttpParseError(400, 'invalid authority');
      portPart = after.slice(1);
    }
    if (!isIPv6(hostPart)) throw new HttpParseError(400, 'invalid IPv6 literal');
    return { host: hostPart.toLowerCase(), port: parsePort(portPart) };
  }
  const colon = raw.lastIndexOf(':');
  if (colon !== -1) {
    hostPart = raw.slice(0, colon);
    portPart = raw.slice(colon + 1);
  } else {
    hostPart = raw;
  }
  return { host: normaliseHostName(hostPart), port: parsePort(portPart) };
}

function parsePort(p: string | undefined): number | undefined {
  if (p === undefined) return undefined;
  if (!/^[0-9]{1,5}$/.test(p)) throw new HttpParseError(400, 'invalid port');
  const n = Number(p);
  if (n < 1 || n > 65535) throw new HttpParseError(400, 'invalid port');
  return n;
}

/**
 * Lower-case, without the trailing dot. Only LDH labels (plus `_`) and
 * dotted-quad IPv4: numeric shorthands such as `127.1` or `0x7f.0.0.1` are
 * read as addresses by some resolvers and as names by others, so they are
 * refused rather than guessed.
 */
export function normaliseHostName(raw: string): string {
  let h = raw.toLowerCase();
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.length === 0 || h.length > 253) throw new HttpParseError(400, 'invalid host');
  if (isIPv6(h)) return h;
  if (!REG_NAME.test(h)) throw new HttpParseError(400, `invalid host ${JSON.stringify(raw)}`);
  const last = h.slice(h.lastIndexOf('.') + 1);
  if (/^(?:[0-9]+|0x[0-9a-f]*)$/.test(last) && !isIPv4(h)) {
    throw new HttpParseError(400, `ambiguous numeric host ${JSON.stringify(raw)}`);
  }
  return h;
}

/** An SNI server name in the same normal form as `Authority.host` (null when invalid). */
export function normaliseServerName(sni: string): string | null {
  try {
    return normaliseHostName(sni);
  } catch {
    return null;
  }
}

/** `host` or `[v6]`, for Host headers and URLs. */
export function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export function formatAuthority(host: string, port: number | undefined, defaultPort: number): string {
  return port === undefined || port === defaultPort ? formatHost(host) : `${formatHost(host)}:${port}`;
}
