/**
 * The HTTPS gateway engine: one object per gateway, every ingress path
 * feeding the same exchange (same facts, same enforcer, same injection):
 *
 *   handleTlsConnection(socket, ctx)        TLS from the tunnel (SNI-routed, or an IP literal)
 *   handlePlainHttpConnection(socket, ctx)  plain HTTP to a declared endpoint (port 80, a virtual IP)
 *   startHttpProxy({ listen })              explicit proxy: CONNECT and absolute-form HTTP
 *   startEndpointListener({ endpointId, listen })  an https endpoint's `listen` sidecar
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { AuditSink, Enforcer, SecretResolver } from '../../gateway/contracts.js';
import { UpstreamPool } from './upstream.js';
import { acceptTls } from './tls-ingress.js';
import type { TransportContext } from '../../gateway/contracts.js';
import { servePlainHttp } from './plain-ingress.js';
import { startProxyListener, splitListen, type ProxyListener, type ProxyOptions } from './proxy.js';
import { normaliseServerName } from './target.js';
import type { CertificateSource, ConnectionInfo, EngineCore, HttpPolicy } from './types.js';
import type { WebSocketFrameHook } from './websocket.js';

export interface HttpEngineOptions {
  enforcer: Enforcer;
  /** The policy in force now (hot reload: called per connection / request). */
  policy: () => HttpPolicy;
  /** Values to scrub from everything the agent receives. */
  secrets: Pick<SecretResolver, 'allValues'>;
  /** The gateway CA (`openGatewayCa`). */
  ca: CertificateSource;
  /** DNS override for upstream connections (tests, split-horizon setups). */
  lookup?: net.LookupFunction | undefined;
  /** Sees every WebSocket frame; may close the session. */
  onWebSocketFrame?: WebSocketFrameHook | undefined;
  /**
   * The audit sink the enforcer writes to: requests refused before the policy
   * could see them (malformed, misdirected) are recorded there too.
   */
  audit?: Pick<AuditSink, 'append'> | undefined;
  /** Operational log lines (default: stderr). */
  log?: ((line: string) => void) | undefined;
  /** Upstream connect timeout (default 10 s). */
  connectTimeoutMs?: number | undefined;
  /** Overrides the policy's `limits.body_idle_timeout` (tests want less than a second). */
  bodyIdleTimeoutMs?: number | undefined;
}

export interface HttpEngine {
  handleTlsConnection(socket: Duplex, ctx: TransportContext): void;
  handlePlainHttpConnection(socket: Duplex, ctx: TransportContext): void;
  startHttpProxy(opts: ProxyOptions): Promise<ProxyListener>;
  startEndpointListener(opts: { endpointId: string; listen: string }): Promise<ProxyListener>;
  /** Stop: close the listeners this engine started, destroy open connections and upstream pools. */
  close(): Promise<void>;
}

export function createHttpEngine(opts: HttpEngineOptions): HttpEngine {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const core: EngineCore = {
    enforcer: opts.enforcer,
    policy: opts.policy,
    secrets: opts.secrets,
    ca: opts.ca,
    lookup: opts.lookup,
    upstream: new UpstreamPool({ lookup: opts.lookup, connectTimeoutMs: opts.connectTimeoutMs }),
    frameHook: opts.onWebSocketFrame,
    audit: opts.audit,
    log,
    sockets: new Set(),
    bodyIdleTimeoutMs: opts.bodyIdleTimeoutMs,
  };
  const listeners = new Set<ProxyListener>();

  return {
    handleTlsConnection(socket, ctx) {
      track(core, socket);
      acceptTls(core, socket, ctx).catch((err: unknown) => {
        log(`https: connection from ${ctx.peer.id} failed: ${err instanceof Error ? err.message : String(err)}`);
        socket.destroy();
      });
    },

    handlePlainHttpConnection(socket, ctx) {
      (socket as Partial<net.Socket>).setNoDelay?.(true);
      // The agent may half-close after its request (see acceptTls).
      socket.allowHalfOpen = true;
      const identity = ctx.dialedHost ? normaliseServerName(ctx.dialedHost) : null;
      const conn: ConnectionInfo = {
        peer: ctx.peer,
        profile: ctx.profile,
        scheme: 'http',
        identity,
        port: ctx.dialedPort ?? 80,
        endpointId: ctx.endpointId,
        proxy: false,
      };
      servePlain(core, socket, conn);
    },

    async startHttpProxy(p) {
      const l = await startProxyListener(core, p);
      listeners.add(l);
      return l;
    },

    async startEndpointListener({ endpointId, listen }) {
      const endpoint = core.policy().model.endpoints.get(endpointId);
      if (!endpoint) throw new Error(`no endpoint ${endpointId}`);
      const concrete = endpoint.hosts.find((h) => !h.wildcard);
      if (!concrete) throw new Error(`${endpointId} has only wildcard hosts; a listen sidecar needs one concrete host`);
      const upstream = { host: concrete.host, port: concrete.port ?? 443, tls: true };
      const { host, port } = splitListen(listen);
      const server = net.createServer({ allowHalfOpen: true }, (socket) => {
        socket.setNoDelay(true);
        const profile = core.policy().model.gateway.localProfile;
        const conn: ConnectionInfo = {
          peer: { id: `local:${endpointId}`, name: endpointId, address: `${socket.remoteAddress}:${socket.remotePort}` },
          profile,
          scheme: 'http',
          identity: null,
          port: undefined,
          endpointId,
          upstream,
          proxy: false,
        };
        servePlain(core, socket, conn);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      const l: ProxyListener = {
        address: server.address() as net.AddressInfo,
        close: () => new Promise<void>((resolve) => server.close(() => resolve())),
      };
      listeners.add(l);
      return l;
    },

    async close() {
      const closing = [...listeners].map((l) => l.close());
      listeners.clear();
      for (const s of core.sockets) s.destroy();
      core.sockets.clear();
      core.upstream.close();
      await Promise.all(closing);
    },
  };
}

function track(core: EngineCore, socket: Duplex): void {
  core.sockets.add(socket);
  socket.once('close', () => core.sockets.delete(socket));
}

/** Serve a cleartext connection (HTTP/1.1 or h2c); a failure closes it and is logged. */
function servePlain(core: EngineCore, socket: Duplex, conn: ConnectionInfo): void {
  servePlainHttp(core, socket, conn).catch((err: unknown) => {
    core.log(`http: connection from ${conn.peer.id} failed: ${err instanceof Error ? err.message : String(err)}`);
    socket.destroy();
  });
}
