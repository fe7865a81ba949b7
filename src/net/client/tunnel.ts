/**
 * The client end of the tunnel for `clawpatrol run`: a network namespace
 * whose only interface besides loopback is the device's WireGuard interface.
 *
 * wireguard-go is started in the caller's namespace and its TUN is moved
 * into the new one, so its UDP socket stays outside (the agent cannot touch
 * it) while every packet of the agent enters the tunnel. The namespace gets
 * its own resolv.conf (the gateway's tunnel DNS), hosts and nsswitch.conf
 * (`ip netns exec` bind-mounts `/etc/netns/<ns>/*`). One device has one
 * tunnel: concurrent `run`s share it (reference-counted by pid under a
 * lock) and the last one out tears it down. If wireguard-go or the gateway
 * is gone, the namespace has no way out at all.
 */
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync, rmSync, rmdirSync, writeSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { lookup } from 'node:dns/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ip, runSync } from '../system.js';
import { isAlive, startWireguardGo, stopByPid } from '../wireguard-go.js';
import { uapiGet, uapiSet, type UapiPeerState } from '../uapi.js';
import { ipFamily } from '../ip.js';
import { caBundle } from './ca-trust.js';
import type { ClientConfig } from './config.js';

export const RUNTIME_ROOT = '/run/clawpatrol';

export interface TunnelNames {
  netns: string;
  iface: string;
  runtimeDir: string;
}

interface TunnelState {
  netns: string;
  iface: string;
  wgPid: number;
  users: number[];
  createdAt: string;
}

export interface TunnelHandle extends TunnelNames {
  caBundlePath: string;
  /** Give up this process's use of the tunnel; the last user tears it down. */
  release(): Promise<void>;
}

export function tunnelNames(deviceId: string): TunnelNames {
  const safe = deviceId.replace(/[^A-Za-z0-9_]/g, '');
  const short = safe.replace(/^dev_/, '').slice(0, 12);
  return { netns: `clawpatrol-${safe}`, iface: `cp${short}`.slice(0, 15), runtimeDir: join(RUNTIME_ROOT, safe) };
}

function readState(dir: string): TunnelState | null {
  try {
    return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as TunnelState;
  } catch {
    return null;
  }
}

function writeState(dir: string, state: TunnelState | null): void {
  const path = join(dir, 'state.json');
  if (state === null) rmSync(path, { force: true });
  else writeFileSync(path, JSON.stringify(state) + '\n', { mode: 0o600 });
}

/** An exclusive lock file holding our pid; a dead holder's lock is taken over. */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const path = join(dir, 'lock');
  const deadline = Date.now() + 20_000;
  for (;;) {
    // The last run out removes the directory; a waiting run recreates it.
    mkdirSync(dir, { recursive: true, mode: 0o711 });
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(path, 'utf8').trim() || '0');
      if (!holder || !isAlive(holder)) {
        rmSync(path, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`another clawpatrol run (pid ${holder}) holds ${path}`);
      await sleep(50);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}

async function resolveEndpoint(endpoint: string): Promise<string> {
  const m = /^\[?(.+?)\]?:(\d+)$/.exec(endpoint);
  if (!m) throw new Error(`invalid gateway endpoint "${endpoint}" (want host:port)`);
  const host = m[1]!;
  let addr = host;
  if (ipFamily(host) === null) {
    try {
      addr = (await lookup(host)).address;
    } catch (err) {
      throw new Error(`cannot resolve the gateway endpoint ${host}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  return ipFamily(addr) === 6 ? `[${addr}]:${m[2]}` : `${addr}:${m[2]}`;
}

async function tunnelIsUp(names: TunnelNames, state: TunnelState): Promise<boolean> {
  if (!isAlive(state.wgPid)) return false;
  const r = await ip(['-n', names.netns, 'link', 'show', 'dev', names.iface], { allowFailure: true });
  return r.code === 0;
}

async function teardown(names: TunnelNames, state: TunnelState | null): Promise<void> {
  if (state) await stopByPid(state.wgPid, names.iface);
  await ip(['netns', 'del', names.netns], { allowFailure: true });
  rmSync(join('/etc/netns', names.netns), { recursive: true, force: true });
  rmSync(join(names.runtimeDir, 'wireguard'), { recursive: true, force: true });
  rmSync(join(names.runtimeDir, 'wireguard-go.pid'), { force: true });
}

function netnsFiles(config: ClientConfig, netns: string): void {
  const dir = join('/etc/netns', netns);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const resolv = ['# clawpatrol run: the gateway answers every name', ...config.wireguard.dns.map((d) => `nameserver ${d}`), 'options edns0', ''];
  writeFileSync(join(dir, 'resolv.conf'), resolv.join('\n'), { mode: 0o644 });
  // Names must come from the tunnel DNS (so declared hosts get their VIPs), never from a local resolver daemon.
  writeFileSync(join(dir, 'nsswitch.conf'), nsswitchFor(readOr('/etc/nsswitch.conf', '')), { mode: 0o644 });
  const host = hostname();
  writeFileSync(
    join(dir, 'hosts'),
    `127.0.0.1\tlocalhost\n127.0.1.1\t${host}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
    { mode: 0o644 },
  );
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** The host's nsswitch.conf with the `hosts:` line replaced by `files dns`. */
export function nsswitchFor(original: string): string {
  const lines = original.split('\n').filter((l) => !/^\s*hosts\s*:/.test(l));
  while (lines.length && lines[lines.length - 1]!.trim() === '') lines.pop();
  lines.push('hosts: files dns');
  return lines.join('\n') + '\n';
}

async function bringUp(config: ClientConfig, names: TunnelNames): Promise<TunnelState> {
  const endpoint = await resolveEndpoint(config.wireguard.endpoint);
  await ip(['netns', 'add', names.netns]);
  try {
    await ip(['-n', names.netns, 'link', 'set', 'lo', 'up']);
    const wg = await startWireguardGo({ interfaceName: names.iface, runDir: names.runtimeDir, detached: true });
    const state: TunnelState = { netns: names.netns, iface: names.iface, wgPid: wg.pid, users: [], createdAt: new Date().toISOString() };
    try {
      await uapiSet(wg.socketPath, {
        privateKey: config.privateKey,
        replacePeers: true,
        peers: [
          {
            publicKey: config.wireguard.gatewayPublicKey,
            endpoint,
            persistentKeepalive: config.wireguard.persistentKeepalive,
            replaceAllowedIps: true,
            allowedIps: ['0.0.0.0/0', ...(config.device.address6 ? ['::/0'] : [])],
          },
        ],
      });
      await ip(['link', 'set', 'dev', names.iface, 'netns', names.netns]);
      const inNs = (args: string[], opts?: { allowFailure?: boolean }) => ip(['-n', names.netns, ...args], opts);
      await inNs(['-4', 'addr', 'add', `${config.device.address4}/32`, 'dev', names.iface]);
      // A host without IPv6 runs the tunnel IPv4-only: the namespace then has no IPv6 at all (fail closed).
      const v6 = config.device.address6 !== null && (await inNs(['-6', 'addr', 'add', `${config.device.address6}/128`, 'dev', names.iface, 'nodad'], { allowFailure: true })).code === 0;
      await inNs(['link', 'set', 'dev', names.iface, 'mtu', String(config.wireguard.mtu), 'up']);
      await inNs(['-4', 'route', 'add', 'default', 'dev', names.iface]);
      if (v6) await inNs(['-6', 'route', 'add', 'default', 'dev', names.iface]);
      netnsFiles(config, names.netns);
      return state;
    } catch (err) {
      await teardown(names, state);
      throw err;
    }
  } catch (err) {
    await ip(['netns', 'del', names.netns], { allowFailure: true });
    throw err;
  }
}

function prune(state: TunnelState): TunnelState {
  return { ...state, users: state.users.filter((p) => p !== process.pid && isAlive(p)) };
}

export async function acquireTunnel(config: ClientConfig): Promise<TunnelHandle> {
  const names = tunnelNames(config.device.id);
  mkdirSync(RUNTIME_ROOT, { recursive: true, mode: 0o711 });
  mkdirSync(names.runtimeDir, { recursive: true, mode: 0o711 });
  chmodSync(names.runtimeDir, 0o711);
  // The bundle must be readable by the (unprivileged) agent; everything else in the directory is root's.
  const caBundlePath = join(names.runtimeDir, 'ca-bundle.pem');

  await withLock(names.runtimeDir, async () => {
    let state = readState(names.runtimeDir);
    if (state && !(await tunnelIsUp(names, state))) {
      await teardown(names, state);
      state = null;
    }
    if (!state) {
      // Leftovers of a run that was killed: a namespace without a live tunnel.
      await teardown(names, null);
      state = await bringUp(config, names);
    }
    writeFileSync(caBundlePath, caBundle(config.ca.pem), { mode: 0o644 });
    chmodSync(caBundlePath, 0o644);
    state = prune(state);
    state.users.push(process.pid);
    writeState(names.runtimeDir, state);
  });

  let released = false;
  return {
    ...names,
    caBundlePath,
    async release() {
      if (released) return;
      released = true;
      let last = false;
      await withLock(names.runtimeDir, async () => {
        const state = readState(names.runtimeDir);
        const rest = state ? prune(state) : null;
        if (!rest || rest.users.length === 0) {
          await teardown(names, state);
          for (const f of ['state.json', 'ca-bundle.pem', 'wireguard-go.log']) rmSync(join(names.runtimeDir, f), { force: true });
          last = true;
        } else {
          writeState(names.runtimeDir, rest);
        }
      });
      if (last) {
        try {
          rmdirSync(names.runtimeDir);
        } catch {
          /* a new run already started using it */
        }
      }
    },
  };
}

/** Best-effort synchronous teardown for a crashing `run` (no lock: we are the one holding the tunnel or nobody is). */
export function emergencyTeardown(deviceId: string): void {
  const names = tunnelNames(deviceId);
  const state = readState(names.runtimeDir);
  if (state && prune(state).users.length > 0) return;
  if (state && isAlive(state.wgPid)) {
    try {
      process.kill(state.wgPid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  runSync('ip', ['netns', 'del', names.netns], { allowFailure: true });
  rmSync(join('/etc/netns', names.netns), { recursive: true, force: true });
  writeState(names.runtimeDir, null);
}

/** What `status` shows about a running tunnel: the local view of the gateway peer, or null when no run is active. */
export async function tunnelStatus(deviceId: string): Promise<{ names: TunnelNames; users: number[]; peer: UapiPeerState | null } | null> {
  const names = tunnelNames(deviceId);
  const state = readState(names.runtimeDir);
  if (!state || !isAlive(state.wgPid)) return null;
  let peer: UapiPeerState | null = null;
  try {
    peer = (await uapiGet(join(names.runtimeDir, 'wireguard', `${names.iface}.sock`))).peers[0] ?? null;
  } catch {
    peer = null;
  }
  return { names, users: state.users.filter((p) => isAlive(p)), peer };
}

/** Stop a tunnel regardless of users (`leave --force`). */
export async function forceTeardown(deviceId: string): Promise<void> {
  const names = tunnelNames(deviceId);
  if (!existsSync(names.runtimeDir)) return;
  await withLock(names.runtimeDir, async () => {
    await teardown(names, readState(names.runtimeDir));
    writeState(names.runtimeDir, null);
  });
}
