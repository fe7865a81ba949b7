/**
 * A gateway process for the transport tests, run inside the gateway
 * namespace (`node --import tsx`): the real WireGuard transport, the real
 * state store and control server, and stub engines that record the
 * ConnectionContext they were handed and answer it back to the agent in
 * the engine's protocol (TLS really terminated, HTTP really answered).
 * Talks to the test over the IPC channel.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { Socket } from 'node:net';
import { openStore } from '../../../src/store/index.js';
import { startControlServer, ensureAdminToken, type ControlTls } from '../../../src/gateway/control-server.js';
import { startWireguardTransport, type TransportLimits } from '../../../src/net/transport.js';
import type { ConnectionContext, Directory, DirectoryEndpoint, DnsEndpoint } from '../../../src/net/types.js';
import { HostIndex, parseHostPattern } from '../../../src/policy/hosts.js';
import type { EndpointType } from '../../../src/policy/types.js';
import { makeLeaf } from './harness.js';

export interface GatewayHostConfig {
  stateDir: string;
  listenPort: number;
  subnet: string;
  unknownHost: 'passthrough' | 'deny';
  endpoints: Array<{ id: string; type: EndpointType; hosts: string[] }>;
  /** profile → endpoint ids */
  profiles: Record<string, string[]>;
  placeholders?: Record<string, Array<{ credential: string; placeholder: string; env?: string }>>;
  dnsUpstream: string[];
  caCertPath: string;
  caKeyPath: string;
  caFingerprint: string;
  /** Control server port (fixed, so a restarted gateway is where clients expect it). */
  controlPort: number;
  /** Per-device limits of the transport. */
  limits?: TransportLimits;
  /** A shared PostgreSQL store (URL) instead of SQLite in stateDir. */
  postgres?: string;
  /** How often the transport looks for devices enrolled or revoked through other gateways. */
  syncIntervalMs?: number;
}

const cfg = JSON.parse(process.env.CP_TEST_GATEWAY!) as GatewayHostConfig;
const send = (m: unknown) => process.send?.(m);
let unknownHost = cfg.unknownHost;

const directory: Directory = {
  endpointsForDns: (() => {
    const list: DnsEndpoint[] = cfg.endpoints.map((e) => ({ id: e.id, type: e.type, hosts: e.hosts }));
    return () => list;
  })(),
  endpointFor(host: string, port: number, profile: string): DirectoryEndpoint | null {
    const idx = new HostIndex<string>();
    for (const id of cfg.profiles[profile] ?? []) {
      const ep = cfg.endpoints.find((e) => e.id === id)!;
      for (const h of ep.hosts) {
        const p = parseHostPattern(h);
        if (p.ok) idx.add(p.pattern, id);
      }
    }
    const id = idx.lookup(host, port);
    return id ? { id, type: cfg.endpoints.find((e) => e.id === id)!.type } : null;
  },
  unknownHost: () => unknownHost,
  profiles: () => Object.keys(cfg.profiles),
  placeholdersFor: (p) => cfg.placeholders?.[p] ?? [],
};

const cert = readFileSync(cfg.caCertPath, 'utf8');
const key = readFileSync(cfg.caKeyPath, 'utf8');
const leafDir = join(cfg.stateDir, 'control-leaves');
const leaves = new Map<string, SecureContext>();
/** The control server's TLS: leaves of the test CA (openssl), like the gateway's own CA does it. */
const controlTls: ControlTls = {
  async secureContextFor(hostOrIp: string) {
    let ctx = leaves.get(hostOrIp);
    if (!ctx) {
      mkdirSync(leafDir, { recursive: true });
      const leaf = makeLeaf(leafDir, { certPath: cfg.caCertPath, keyPath: cfg.caKeyPath }, hostOrIp);
      ctx = createSecureContext({ cert: readFileSync(leaf.certPath, 'utf8'), key: readFileSync(leaf.keyPath, 'utf8') });
      leaves.set(hostOrIp, ctx);
    }
    return ctx;
  },
};
const line = (engine: string, ctx: ConnectionContext) => JSON.stringify({ engine, ...ctx }) + '\n';

function hold(engine: string, socket: Socket | TLSSocket, ctx: ConnectionContext, write: (s: string) => void): void {
  send({ type: 'engine', engine, ctx });
  write(line(engine, ctx));
  // Echo afterwards, until the agent or the gateway closes: an established session.
  socket.on('data', (d: Buffer) => socket.write(d));
  socket.on('error', () => {});
  socket.on('close', () => send({ type: 'engine-closed', engine, peer: ctx.peer.id }));
}

const engines = {
  tls(socket: Socket, ctx: ConnectionContext) {
    const t = new TLSSocket(socket, { isServer: true, secureContext: createSecureContext({ cert, key }) });
    t.on('error', () => t.destroy());
    t.once('secure', () => {
      // An HTTP client (curl) speaks first: answer it in HTTP; otherwise greet and echo.
      const timer = setTimeout(() => {
        t.off('data', onRequest);
        hold('tls', t, ctx, (s) => t.write(s));
      }, 150);
      const onRequest = (d: Buffer) => {
        clearTimeout(timer);
        t.off('data', onRequest);
        send({ type: 'engine', engine: 'tls', ctx, requestLine: d.toString('latin1').split('\r\n')[0] });
        const body = line('tls', ctx);
        t.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      };
      t.on('data', onRequest);
    });
  },
  http(socket: Socket, ctx: ConnectionContext) {
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      send({ type: 'engine', engine: 'http', ctx, requestLine: head.split('\r\n')[0] });
      const body = line('http', ctx);
      socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    };
    socket.on('data', onData);
    socket.on('error', () => {});
  },
  postgres(socket: Socket, ctx: ConnectionContext) {
    hold('postgres', socket, ctx, (s) => socket.write(s));
  },
};

async function main(): Promise<void> {
  const store = await openStore(cfg.postgres ? { postgres: cfg.postgres } : { stateDir: cfg.stateDir });
  const adminToken = ensureAdminToken(cfg.stateDir);
  const transport = await startWireguardTransport({
    wireguard: { subnetCidr: cfg.subnet, listenPort: cfg.listenPort },
    stateDir: cfg.stateDir,
    kv: store.kv,
    directory,
    engines,
    ca: { certPem: cert, fingerprintSha256: cfg.caFingerprint },
    dnsUpstream: cfg.dnsUpstream,
    ...(cfg.limits ? { limits: cfg.limits } : {}),
    ...(cfg.syncIntervalMs !== undefined ? { syncIntervalMs: cfg.syncIntervalMs } : {}),
    events: { onConnection: (e) => send({ type: 'connection', event: e }) },
    log: (l) => send({ type: 'log', line: l }),
  });
  const control = await startControlServer({
    listen: `0.0.0.0:${cfg.controlPort}`,
    adminToken,
    routes: [transport.route],
    tls: controlTls,
    log: (l) => send({ type: 'log', line: l }),
  });
  const port = (control.server.address() as { port: number }).port;

  process.on('message', (m: { id: number; cmd: string; args?: Record<string, unknown> }) => {
    const reply = (result: unknown, error?: string) => send({ type: 'reply', id: m.id, result, error });
    void (async () => {
      try {
        switch (m.cmd) {
          case 'mint':
            return reply(await transport.mintToken(String(m.args!.profile), Number(m.args!.ttlSec ?? 600)));
          case 'revoke':
            return reply(await transport.revoke(String(m.args!.id)));
          case 'devices':
            return reply(await transport.devices());
          case 'unknownHost':
            unknownHost = m.args!.mode as 'passthrough' | 'deny';
            return reply(true);
          case 'close':
            await control.close();
            await transport.close();
            await store.close();
            reply(true);
            setTimeout(() => process.exit(0), 50);
            return;
          default:
            return reply(null, `unknown command ${m.cmd}`);
        }
      } catch (err) {
        reply(null, err instanceof Error ? err.message : String(err));
      }
    })();
  });
  send({ type: 'ready', controlPort: port, adminToken, publicKey: transport.publicKey, gw4: transport.gatewayAddress4, gw6: transport.gatewayAddress6 });
}

main().catch((err: unknown) => {
  send({ type: 'fatal', error: err instanceof Error ? err.stack : String(err) });
  setTimeout(() => process.exit(1), 50);
});
