/**
 * TLS ingress: read the ClientHello without consuming it, then either splice
 * the connection untouched (a host no endpoint claims, passthrough) or
 * terminate TLS with a leaf from the gateway CA — for the SNI name, or for the
 * dialed IP when the client sent none — and serve HTTP/2 or HTTP/1.1 as ALPN
 * chose.
 */
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { MAX_CLIENT_HELLO, parseClientHello, type ClientHelloResult } from './client-hello.js';
import { normaliseServerName } from './target.js';
import { serveHttp1 } from './h1-server.js';
import { serveHttp2 } from './h2-server.js';
import { splice } from './splice.js';
import { servePlainHttp } from './plain-ingress.js';
import { peekBytes } from './peek.js';
import { recordRefusal } from './refusals.js';
import type { ConnectionInfo, EngineCore } from './types.js';
import type { TransportContext } from '../../gateway/contracts.js';

export interface TlsIngressOptions {
  /** Bytes already read from the socket. */
  initial?: Buffer | undefined;
  /** The host (and port) named in CONNECT: the server name must agree. */
  connectHost?: string | undefined;
  connectPort?: number | undefined;
  /** Plain HTTP is acceptable instead of TLS (a CONNECT tunnel to port 80). */
  allowPlain?: boolean | undefined;
  /** Time allowed for the ClientHello (default 10 s). */
  helloTimeoutMs?: number | undefined;
}

export async function acceptTls(core: EngineCore, socket: Duplex, t: TransportContext, o: TlsIngressOptions = {}): Promise<void> {
  socket.on('error', () => undefined);
  // A client may half-close once its request is sent and still expect the
  // answer. Whoever accepted the socket (the tunnel transport, a listener)
  // may have left Node's default, which ends our side on the agent's FIN;
  // the TLS socket made over it inherits this setting.
  socket.allowHalfOpen = true;
  // Request/response traffic: small writes must leave at once.
  (socket as Partial<Socket>).setNoDelay?.(true);
  let peeked: { bytes: Buffer; result: ClientHelloResult };
  try {
    peeked = await peekClientHello(socket, o.initial ?? Buffer.alloc(0), o.helloTimeoutMs ?? 10_000);
  } catch (err) {
    core.log(`https: no ClientHello from ${t.peer.id}: ${err instanceof Error ? err.message : String(err)}`);
    socket.destroy();
    return;
  }
  const { bytes, result } = peeked;
  const port = o.connectPort ?? t.dialedPort ?? 443;
  const policy = core.policy();
  const profile = t.profile;

  if (result.kind === 'not-tls') {
    if (!o.allowPlain) {
      core.log(`https: ${t.peer.id} sent something other than TLS to port ${port}`);
      socket.destroy();
      return;
    }
    const conn: ConnectionInfo = { peer: t.peer, profile, scheme: 'http', identity: o.connectHost ?? null, port, endpointId: t.endpointId, proxy: false };
    await servePlainHttp(core, socket, conn, bytes);
    return;
  }
  if (result.kind === 'error' || result.kind === 'incomplete') {
    core.log(`https: bad ClientHello from ${t.peer.id}: ${result.kind === 'error' ? result.reason : 'incomplete'}`);
    socket.destroy();
    return;
  }

  // Host tricks at the TLS layer: dropped without an answer (there is no TLS session to answer in), and recorded.
  const drop = (host: string, reason: string) => {
    socket.destroy();
    recordRefusal(core, { peer: t.peer, profile: t.profile, endpoint: t.endpointId ?? null, host, status: 'refused', reason, bytesIn: bytes.length, bytesOut: 0 });
  };
  const sni = result.serverName === null ? null : normaliseServerName(result.serverName);
  if (result.serverName !== null && sni === null) {
    drop(o.connectHost ?? t.dialedHost ?? '', `invalid TLS server name ${JSON.stringify(result.serverName.slice(0, 255))}`);
    return;
  }
  if (o.connectHost && sni && sni !== o.connectHost) {
    drop(o.connectHost, `TLS server name "${sni}" inside a CONNECT to "${o.connectHost}"`);
    return;
  }
  const dialedHost = t.dialedHost ? normaliseServerName(t.dialedHost) : null;
  const localIp = (socket as Partial<Socket>).localAddress?.replace(/^::ffff:/, '');
  const identity = sni ?? o.connectHost ?? dialedHost ?? t.dialedIp ?? localIp ?? null;
  if (!identity) {
    core.log(`https: cannot tell which host ${t.peer.id} wants (no SNI, no dialed address)`);
    socket.destroy();
    return;
  }

  const endpoint = t.endpointId ? policy.model.endpoints.get(t.endpointId) ?? null : policy.findEndpoint(identity, port, profile);
  if (!endpoint && policy.model.defaults.unknownHost === 'passthrough') {
    const action = { family: 'http' as const, host: identity, port, peer: t.peer, facts: {}, ...(profile !== undefined ? { profile } : {}) };
    const enf = await core.enforcer.enforce(action);
    if (enf.allowed && enf.decision.passthrough) {
      // Relay to where the agent was going: the original destination when known.
      splice(core, socket, bytes, { host: t.dialedIp ?? identity, port }, enf);
      return;
    }
    // Not passed through (e.g. an unknown profile): terminate and let every request be refused with a reason.
    enf.finish({ bytesIn: 0, bytesOut: 0, status: 'terminated' });
  }

  let server: tls.Server;
  try {
    server = sni ? tls.createServer(serverOptions(core, true)) : await serverForIdentity(core, identity);
  } catch (err) {
    core.log(`https: no certificate for "${identity}": ${err instanceof Error ? err.message : String(err)}`);
    socket.destroy();
    return;
  }
  server.once('secureConnection', (tlsSocket: tls.TLSSocket) => {
    const conn: ConnectionInfo = { peer: t.peer, profile, scheme: 'https', identity, port, endpointId: t.endpointId, proxy: false };
    if (tlsSocket.alpnProtocol === 'h2') serveHttp2(core, tlsSocket, conn);
    else serveHttp1(core, tlsSocket, conn);
  });
  server.once('tlsClientError', (err: Error, s: tls.TLSSocket) => {
    core.log(`https: TLS handshake with ${t.peer.id} for "${identity}" failed: ${err.message}`);
    s.destroy();
  });
  socket.unshift(bytes);
  server.emit('connection', socket);
}

function serverOptions(core: EngineCore, withSni: boolean): tls.TlsOptions {
  const opts: tls.TlsOptions = { ALPNProtocols: ['h2', 'http/1.1'], handshakeTimeout: 10_000 };
  if (withSni) {
    opts.SNICallback = (name, cb) => {
      core.ca.secureContextFor(name).then(
        (ctx) => cb(null, ctx),
        (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
      );
    };
  }
  return opts;
}

/** A client without SNI (an IP literal): the leaf for that IP is the default certificate. */
async function serverForIdentity(core: EngineCore, identity: string): Promise<tls.Server> {
  const leaf = await core.ca.leaf(identity);
  return tls.createServer({ ...serverOptions(core, false), cert: leaf.certPem, key: leaf.keyPem });
}

/** Collect bytes until the ClientHello is complete (or clearly not TLS), then pause. Nothing is consumed for good. */
async function peekClientHello(socket: Duplex, initial: Buffer, timeoutMs: number): Promise<{ bytes: Buffer; result: ClientHelloResult }> {
  let result: ClientHelloResult | null = null;
  const bytes = await peekBytes(
    socket,
    initial,
    (buf) => {
      result = parseClientHello(buf);
      return result.kind !== 'incomplete' || buf.length > MAX_CLIENT_HELLO + 5 * 4;
    },
    timeoutMs,
    'the ClientHello',
  );
  return { bytes, result: result! };
}
