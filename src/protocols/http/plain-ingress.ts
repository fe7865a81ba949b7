/**
 * Cleartext HTTP ingress: HTTP/1.1, or HTTP/2 with prior knowledge (h2c,
 * RFC 9113 §3.3) when the connection opens with the HTTP/2 connection
 * preface — how gRPC clients with insecure credentials and
 * `curl --http2-prior-knowledge` talk. Both feed the same exchange as the
 * TLS ingress. (The HTTP/1.1 `Upgrade: h2c` dance is not offered: RFC 9113
 * deprecates it, and the gateway drops the header like every other
 * hop-by-hop one.)
 */
import type { Duplex } from 'node:stream';
import { serveHttp1 } from './h1-server.js';
import { serveHttp2 } from './h2-server.js';
import { PeekError, peekBytes } from './peek.js';
import type { ConnectionInfo, EngineCore } from './types.js';

/** The client connection preface of HTTP/2 (RFC 9113 §3.4). */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** A connection that has sent nothing is closed after this long (as an idle HTTP/1.1 keep-alive connection is). */
const FIRST_BYTES_TIMEOUT_MS = 60_000;
/** Once bytes have started, the rest of the preface must follow within this (as a request head must). */
const PREFACE_TIMEOUT_MS = 30_000;

/**
 * Which protocol the first bytes of a cleartext connection speak: `h2` once
 * they hold the whole preface, `h1` as soon as they cannot be its start,
 * `more` while they are a strict prefix of it (any real HTTP/1.1 method
 * parts ways with "PRI" within three bytes).
 */
export function cleartextProtocol(bytes: Buffer): 'h1' | 'h2' | 'more' {
  const n = Math.min(bytes.length, H2_PREFACE.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== H2_PREFACE[i]) return 'h1';
  return n === H2_PREFACE.length ? 'h2' : 'more';
}

export interface PlainIngressTimeouts {
  /** For the first bytes (default 60 s). */
  firstBytesMs?: number;
  /** For the rest of a preface once it has started (default 30 s). */
  prefaceMs?: number;
}

export async function servePlainHttp(
  core: EngineCore,
  socket: Duplex,
  conn: ConnectionInfo,
  initial: Buffer = Buffer.alloc(0),
  timeouts: PlainIngressTimeouts = {},
): Promise<void> {
  socket.on('error', () => undefined);
  // Until a protocol serves it, the engine's close must still reach it.
  core.sockets.add(socket);
  socket.once('close', () => core.sockets.delete(socket));
  let bytes: Buffer;
  try {
    bytes = await peekBytes(socket, initial, (b) => b.length > 0, timeouts.firstBytesMs ?? FIRST_BYTES_TIMEOUT_MS, 'a request');
    if (cleartextProtocol(bytes) === 'more') {
      bytes = await peekBytes(socket, bytes, (b) => cleartextProtocol(b) !== 'more', timeouts.prefaceMs ?? PREFACE_TIMEOUT_MS, 'the rest of the HTTP/2 preface');
    }
  } catch (err) {
    if (!(err instanceof PeekError)) throw err;
    // Nothing was asked: there is nothing to answer or record.
    socket.destroy();
    return;
  }
  if (cleartextProtocol(bytes) === 'h2') {
    socket.unshift(bytes);
    serveHttp2(core, socket, conn);
  } else {
    serveHttp1(core, socket, conn, { initial: bytes });
  }
}
