/**
 * What the first bytes of a connection say about where the agent meant to
 * go: the SNI of a TLS ClientHello, or the authority of a plain HTTP/1
 * request. The parsing is the HTTPS engine's own sans-I/O code (its
 * ClientHello reader, request parser and host normalisation), so dispatch
 * and the engine can never read a name differently. Each answer is "need
 * more", "not this protocol", or the name (null when the protocol carries
 * none or an unusable one).
 */
import { parseClientHello } from '../protocols/http/client-hello.js';
import { Http1RequestParser } from '../protocols/http/h1-parser.js';
import { normaliseServerName, parseAuthority, parseRequestTarget } from '../protocols/http/target.js';

/** Bytes the dispatcher buffers at most before deciding (a ClientHello with post-quantum key shares is ~2 KB). */
export const SNIFF_LIMIT = 16 * 1024;

export type TlsSniff = { kind: 'need-more' } | { kind: 'not-tls' } | { kind: 'tls'; sni: string | null };
export type HttpSniff = { kind: 'need-more' } | { kind: 'not-http' } | { kind: 'http'; host: string | null };

export { normaliseServerName };

export function sniffTls(buf: Buffer): TlsSniff {
  const r = parseClientHello(buf);
  switch (r.kind) {
    case 'incomplete':
      return buf.length >= SNIFF_LIMIT ? { kind: 'tls', sni: null } : { kind: 'need-more' };
    case 'not-tls':
      return { kind: 'not-tls' };
    case 'error':
      // TLS-shaped but unreadable: a TLS stream without a usable name.
      return { kind: 'tls', sni: null };
    case 'hello':
      return { kind: 'tls', sni: r.serverName === null ? null : normaliseServerName(r.serverName) };
  }
}

/** An HTTP/1 method token followed by a space, judged on the bytes so far. */
function methodPrefix(buf: Buffer): 'yes' | 'no' | 'maybe' {
  const n = Math.min(buf.length, 21);
  for (let i = 0; i < n; i++) {
    const c = buf[i]!;
    if (c === 0x20) return i > 0 ? 'yes' : 'no';
    if (c < 0x41 || c > 0x5a) return 'no';
  }
  return n >= 21 ? 'no' : 'maybe';
}

export function sniffHttp(buf: Buffer): HttpSniff {
  const prefix = methodPrefix(buf);
  if (prefix === 'no') return { kind: 'not-http' };
  if (prefix === 'maybe') return { kind: 'need-more' };
  const parser = new Http1RequestParser({ maxRequestLine: SNIFF_LIMIT, maxHeadBytes: SNIFF_LIMIT });
  parser.feed(buf);
  const ev = parser.next();
  if (ev === null) return buf.length >= SNIFF_LIMIT ? { kind: 'http', host: null } : { kind: 'need-more' };
  if (ev.type !== 'head') return { kind: 'http', host: null };
  const hosts = ev.head.headers.filter((h) => h.name.toLowerCase() === 'host');
  try {
    const target = parseRequestTarget(ev.head.target, ev.head.method);
    // RFC 9112 §3.2.2: an absolute-form (or CONNECT) authority wins over Host; several Host fields name nothing.
    const authority = target.authority ?? (hosts.length === 1 ? hosts[0]!.value : null);
    return { kind: 'http', host: authority === null ? null : parseAuthority(authority).host };
  } catch {
    return { kind: 'http', host: null };
  }
}
