/**
 * Test harness around the topology: a gateway process (gateway-host.ts) in
 * the gateway namespace, upstream servers in the upstream namespace, and the
 * real `clawpatrol join` / `run` CLI (dist/) on the agent host.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { Topology, ADDR } from './topology.js';
import type { GatewayHostConfig } from './gateway-host.js';
import { tunnelNames } from '../../../src/net/client/tunnel.js';
import { stopByPid } from '../../../src/net/wireguard-go.js';

export const ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
export const PROBE = join(ROOT, 'test', 'net', 'support', 'probe.mjs');

export interface Msg {
  type: string;
  [k: string]: unknown;
}

/** A CA certificate + key made with openssl (the stub TLS engine serves it too). */
export function makeCa(dir: string): { certPath: string; keyPath: string; pem: string; fingerprint: string } {
  const certPath = join(dir, 'ca.pem');
  const keyPath = join(dir, 'ca.key');
  const r = spawnSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyPath, '-out', certPath,
    '-days', '2', '-subj', '/CN=clawpatrol test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'subjectAltName=DNS:*.example.test,DNS:api.example.test',
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  const pem = readFileSync(certPath, 'utf8');
  return { certPath, keyPath, pem, fingerprint: new X509Certificate(pem).fingerprint256 };
}

/** A server certificate for `name` (a host name or an IP address), signed by `ca`. */
export function makeLeaf(dir: string, ca: { certPath: string; keyPath: string }, name: string): { certPath: string; keyPath: string } {
  const file = name.replace(/[^A-Za-z0-9.-]/g, '_');
  const keyPath = join(dir, `${file}.key`);
  const csrPath = join(dir, `${file}.csr`);
  const certPath = join(dir, `${file}.pem`);
  const ext = join(dir, `${file}.ext`);
  writeFileSync(ext, `subjectAltName=${isIP(name) ? 'IP' : 'DNS'}:${name}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  for (const args of [
    ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyPath, '-out', csrPath, '-subj', `/CN=${name}`],
    ['x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-CAcreateserial', '-out', certPath, '-days', '2', '-extfile', ext],
  ]) {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  }
  return { certPath, keyPath };
}

export class GatewayProcess {
  readonly events: Msg[] = [];
  private nextId = 1;
  private readonly waiters = new Map<number, (m: Msg) => void>();
  private readonly listeners = new Set<(m: Msg) => void>();
  ready!: { controlPort: number; adminToken: string; publicKey: string; gw4: string; gw6: string | null };
  exited: Promise<number | null>;

  constructor(
    private readonly child: ChildProcess,
    private readonly topo: Topology,
    /** The configuration it was started with. */
    readonly config: GatewayHostConfig,
    /** Its namespace, and its address on the agent host's side. */
    readonly where: { ns: string; agentSideAddress: string },
  ) {
    child.on('message', (m: Msg) => {
      if (m.type === 'reply') {
        this.waiters.get(m.id as number)?.(m);
        this.waiters.delete(m.id as number);
        return;
      }
      if (process.env.CP_TEST_DEBUG && m.type === 'log') process.stderr.write(`[gw] ${String(m.line)}\n`);
      this.events.push(m);
      for (const l of this.listeners) l(m);
    });
    child.stderr?.on('data', (d: Buffer) => {
      if (process.env.CP_TEST_DEBUG) process.stderr.write(`[gw stderr] ${d}`);
    });
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  }

  static async start(topo: Topology, cfg: GatewayHostConfig, where = { ns: topo.ns.gw, agentSideAddress: ADDR.gwAgentSide as string }): Promise<GatewayProcess> {
    const child = topo.spawnWithEtc(where.ns, process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'net', 'support', 'gateway-host.ts')], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, CP_TEST_GATEWAY: JSON.stringify(cfg) },
      cwd: ROOT,
    });
    const gw = new GatewayProcess(child, topo, cfg, where);
    const first = await gw.waitFor((m) => m.type === 'ready' || m.type === 'fatal', 60_000);
    if (first.type === 'fatal') throw new Error(`gateway failed to start: ${String(first.error)}`);
    gw.ready = first as unknown as GatewayProcess['ready'];
    return gw;
  }

  get controlUrl(): string {
    return `http://${this.where.agentSideAddress}:${this.ready.controlPort}`;
  }

  /** `clawpatrol devices …` on the gateway host, over loopback HTTP with the admin token. */
  devices(args: string[]): Promise<RunResult> {
    return this.topo.run(this.where.ns, process.execPath, [CLI, 'devices', ...args, '--gateway', `http://127.0.0.1:${this.ready.controlPort}`, '--token', this.ready.adminToken], {
      cwd: ROOT,
    });
  }

  request<T = unknown>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiters.set(id, (m) => (m.error ? reject(new Error(String(m.error))) : resolve(m.result as T)));
      this.child.send({ id, cmd, args });
    });
  }

  /** The first event (already seen or future) matching `pred`. */
  waitFor(pred: (m: Msg) => boolean, timeoutMs = 10_000): Promise<Msg> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(l);
        reject(new Error(`no matching gateway event within ${timeoutMs} ms`));
      }, timeoutMs);
      const l = (m: Msg) => {
        if (!pred(m)) return;
        clearTimeout(timer);
        this.listeners.delete(l);
        resolve(m);
      };
      this.listeners.add(l);
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    try {
      await Promise.race([this.request('close'), new Promise((r) => setTimeout(r, 5000))]);
    } catch {
      /* exiting anyway */
    }
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 3000))]);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** A temp directory for one test file; the agent-host client config lives here. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(d, 0o700);
  return d;
}

export function removeDir(d: string): void {
  rmSync(d, { recursive: true, force: true });
}

/** The end of a namespace test file: gateways stopped, devices' tunnels removed, namespaces and temp dir deleted. */
export async function tearDown(parts: { gateways: Array<GatewayProcess | undefined>; devices: string[]; topo: Topology | undefined; dir: string | undefined }): Promise<void> {
  for (const gw of parts.gateways) await gw?.close();
  if (parts.topo) for (const d of parts.devices) await cleanupDevice(parts.topo, d);
  parts.topo?.destroy();
  if (parts.dir) removeDir(parts.dir);
}

/** Tear down what `clawpatrol run` may have left for a device (a killed run). */
export async function cleanupDevice(topo: Topology, deviceId: string): Promise<void> {
  const names = tunnelNames(deviceId);
  const statePath = join(names.runtimeDir, 'state.json');
  if (existsSync(statePath)) {
    try {
      const s = JSON.parse(readFileSync(statePath, 'utf8')) as { wgPid: number };
      await stopByPid(s.wgPid, names.iface);
    } catch {
      /* gone */
    }
  }
  topo.extraNamespaces.add(names.netns);
  spawnSync('ip', ['netns', 'del', names.netns]);
  rmSync(`/etc/netns/${names.netns}`, { recursive: true, force: true });
  rmSync(names.runtimeDir, { recursive: true, force: true });
}

export type RunResult = Awaited<ReturnType<Topology['run']>>;

/** Environment of a command started through sudo by the unprivileged user nobody. */
export const AS_NOBODY = { SUDO_UID: '65534', SUDO_GID: '65534' };

export interface ProbeResult {
  label: string;
  ok: boolean;
  data?: string;
  error?: string;
  addresses?: string[];
  rcode?: string;
  answers?: string[];
  /** RFC 8914 Extended DNS Error text of a `query` probe with `edns`. */
  ede?: string;
  established?: number;
  failed?: string[];
  /** A `hold` probe's progress: `established`, then `closed` (or `error`). */
  event?: string;
  env?: Record<string, string>;
  uid?: number;
  ms: number;
}

export function probeLines(stdout: string): ProbeResult[] {
  return stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as ProbeResult);
}

/** The agent host: the real CLI (dist/) run there. */
export class AgentHost {
  constructor(private readonly topo: Topology) {}

  cli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<RunResult> {
    return this.topo.run(this.topo.ns.agent, process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeoutMs, cwd: ROOT });
  }

  /** `clawpatrol run` the probe script (probe.mjs) as nobody; one result per probe. */
  async probe(config: string, probes: Array<Record<string, unknown>>, opts: { env?: Record<string, string>; runArgs?: string[] } = {}) {
    const r = await this.cli(['run', ...(opts.runArgs ?? []), '--config', config, '--', process.execPath, PROBE, JSON.stringify(probes)], { ...AS_NOBODY, ...opts.env });
    const results = probeLines(r.stdout);
    const byLabel = (label: string): ProbeResult => {
      const hit = results.find((x) => x.label === label);
      if (!hit) throw new Error(`no result for probe ${label}; stdout=${r.stdout} stderr=${r.stderr}`);
      return hit;
    };
    return { ...r, results, byLabel };
  }

  /** `clawpatrol join --token` with a token minted on `gw` for `profile`; returns the device id. */
  async join(gw: GatewayProcess, profile: string, config: string, name = `test-${profile}`): Promise<string> {
    const token = await gw.request<{ token: string }>('mint', { profile });
    const r = await this.cli(['join', gw.controlUrl, '--token', token.token, '--ca-fingerprint', gw.config.caFingerprint, '--no-trust', '--config', config, '--name', name]);
    const id = /Joined as (dev_[0-9a-f]+)/.exec(r.stdout)?.[1];
    if (r.code !== 0 || !id) throw new Error(`join failed (${r.code}): ${r.stderr}`);
    return id;
  }
}

/** A gateway-host configuration with a fresh test CA in `dir`; `over` sets the rest. */
export function gatewayHostConfig(dir: string, over: Partial<GatewayHostConfig> & Pick<GatewayHostConfig, 'endpoints' | 'profiles' | 'unknownHost'>): GatewayHostConfig {
  const ca = makeCa(dir);
  return {
    stateDir: join(dir, 'gateway-state'),
    listenPort: 20000 + Math.floor(Math.random() * 30000),
    controlPort: 8080,
    subnet: '10.55.0.0/24',
    dnsUpstream: [ADDR.up],
    caCertPath: ca.certPath,
    caKeyPath: ca.keyPath,
    caFingerprint: ca.fingerprint,
    ...over,
  };
}

export function writeJson(path: string, value: unknown): void {
  writeFileSync(path, JSON.stringify(value), { mode: 0o600 });
}
