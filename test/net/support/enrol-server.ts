/**
 * The enrolment API as the gateway serves it, without WireGuard: a real
 * SQLite store, the real vault and gateway CA, the real enrolment routes and
 * peer registry, mounted on the real control server with TLS on the same
 * port. `call` talks to it like the CLI does (TLS pinned to the gateway CA),
 * or in clear text with `{ plain: true }`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { openStore, type Store } from '../../../src/store/index.js';
import { openVault, openGatewayCa, type GatewayCa, type Vault } from '../../../src/vault/index.js';
import { startControlServer, type ControlServer } from '../../../src/gateway/control-server.js';
import { createEnrolRoutes } from '../../../src/net/enrol-routes.js';
import { Enrolment } from '../../../src/net/enrolment.js';
import { PeerRegistry, type PeerRecord } from '../../../src/net/peers.js';
import { parseCidr } from '../../../src/net/ip.js';
import type { Directory } from '../../../src/net/types.js';

export const ADMIN = 'admin-token-for-tests';

export const directory: Directory = {
  endpointsForDns: () => [],
  endpointFor: () => null,
  unknownHost: () => 'deny',
  profiles: () => ['dev', 'ops'],
  placeholdersFor: (p) => (p === 'dev' ? [{ credential: 'bearer_token.gh', placeholder: 'cp_ph_gh', env: 'GITHUB_TOKEN' }] : []),
};

export interface Answer {
  status: number;
  body: Record<string, unknown>;
}

export interface EnrolServer {
  dir: string;
  store: Store;
  ca: GatewayCa;
  server: ControlServer;
  port: number;
  peers: PeerRegistry;
  /** Device ids the routes removed (revoke or leave). */
  removed: string[];
  /** Move the enrolment clock. */
  advance(ms: number): void;
  call(method: string, path: string, body?: unknown, token?: string, opts?: { plain?: boolean }): Promise<Answer>;
  close(): Promise<void>;
}

function collect(res: IncomingMessage): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let text = '';
    res.on('data', (d: Buffer) => (text += d.toString()));
    res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
    res.on('error', reject);
  });
}

export function deviceInfo(p: PeerRecord) {
  return {
    id: p.id, name: p.name, profile: p.profile, address4: p.address4, address6: p.address6, publicKey: p.publicKey,
    enrolledBy: p.enrolledBy, createdAt: p.createdAt, lastHandshake: null, endpoint: null, rxBytes: 0, txBytes: 0, connections: 0,
  };
}

export async function startEnrolServer(opts: { subnet4?: string; listen?: string } = {}): Promise<EnrolServer> {
  const dir = mkdtempSync(join(tmpdir(), 'cp-enrol-'));
  const stateDir = join(dir, 'state');
  const store = await openStore({ stateDir });
  let vault: Vault | undefined;
  try {
    vault = await openVault({ store, stateDir, model: () => ({ credentials: new Map() }), env: {}, key: 'create', refreshMs: 0 });
    const ca = await openGatewayCa(vault);
    const peers = await PeerRegistry.open({ kv: store.kv, subnet4: parseCidr(opts.subnet4 ?? '10.55.0.0/29'), subnet6: parseCidr('fd7c::/64') });
    let now = Date.now();
    const enrolment = new Enrolment(store.kv, () => now);
    const removed: string[] = [];
    const route = createEnrolRoutes({
      enrolment,
      peers,
      directory,
      ca: { certPem: ca.caCertPem, fingerprintSha256: ca.fingerprintSha256 },
      addPeer: (input) => peers.add(input),
      removePeer: async (id) => {
        removed.push(id);
        return { revoked: (await peers.remove(id)) !== undefined, connectionsClosed: 0 };
      },
      joinResult: async (p, deviceToken) => ({
        device: deviceInfo(p),
        deviceToken,
        wireguard: { gatewayPublicKey: 'k', endpoint: null, listenPort: 51820, address4: p.address4, address6: p.address6, dns: ['10.55.0.1'], mtu: 1420, persistentKeepalive: 25 },
        caFingerprint: ca.fingerprintSha256,
        placeholders: directory.placeholdersFor(p.profile),
      }),
      deviceInfo: async (p) => deviceInfo(p),
      devices: async () => peers.all().map(deviceInfo),
    });
    const server = await startControlServer({
      listen: opts.listen ?? '127.0.0.1:0',
      adminToken: ADMIN,
      routes: [route],
      tls: { secureContextFor: (h) => ca.secureContextFor(h) },
    });
    const port = (server.server.address() as { port: number }).port;
    const v = vault;
    return {
      dir,
      store,
      ca,
      server,
      port,
      peers,
      removed,
      advance: (ms) => {
        now += ms;
      },
      call(method, path, body, token, callOpts = {}) {
        const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
        const headers: Record<string, string> = {
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        };
        return new Promise<Answer>((resolve, reject) => {
          const host = server.url.replace(/^http:\/\/|:\d+$/g, '').replace(/^\[|\]$/g, '');
          const req = callOpts.plain
            ? httpRequest({ host, port, method, path, headers, agent: false }, (res) => collect(res).then(resolve, reject))
            : httpsRequest({ host, port, method, path, headers, agent: false, ca: ca.caCertPem }, (res) => collect(res).then(resolve, reject));
          req.on('error', reject);
          req.end(payload);
        });
      },
      async close() {
        await server.close();
        await v.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await vault?.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
