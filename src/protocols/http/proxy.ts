/**
 * The explicit proxy listener (`gateway { proxy { listen = "127.0.0.1:3128" } }`)
 * for agents that cannot join a tunnel (`HTTPS_PROXY=http://127.0.0.1:3128`):
 *
 * - `CONNECT host:443` to a declared endpoint → 200, then the tunnel is
 *   served like any TLS ingress (terminated with a leaf, every request decided);
 * - `CONNECT` to an unknown host → passthrough (spliced, logged with bytes) or,
 *   with `unknown_host = "deny"`, a 403 to the CONNECT with the reason;
 * - absolute-form plain HTTP (`GET http://host/path`) → the same exchange as
 *   every other ingress.
 *
 * Requests arrive with `gateway.local_profile` and peer `local:proxy`.
 */
import net from 'node:net';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Peer } from '../../policy/types.js';
import { HttpParseError, type RequestHead } from './h1-parser.js';
import { parseAuthority } from './target.js';
import { serveHttp1 } from './h1-server.js';
import { acceptTls } from './tls-ingress.js';
import { recordRefusal } from './refusals.js';
import type { ConnectionInfo, EngineCore } from './types.js';

export interface ProxyListener {
  readonly address: net.AddressInfo;
  close(): Promise<void>;
}

export interface ProxyOptions {
  /** `host:port` (port 0 = any free port). */
  listen: string;
  /** Profile of proxied agents (default `gateway.local_profile`). */
  profile?: string | undefined;
}

export function splitListen(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(listen);
  if (!m) throw new Error(`invalid listen address "${listen}" (want host:port)`);
  return { host: m[1]!, port: Number(m[2]) };
}

export async function startProxyListener(core: EngineCore, opts: ProxyOptions): Promise<ProxyListener> {
  const { host, port } = splitListen(opts.listen);
  // allowHalfOpen: a client that half-closes after its request (`nc -N`, some
  // scripts) still gets the response; the gateway closes after answering.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.setNoDelay(true);
    const profile = opts.profile ?? core.policy().model.gateway.localProfile;
    const peer: Peer = { id: 'local:proxy', name: 'proxy', address: `${socket.remoteAddress}:${socket.remotePort}` };
    const conn: ConnectionInfo = { peer, profile, scheme: 'http', identity: null, port: undefined, proxy: true };
    serveHttp1(core, socket, conn, {
      onConnect: (head, s, rest) => {
        onConnect(core, s, head, rest, peer, profile).catch((err: unknown) => {
          core.log(`proxy: CONNECT failed: ${err instanceof Error ? err.message : String(err)}`);
          s.destroy();
        });
      },
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as net.AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}

async function onConnect(core: EngineCore, socket: Duplex, head: RequestHead, rest: Buffer, peer: Peer, profile: string): Promise<void> {
  let host: string;
  let port: number;
  try {
    const a = parseAuthority(head.target);
    if (a.port === undefined) throw new HttpParseError(400, 'CONNECT target needs host:port');
    host = a.host;
    port = a.port;
  } catch (err) {
    const reason = err instanceof Error ? err.message : 'bad CONNECT target';
    const bytesOut = reply(socket, 400, reason, true);
    recordRefusal(core, { peer, profile, endpoint: null, host: '', method: head.method, target: head.target, status: '400', reason, bytesIn: head.headBytes, bytesOut });
    return;
  }
  const policy = core.policy();
  const endpoint = policy.findEndpoint(host, port, profile);
  if (!endpoint && policy.model.defaults.unknownHost === 'deny') {
    // Refuse at the CONNECT, where a proxy client shows the status and reason.
    const enf = await core.enforcer.enforce({ family: 'http', host, port, peer, profile, facts: {} });
    if (!enf.allowed) {
      const bytes = reply(socket, 403, enf.reason, true);
      enf.finish({ bytesIn: head.headBytes, bytesOut: bytes, status: '403' });
      return;
    }
    enf.finish({ bytesIn: head.headBytes, bytesOut: 0, status: 'connect' });
  }
  reply(socket, 200, 'Connection Established', false);
  await acceptTls(core, socket, { peer, profile, dialedPort: port }, { initial: rest, connectHost: host, connectPort: port, allowPlain: true });
}

/** Answer a CONNECT; returns the bytes written. */
function reply(socket: Duplex, status: number, reason: string, close: boolean): number {
  let out: string;
  if (status === 200) {
    out = 'HTTP/1.1 200 Connection Established\r\n\r\n';
  } else {
    const body = `clawpatrol: ${reason}\n`;
    out =
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\nx-clawpatrol: ${status === 403 ? 'denied' : 'bad_request'}\r\n\r\n${body}`;
  }
  if (close) socket.end(out);
  else socket.write(out);
  return Buffer.byteLength(out);
}
