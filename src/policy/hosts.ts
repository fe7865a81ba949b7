/**
 * Host patterns (`api.github.com`, `db.internal:5432`, `*.example.com`) and
 * the lookup every transport uses to find the endpoint for what an agent
 * dialed. Matching is case-insensitive and ignores a trailing dot; an exact
 * host beats any wildcard; among wildcards the longest suffix wins; at the
 * same host, a pattern naming the dialed port beats a pattern without a port,
 * and a pattern with a port matches other ports never (an unknown port: yes).
 * Two endpoints with the same pattern: the one declared first wins (the loader
 * rejects that inside a single profile).
 */
import type { HostPattern } from './types.js';

export type PatternResult = { ok: true; pattern: HostPattern } | { ok: false; message: string; hint: string };

const LABEL = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$/;

/** Lower-case, no trailing dot, no brackets; splits off `:port` when present. */
export function splitHostPort(text: string): { host: string; port?: number } {
  let s = text.trim().toLowerCase();
  let port: number | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close > 0) {
      const rest = s.slice(close + 1);
      if (/^:\d+$/.test(rest)) port = Number(rest.slice(1));
      s = s.slice(1, close);
    }
  } else {
    const m = /^([^:]+):(\d+)$/.exec(s);
    if (m) {
      s = m[1]!;
      port = Number(m[2]);
    }
  }
  if (s.endsWith('.')) s = s.slice(0, -1);
  return port === undefined ? { host: s } : { host: s, port };
}

export function normalizeHost(host: string): string {
  return splitHostPort(host).host;
}

export function parseHostPattern(text: string, defaultPort?: number): PatternResult {
  const { host, port } = splitHostPort(text);
  const effectivePort = port ?? defaultPort;
  if (port !== undefined && (port < 1 || port > 65535)) {
    return { ok: false, message: `Invalid port in "${text}"`, hint: 'ports are 1–65535' };
  }
  if (host === '') return { ok: false, message: 'Empty host', hint: 'write a host name such as "api.example.com"' };
  if (host.includes(':')) {
    // An IPv6 literal (brackets optional when no port is given).
    if (!/^[0-9a-f:.]+$/.test(host)) return { ok: false, message: `Invalid host "${text}"`, hint: 'IPv6 literals are written [2001:db8::1]:443' };
    return { ok: true, pattern: withPort({ host, wildcard: false }, effectivePort) };
  }
  let wildcard = false;
  let name = host;
  if (name.startsWith('*.')) {
    wildcard = true;
    name = name.slice(2);
  }
  if (name.includes('*')) {
    return {
      ok: false,
      message: `Invalid wildcard in "${text}"`,
      hint: 'a wildcard may only be the whole first label, as in "*.example.com"',
    };
  }
  const labels = name.split('.');
  for (const l of labels) {
    if (!LABEL.test(l)) {
      return { ok: false, message: `Invalid host "${text}"`, hint: 'host names are dot-separated labels of letters, digits, "-" and "_"' };
    }
  }
  if (wildcard && labels.length < 2) {
    return {
      ok: false,
      message: `Wildcard too broad: "${text}"`,
      hint: 'a wildcard needs at least two labels after "*." (e.g. "*.example.com", not "*.com")',
    };
  }
  return { ok: true, pattern: withPort({ host: wildcard ? `*.${name}` : name, wildcard }, effectivePort) };
}

function withPort(p: HostPattern, port: number | undefined): HostPattern {
  return port === undefined ? p : { ...p, port };
}

export function patternKey(p: HostPattern): string {
  return p.port === undefined ? p.host : `${p.host}:${p.port}`;
}

interface Claim<T> {
  value: T;
  port?: number;
}

/** An index from host patterns to values (endpoint ids), built once per policy snapshot. */
export class HostIndex<T> {
  private readonly exact = new Map<string, Claim<T>[]>();
  private readonly wild = new Map<string, Claim<T>[]>();

  add(pattern: HostPattern, value: T): void {
    const table = pattern.wildcard ? this.wild : this.exact;
    const key = pattern.wildcard ? pattern.host.slice(2) : pattern.host;
    let list = table.get(key);
    if (!list) table.set(key, (list = []));
    list.push(pattern.port === undefined ? { value } : { value, port: pattern.port });
  }

  /** `host` may carry `:port` (used when `port` is not given). */
  lookup(host: string, port?: number): T | null {
    const split = splitHostPort(host);
    const name = split.host;
    const p = port ?? split.port;
    const hit = pick(this.exact.get(name), p);
    if (hit !== null) return hit;
    let dot = name.indexOf('.');
    while (dot >= 0) {
      const suffix = name.slice(dot + 1);
      const w = pick(this.wild.get(suffix), p);
      if (w !== null) return w;
      dot = name.indexOf('.', dot + 1);
    }
    return null;
  }
}

/**
 * A claim naming the dialed port beats one without a port. When the port is
 * not known, port-specific claims match too (the first declared): inspecting
 * the traffic is safer than treating the host as unknown.
 */
function pick<T>(claims: Claim<T>[] | undefined, port: number | undefined): T | null {
  if (!claims) return null;
  let portless: T | null = null;
  for (const c of claims) {
    if (c.port === undefined) {
      if (portless === null) portless = c.value;
    } else if (c.port === port) {
      return c.value;
    }
  }
  if (portless !== null || port !== undefined) return portless;
  return claims[0]?.value ?? null;
}
