/**
 * `startWireguardTransport`: the gateway end of the tunnel. It brings up
 * wireguard-go for the `wireguard {}` block with a persisted key pair,
 * restores enrolled peers, installs the TPROXY plumbing, runs the tunnel DNS
 * and dispatches every tunnel connection (see dispatcher.ts). It knows no
 * policy: the composition root passes a `Directory` and the `Engines`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { KvStore } from '../store/types.js';
import type { ControlRoute } from '../gateway/contracts.js';
import { HostIndex, parseHostPattern } from '../policy/hosts.js';
import { ipFamily, parseCidr, type Cidr } from './ip.js';
import { generateKeyPair, isWgKey, publicKeyOf } from './keys.js';
import { uapiGet, uapiSet, type UapiPeerState } from './uapi.js';
import { startWireguardGo, type WireguardGoProcess } from './wireguard-go.js';
import { applyFirewall, configureInterface, removeFirewall } from './firewall.js';
import { startTransparentListener, type TransparentListener } from './transparent-listener.js';
import { PeerRegistry, type PeerRecord } from './peers.js';
import { VipTable } from './vips.js';
import { Enrolment } from './enrolment.js';
import { DnsResolver, type DeclaredName, type DnsNameDirectory } from './dns/resolver.js';
import { forwarder, systemNameservers } from './dns/upstream.js';
import { startDnsServer, type DnsServer } from './dns/server.js';
import { Dispatcher } from './dispatcher.js';
import { destinationGuard } from './destinations.js';
import { createEnrolRoutes, type DeviceInfo, type JoinResult } from './enrol-routes.js';
import type { Directory, DnsEndpoint, Engines, TransportEvents } from './types.js';

export const DEFAULT_INTERFACE = 'clawpatrol0';
export const DEFAULT_SUBNET6 = 'fd7c:1a55:7a11::/64';
export const DEFAULT_VIP_RANGE4 = '10.78.0.0/16';
export const DEFAULT_VIP_RANGE6 = 'fd78::/64';
export const DEFAULT_MTU = 1420;
export const PERSISTENT_KEEPALIVE = 25;
export const DEFAULT_SYNC_INTERVAL_MS = 2000;

export interface WireguardTransportOptions {
  /** The policy's `gateway.wireguard` block. */
  wireguard: { subnetCidr: string; listenPort: number; endpoint?: string };
  /** `gateway.state_dir`: holds `wireguard/gateway.key` (0600) and wireguard-go's socket directory. */
  stateDir: string;
  /** The state store's document store (`store.kv`): peers, VIPs, enrolment tokens. */
  kv: KvStore;
  directory: Directory;
  engines: Engines;
  /** The gateway CA, served to joining devices and pinned by them. */
  ca: { certPem: string; fingerprintSha256: string };
  /** Interface name (default `clawpatrol0`). */
  interfaceName?: string;
  /** Tunnel IPv6 prefix (default fd7c:1a55:7a11::/64); null: IPv4 only. */
  subnet6?: string | null;
  /** Virtual-IP ranges (defaults 10.78.0.0/16, fd78::/64). */
  vipRange4?: string;
  vipRange6?: string | null;
  /** Resolvers for undeclared names (default: the host's /etc/resolv.conf); `host:port` allowed for tests. */
  dnsUpstream?: string[];
  /** Port of the tunnel DNS (53; tests only). */
  dnsPort?: number;
  mtu?: number;
  peekTimeoutMs?: number;
  /** Per-device limits (defaults: 512 connections, 1024 wildcard names; the VIP table holds 16384 names). */
  limits?: TransportLimits;
  /**
   * How often to look in the store for devices enrolled, updated or revoked
   * through other gateways sharing it (default 2000 ms; 0: never — one
   * gateway per store).
   */
  syncIntervalMs?: number;
  events?: TransportEvents;
  log?: (line: string) => void;
}

export interface TransportLimits {
  /** Concurrent tunnel connections one device may hold; the next one is reset and audited as refused. */
  maxConnectionsPerDevice?: number;
  /** Names under wildcard endpoints one device may get virtual IPs for; further new names are answered REFUSED. */
  maxWildcardNamesPerDevice?: number;
  /** Names in the virtual-IP table, all devices together. */
  maxNames?: number;
}

function checkLimits(limits: TransportLimits): void {
  for (const [key, value] of Object.entries(limits)) {
    if (value !== undefined && (!Number.isInteger(value) || value < 1)) throw new Error(`limit ${key} must be a positive integer, not ${String(value)}`);
  }
}

export interface WireguardTransport {
  interfaceName: string;
  publicKey: string;
  listenPort: number;
  gatewayAddress4: string;
  gatewayAddress6: string | null;
  /** Mount on the control server: enrolment (self-authenticating) and device administration (admin). */
  route: ControlRoute;
  devices(): Promise<DeviceInfo[]>;
  mintToken(profile: string, ttlSec?: number, name?: string): Promise<{ token: string; expiresAt: string }>;
  /** Remove the device from wireguard-go and the store, and close its established connections. */
  revoke(id: string): Promise<{ revoked: boolean; connectionsClosed: number }>;
  /** Resolves when wireguard-go exits (a crash means the tunnel is down: fail closed). */
  wireguardExited: Promise<string>;
  close(): Promise<void>;
}

function ipv6Available(): boolean {
  try {
    return existsSync('/proc/net/if_inet6') && readFileSync('/proc/net/if_inet6', 'utf8').includes('lo');
  } catch {
    return false;
  }
}

/** The gateway's key: a 0600 file in state_dir, created on first start. */
export function loadOrCreateGatewayKey(stateDir: string): { privateKey: string; publicKey: string } {
  const dir = join(stateDir, 'wireguard');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'gateway.key');
  if (existsSync(path)) {
    const mode = statSync(path).mode & 0o777;
    if (mode & 0o077) {
      throw new Error(`refusing to use ${path}: it is readable by group or others (mode ${mode.toString(8)}); fix it with: chmod 600 ${path}`);
    }
    const privateKey = readFileSync(path, 'utf8').trim();
    if (!isWgKey(privateKey)) throw new Error(`${path} does not hold a WireGuard private key`);
    return { privateKey, publicKey: publicKeyOf(privateKey) };
  }
  const pair = generateKeyPair();
  writeFileSync(path, pair.privateKey + '\n', { mode: 0o600, flag: 'wx' });
  chmodSync(path, 0o600);
  return pair;
}

/** The DNS view of the directory: which endpoint claims a name (and whether only a wildcard does), re-indexed when the endpoint list changes. */
function dnsDirectory(directory: Directory): DnsNameDirectory {
  let cachedFrom: DnsEndpoint[] | null = null;
  let cachedKey = '';
  let index = new HostIndex<DeclaredName>();
  return {
    declaredName(name: string) {
      const eps = directory.endpointsForDns();
      if (eps !== cachedFrom) {
        const key = JSON.stringify(eps.map((e) => [e.id, e.hosts]));
        if (key !== cachedKey) {
          index = new HostIndex<DeclaredName>();
          for (const ep of eps) {
            for (const h of ep.hosts) {
              const parsed = parseHostPattern(h);
              // IP literals are not names: they are dispatched by IP:port.
              if (!parsed.ok || ipFamily(parsed.pattern.host) !== null) continue;
              // An exact host beats any wildcard in the index, so the flag tells who declared the match.
              index.add({ host: parsed.pattern.host, wildcard: parsed.pattern.wildcard }, { endpointId: ep.id, wildcard: parsed.pattern.wildcard });
            }
          }
          cachedKey = key;
        }
        cachedFrom = eps;
      }
      return index.lookup(name);
    },
    unknownHost: () => directory.unknownHost(),
  };
}

export async function startWireguardTransport(opts: WireguardTransportOptions): Promise<WireguardTransport> {
  const log = opts.log ?? (() => {});
  const iface = opts.interfaceName ?? DEFAULT_INTERFACE;
  const subnet4 = parseCidr(opts.wireguard.subnetCidr);
  if (subnet4.family !== 4 || subnet4.prefix > 30) {
    throw new Error(`wireguard.subnet_cidr ${opts.wireguard.subnetCidr} must be an IPv4 range of /30 or larger`);
  }
  const listenPort = opts.wireguard.listenPort;
  if (!Number.isInteger(listenPort) || listenPort < 1 || listenPort > 65535) throw new Error(`wireguard.listen_port ${listenPort} is not a port`);
  const v6 = ipv6Available();
  const subnet6: Cidr | null = v6 && opts.subnet6 !== null ? parseCidr(opts.subnet6 ?? DEFAULT_SUBNET6) : null;
  const vip4 = parseCidr(opts.vipRange4 ?? DEFAULT_VIP_RANGE4);
  const vip6: Cidr | null = subnet6 && opts.vipRange6 !== null ? parseCidr(opts.vipRange6 ?? DEFAULT_VIP_RANGE6) : null;
  const mtu = opts.mtu ?? DEFAULT_MTU;
  const limits = opts.limits ?? {};
  checkLimits(limits);

  const keys = loadOrCreateGatewayKey(opts.stateDir);
  const peers = await PeerRegistry.open({ kv: opts.kv, subnet4, subnet6, log });
  const vips = await VipTable.open({
    kv: opts.kv,
    range4: vip4,
    range6: vip6,
    ...(limits.maxNames !== undefined ? { maxNames: limits.maxNames } : {}),
    ...(limits.maxWildcardNamesPerDevice !== undefined ? { maxWildcardNamesPerDevice: limits.maxWildcardNamesPerDevice } : {}),
  });
  const enrolment = new Enrolment(opts.kv);
  const gw4 = peers.gatewayAddress4();
  const gw6 = peers.gatewayAddress6();

  let closing = false;
  // What is running, torn down in this order: the tunnel first, the firewall last — never a
  // moment without the firewall while the tunnel is up. Also used when startup fails half-way.
  const running: { sync?: () => Promise<void>; wg?: WireguardGoProcess; dns?: DnsServer; listening?: () => Promise<void> } = {};
  const cleanup = async () => {
    for (const fn of [() => running.sync?.(), () => running.wg?.stop(), () => running.dns?.close(), () => running.listening?.()]) {
      try {
        await fn();
      } catch (err) {
        log(`net: cleanup: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    delete running.sync;
    delete running.wg;
    delete running.dns;
    delete running.listening;
  };

  try {
    // Order matters for failing closed: the firewall (it matches the interface by name) is in
    // place before the interface exists, so no packet from the tunnel is ever forwarded or
    // delivered anywhere but to our listeners; on close the tunnel goes down first.
    let dns: DnsServer | null = null;
    const internal = [subnet4, vip4, ...(subnet6 ? [subnet6] : []), ...(vip6 ? [vip6] : [])];
    const dispatcher = new Dispatcher({
      peerByAddress: (addr) => peers.byAddress(addr),
      vips,
      directory: opts.directory,
      engines: opts.engines,
      gatewayAddresses: [gw4, ...(gw6 ? [gw6] : [])],
      guard: destinationGuard(internal),
      dnsTcp: (s) => (dns ? dns.handleTcp(s) : s.resetAndDestroy()),
      ...(opts.events ? { events: opts.events } : {}),
      log,
      ...(opts.peekTimeoutMs !== undefined ? { peekTimeoutMs: opts.peekTimeoutMs } : {}),
      ...(limits.maxConnectionsPerDevice !== undefined ? { maxConnectionsPerDevice: limits.maxConnectionsPerDevice } : {}),
    });
    const listener: TransparentListener = await startTransparentListener({ ipv6: subnet6 !== null, onConnection: (s) => dispatcher.handle(s) });
    running.listening = async () => {
      dispatcher.destroyAll();
      await listener.close();
      await removeFirewall(iface);
    };
    await applyFirewall({ interfaceName: iface, tproxyPort4: listener.port4, tproxyPort6: listener.port6, gatewayAddress4: gw4, gatewayAddress6: gw6 });

    const wg: WireguardGoProcess = await startWireguardGo({
      interfaceName: iface,
      runDir: join(opts.stateDir, 'wireguard', 'run'),
      dieWithParent: true,
      log,
    });
    running.wg = wg;
    const peerConfig = (p: PeerRecord) => ({
      publicKey: p.publicKey,
      replaceAllowedIps: true,
      allowedIps: [`${p.address4}/32`, ...(p.address6 ? [`${p.address6}/128`] : [])],
    });
    await uapiSet(wg.socketPath, { privateKey: keys.privateKey, listenPort, replacePeers: true, peers: peers.all().map(peerConfig) });
    await configureInterface({ interfaceName: iface, address4: gw4, prefix4: subnet4.prefix, address6: gw6, prefix6: subnet6?.prefix ?? null, mtu });

    const nameservers = opts.dnsUpstream ?? systemNameservers();
    const upstream = nameservers.length ? forwarder({ servers: nameservers.map(parseNameserver) }) : null;
    if (!upstream) log('net: no upstream DNS server (empty /etc/resolv.conf): undeclared names get SERVFAIL');
    const resolver = new DnsResolver({ vips, directory: dnsDirectory(opts.directory), upstream, range4: vip4, range6: vip6, log });
    const started: DnsServer = await startDnsServer({
      addresses: [gw4, ...(gw6 ? [gw6] : [])],
      ...(opts.dnsPort !== undefined ? { port: opts.dnsPort } : {}),
      resolver,
      deviceAt: (addr) => peers.byAddress(addr)?.id ?? null,
      log,
    });
    dns = started;
    running.dns = started;

    void wg.exited.then((reason) => {
      if (!closing) log(`net: wireguard-go for ${iface} exited (${reason}); the tunnel is down until the gateway restarts`);
    });

    const uapiPeers = async (): Promise<Map<string, UapiPeerState>> => {
      try {
        return new Map((await uapiGet(wg.socketPath)).peers.map((p) => [p.publicKey, p]));
      } catch {
        return new Map();
      }
    };
    const info = (p: PeerRecord, state: Map<string, UapiPeerState>): DeviceInfo => {
      const s = state.get(p.publicKey);
      return {
        id: p.id,
        name: p.name,
        profile: p.profile,
        address4: p.address4,
        address6: p.address6,
        publicKey: p.publicKey,
        enrolledBy: p.enrolledBy,
        createdAt: p.createdAt,
        lastHandshake: s?.lastHandshakeMs ? new Date(s.lastHandshakeMs).toISOString() : null,
        endpoint: s?.endpoint ?? null,
        rxBytes: s?.rxBytes ?? 0,
        txBytes: s?.txBytes ?? 0,
        connections: dispatcher.connectionCount(p.id),
      };
    };

    const removePeer = async (id: string, kind: 'revoked' | 'left') => {
      // Forgotten first: from here on nothing from its address is accepted (connections, DNS).
      const record = await peers.remove(id);
      if (!record) return { revoked: false, connectionsClosed: 0 };
      // Reset its open connections while the tunnel can still carry the RSTs, so the
      // agent sees them die at once instead of hanging until a TCP timeout; then cut the tunnel.
      const connectionsClosed = dispatcher.destroyPeer(id);
      if (connectionsClosed > 0) await new Promise((r) => setTimeout(r, 100));
      await uapiSet(wg.socketPath, { peers: [{ publicKey: record.publicKey, remove: true }] });
      log(`net: device ${id} (${record.name}) ${kind}; ${connectionsClosed} connection(s) closed`);
      opts.events?.onDevice?.({ kind, deviceId: id, name: record.name, profile: record.profile });
      return { revoked: true, connectionsClosed };
    };

    const addPeer: Parameters<typeof createEnrolRoutes>[0]['addPeer'] = async (input) => {
      const record = await peers.add(input);
      try {
        await uapiSet(wg.socketPath, { peers: [peerConfig(record)] });
      } catch (err) {
        await peers.remove(record.id);
        throw err;
      }
      log(`net: device ${record.id} (${record.name}) enrolled with profile ${record.profile} at ${record.address4}`);
      opts.events?.onDevice?.({ kind: 'enrolled', deviceId: record.id, name: record.name, profile: record.profile });
      return record;
    };

    // What other gateways on the store did reaches this one: their devices get into wireguard-go,
    // and a device revoked there loses its connections here too (then its key).
    peers.onRemoteChange(async ({ added, removed, updated }) => {
      for (const record of removed) {
        const closed = dispatcher.destroyPeer(record.id);
        if (closed > 0) await new Promise((r) => setTimeout(r, 100));
        await uapiSet(wg.socketPath, { peers: [{ publicKey: record.publicKey, remove: true }] }).catch((err: unknown) =>
          log(`net: removing ${record.id} from wireguard-go failed (its connections are refused anyway): ${err instanceof Error ? err.message : String(err)}`),
        );
        log(`net: device ${record.id} (${record.name}) was removed through another gateway; ${closed} connection(s) closed`);
      }
      for (const record of [...added, ...updated]) {
        await uapiSet(wg.socketPath, { peers: [peerConfig(record)] }).catch((err: unknown) =>
          log(`net: adding ${record.id} to wireguard-go failed (it cannot reach this gateway): ${err instanceof Error ? err.message : String(err)}`),
        );
      }
      for (const record of added) log(`net: device ${record.id} (${record.name}) enrolled through another gateway, profile ${record.profile} at ${record.address4}`);
    });
    const syncEvery = opts.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS;
    if (syncEvery > 0) {
      let timer: NodeJS.Timeout | undefined;
      let inflight: Promise<void> = Promise.resolve();
      let failing = false;
      let stopped = false;
      const tick = () => {
        inflight = peers.sync().then(
          () => {
            if (failing) log('net: the store answers again; devices are in sync');
            failing = false;
          },
          (err: unknown) => {
            // Keep the last known devices; say so once, not every tick.
            if (!failing) log(`net: cannot read devices from the store (${err instanceof Error ? err.message : String(err)}); changes made through other gateways are not seen until it answers`);
            failing = true;
          },
        );
        void inflight.then(() => {
          if (!stopped) timer = setTimeout(tick, syncEvery).unref();
        });
      };
      timer = setTimeout(tick, syncEvery).unref();
      running.sync = async () => {
        stopped = true;
        clearTimeout(timer);
        await inflight;
      };
    }

    const joinResult = async (p: PeerRecord, deviceToken: string): Promise<JoinResult> => ({
      device: info(p, await uapiPeers()),
      deviceToken,
      wireguard: {
        gatewayPublicKey: keys.publicKey,
        endpoint: opts.wireguard.endpoint ?? null,
        listenPort,
        address4: p.address4,
        address6: p.address6,
        dns: [gw4, ...(gw6 ? [gw6] : [])],
        mtu,
        persistentKeepalive: PERSISTENT_KEEPALIVE,
      },
      caFingerprint: opts.ca.fingerprintSha256,
      placeholders: opts.directory.placeholdersFor(p.profile),
    });

    const devices = async () => {
      const state = await uapiPeers();
      return peers.all().map((p) => info(p, state));
    };

    const route = createEnrolRoutes({
      enrolment,
      peers,
      directory: opts.directory,
      ca: opts.ca,
      addPeer,
      removePeer,
      joinResult,
      deviceInfo: async (p) => info(p, await uapiPeers()),
      devices,
    });

    log(`net: WireGuard ${iface} up on UDP ${listenPort}, gateway ${gw4}${gw6 ? ` / ${gw6}` : ''}, ${peers.all().length} device(s) restored`);
    return {
      interfaceName: iface,
      publicKey: keys.publicKey,
      listenPort,
      gatewayAddress4: gw4,
      gatewayAddress6: gw6,
      route,
      devices,
      mintToken: async (profile, ttlSec, name) => {
        if (!opts.directory.profiles().includes(profile)) throw new Error(`no profile "${profile}" in the policy`);
        return enrolment.mintToken(profile, ttlSec, name);
      },
      revoke: (id) => removePeer(id, 'revoked'),
      wireguardExited: wg.exited,
      async close() {
        closing = true;
        await cleanup();
      },
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** `1.1.1.1`, `1.1.1.1:5353`, `2606:4700::1111`, `[::1]:5353`. */
export function parseNameserver(text: string): { host: string; port: number } {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracketed) return { host: bracketed[1]!, port: Number(bracketed[2]) };
  if (ipFamily(text) !== null) return { host: text, port: 53 };
  const v4port = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(text);
  if (v4port) return { host: v4port[1]!, port: Number(v4port[2]) };
  throw new Error(`invalid DNS server "${text}" (want an IP address, ip:port or [v6]:port)`);
}
