/**
 * Read the server name (SNI) and ALPN list from a TLS ClientHello without
 * consuming it, so the gateway can choose between terminating TLS (declared
 * endpoint) and splicing the bytes untouched (unknown host, passthrough).
 * Sans-I/O: give it the bytes received so far.
 */

export type ClientHelloResult =
  | { kind: 'incomplete' }
  | { kind: 'not-tls' }
  | { kind: 'error'; reason: string }
  | { kind: 'hello'; serverName: string | null; alpn: string[] };

/** A ClientHello larger than this is refused (post-quantum key shares are ~1.2 KiB; this leaves room). */
export const MAX_CLIENT_HELLO = 32 * 1024;

const HANDSHAKE = 22;

export function parseClientHello(buf: Buffer): ClientHelloResult {
  if (buf.length === 0) return { kind: 'incomplete' };
  if (buf[0] !== HANDSHAKE) return { kind: 'not-tls' };
  // Reassemble the handshake message from as many records as it spans.
  const parts: Buffer[] = [];
  let have = 0;
  let need = -1;
  let off = 0;
  while (need === -1 || have < need) {
    if (buf.length < off + 5) return { kind: 'incomplete' };
    if (buf[off] !== HANDSHAKE) return { kind: 'error', reason: 'ClientHello interleaved with another record type' };
    if (buf[off + 1] !== 3) return { kind: 'error', reason: 'not a TLS record' };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 256) return { kind: 'error', reason: 'bad TLS record length' };
    if (buf.length < off + 5 + len) return { kind: 'incomplete' };
    parts.push(buf.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need === -1 && have >= 4) {
      const first = Buffer.concat(parts);
      if (first[0] !== 1) return { kind: 'error', reason: 'first handshake message is not a ClientHello' };
      need = 4 + first.readUIntBE(1, 3);
      if (need > MAX_CLIENT_HELLO) return { kind: 'error', reason: 'ClientHello too large' };
    }
  }
  const msg = Buffer.concat(parts).subarray(4, need);
  try {
    return { kind: 'hello', ...readHello(msg) };
  } catch (err) {
    return { kind: 'error', reason: err instanceof Error ? err.message : 'malformed ClientHello' };
  }
}

function readHello(m: Buffer): { serverName: string | null; alpn: string[] } {
  let p = 2 + 32; // legacy_version, random
  const need = (n: number) => {
    if (p + n > m.length) throw new Error('truncated ClientHello');
  };
  need(1);
  p += 1 + m[p]!; // session id
  need(2);
  p += 2 + m.readUInt16BE(p); // cipher suites
  need(1);
  p += 1 + m[p]!; // compression methods
  let serverName: string | null = null;
  const alpn: string[] = [];
  if (p === m.length) return { serverName, alpn };
  need(2);
  const extEnd = p + 2 + m.readUInt16BE(p);
  p += 2;
  if (extEnd > m.length) throw new Error('truncated ClientHello extensions');
  // RFC 8446 §4.2: at most one extension of a type. Two server_name
  // extensions would let the name we route by differ from the one the
  // server (or a TLS library that takes the first) acts on, so any repeat
  // is refused rather than resolved.
  const seen = new Set<number>();
  while (p < extEnd) {
    need(4);
    const type = m.readUInt16BE(p);
    const len = m.readUInt16BE(p + 2);
    p += 4;
    need(len);
    if (seen.has(type)) throw new Error(`duplicate TLS extension ${type}`);
    seen.add(type);
    const body = m.subarray(p, p + len);
    p += len;
    if (type === 0) serverName = readServerName(body);
    else if (type === 16) alpn.push(...readAlpn(body));
  }
  return { serverName, alpn };
}

function readServerName(b: Buffer): string | null {
  if (b.length < 2) throw new Error('malformed server_name extension');
  let p = 2;
  const end = Math.min(b.length, 2 + b.readUInt16BE(0));
  let hostName: string | null = null;
  while (p + 3 <= end) {
    const type = b[p]!;
    const len = b.readUInt16BE(p + 1);
    p += 3;
    if (p + len > end) throw new Error('malformed server_name extension');
    if (type === 0) {
      // RFC 6066 §3: one name per type; a second host_name is the same ambiguity as a second extension.
      if (hostName !== null) throw new Error('more than one host_name in server_name');
      hostName = b.toString('latin1', p, p + len);
      if (!/^[\x21-\x7e]+$/.test(hostName)) throw new Error('server name has invalid characters');
    }
    p += len;
  }
  return hostName;
}

function readAlpn(b: Buffer): string[] {
  const out: string[] = [];
  if (b.length < 2) return out;
  let p = 2;
  const end = Math.min(b.length, 2 + b.readUInt16BE(0));
  while (p < end) {
    const len = b[p]!;
    p += 1;
    out.push(b.toString('latin1', p, p + len));
    p += len;
  }
  return out;
}
