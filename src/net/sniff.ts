/**
 * What the first bytes of a connection say about where the agent meant to
 * go: the SNI of a TLS ClientHello, or the Host of a plain HTTP/1 request.
 * Pure functions over the bytes seen so far; each answers "need more",
 * "not this protocol", or the name (null when the protocol carries none or
 * carries an unusable one). Nothing here trusts a length field past the
 * bytes actually present.
 */

/** Bytes the dispatcher buffers at most before deciding (a ClientHello with post-quantum key shares is ~2 KB). */
export const SNIFF_LIMIT = 16 * 1024;

export type TlsSniff = { kind: 'need-more' } | { kind: 'not-tls' } | { kind: 'tls'; sni: string | null };
export type HttpSniff = { kind: 'need-more' } | { kind: 'not-http' } | { kind: 'http'; host: string | null };

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** Lower-case, trailing dot removed; null when it is not a plausible DNS name. */
export function normaliseServerName(name: string): string | null {
  let n = name.toLowerCase();
  if (n.endsWith('.')) n = n.slice(0, -1);
  return HOSTNAME.test(n) ? n : null;
}

const CONTENT_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0x0000;

/**
 * Reassemble the handshake bytes carried by the leading TLS records. Returns
 * null when the stream is not (or stops being) handshake records.
 */
function handshakeBytes(buf: Buffer): { bytes: Buffer; complete: boolean } | null {
  const parts: Buffer[] = [];
  let off = 0;
  while (off + 5 <= buf.length) {
    if (buf[off] !== CONTENT_HANDSHAKE) return parts.length ? { bytes: Buffer.concat(parts), complete: true } : null;
    const major = buf[off + 1];
    if (major !== 0x03) return null;
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > 16384 + 2048) return null;
    if (off + 5 + len > buf.length) {
      parts.push(buf.subarray(off + 5));
      return { bytes: Buffer.concat(parts), complete: false };
    }
    parts.push(buf.subarray(off + 5, off + 5 + len));
    off += 5 + len;
  }
  if (off < buf.length && buf[off] !== CONTENT_HANDSHAKE) return null;
  return { bytes: Buffer.concat(parts), complete: false };
}

export function sniffTls(buf: Buffer): TlsSniff {
  if (buf.length === 0) return { kind: 'need-more' };
  if (buf[0] !== CONTENT_HANDSHAKE) return { kind: 'not-tls' };
  if (buf.length < 5) return { kind: 'need-more' };
  const hs = handshakeBytes(buf);
  if (!hs) return { kind: 'not-tls' };
  const b = hs.bytes;
  if (b.length < 4) return hs.complete ? { kind: 'tls', sni: null } : { kind: 'need-more' };
  if (b[0] !== HANDSHAKE_CLIENT_HELLO) return { kind: 'tls', sni: null };
  const bodyLen = b.readUIntBE(1, 3);
  if (b.length < 4 + bodyLen) {
    if (hs.complete) return { kind: 'tls', sni: null };
    // Give up waiting once the buffer limit is reached: a TLS stream without a usable name.
    return buf.length >= SNIFF_LIMIT ? { kind: 'tls', sni: null } : { kind: 'need-more' };
  }
  return { kind: 'tls', sni: serverNameOf(b.subarray(4, 4 + bodyLen)) };
}

/** The host_name of the server_name extension of a ClientHello body, or null. */
function serverNameOf(body: Buffer): string | null {
  let off = 2 + 32; // client_version, random
  if (off + 1 > body.length) return null;
  off += 1 + body[off]!; // session_id
  if (off + 2 > body.length) return null;
  off += 2 + body.readUInt16BE(off); // cipher_suites
  if (off + 1 > body.length) return null;
  off += 1 + body[off]!; // compression_methods
  if (off + 2 > body.length) return null;
  const extEnd = off + 2 + body.readUInt16BE(off);
  off += 2;
  if (extEnd > body.length) return null;
  let found: string | null = null;
  let seen = false;
  while (off + 4 <= extEnd) {
    const type = body.readUInt16BE(off);
    const len = body.readUInt16BE(off + 2);
    const data = body.subarray(off + 4, off + 4 + len);
    off += 4 + len;
    if (off > extEnd) return null;
    if (type !== EXT_SERVER_NAME) continue;
    // Two server_name extensions are a protocol violation and an ambiguity: no name.
    if (seen) return null;
    seen = true;
    found = hostNameFromList(data);
  }
  return found;
}

function hostNameFromList(data: Buffer): string | null {
  if (data.length < 2) return null;
  const listEnd = 2 + data.readUInt16BE(0);
  if (listEnd > data.length) return null;
  let off = 2;
  let name: string | null = null;
  while (off + 3 <= listEnd) {
    const type = data[off]!;
    const len = data.readUInt16BE(off + 1);
    if (off + 3 + len > listEnd) return null;
    if (type === 0) {
      if (name !== null) return null; // two host names: ambiguous
      const raw = data.subarray(off + 3, off + 3 + len);
      // Only printable ASCII can be a host name; anything else is not usable.
      if (!raw.every((c) => c > 0x20 && c < 0x7f)) return null;
      name = normaliseServerName(raw.toString('latin1'));
      if (name === null) return null;
    }
    off += 3 + len;
  }
  return name;
}

const METHOD = /^[A-Z]{1,20}$/;
const REQUEST_LINE = /^([A-Z]{1,20}) (\S+) HTTP\/1\.[01]$/;

export function sniffHttp(buf: Buffer): HttpSniff {
  if (buf.length === 0) return { kind: 'need-more' };
  // The method token: upper-case letters up to the first space.
  const space = buf.indexOf(0x20);
  const head = buf.subarray(0, space < 0 ? Math.min(buf.length, 21) : space).toString('latin1');
  if (!METHOD.test(head) || (space < 0 && head.length > 20)) return { kind: 'not-http' };
  if (space < 0) return { kind: 'need-more' };
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return buf.length >= SNIFF_LIMIT ? { kind: 'http', host: null } : { kind: 'need-more' };
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const request = REQUEST_LINE.exec(lines[0] ?? '');
  if (!request?.[2]) return { kind: 'not-http' };
  let host: string | null = null;
  let hosts = 0;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    if (line.slice(0, colon).toLowerCase() !== 'host') continue;
    hosts++;
    host = line.slice(colon + 1).trim();
  }
  const target = request[2];
  const absolute = /^https?:\/\/([^/?#]+)/i.exec(target);
  // RFC 9112 §3.2.2: an absolute-form target overrides Host. Several Host fields: no usable name.
  const raw = absolute?.[1] ?? (hosts === 1 ? host : null);
  if (raw === null) return { kind: 'http', host: null };
  const withoutUser = raw.slice(raw.lastIndexOf('@') + 1);
  const name = withoutUser.startsWith('[') ? null : withoutUser.replace(/:\d+$/, '');
  return { kind: 'http', host: name === null ? null : normaliseServerName(name) };
}
