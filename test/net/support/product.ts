/**
 * The whole product on the test topology, shared by the end-to-end test and
 * the network benchmark: the real `clawpatrol gateway` binary with a policy
 * of an HTTPS API and a PostgreSQL endpoint, an HTTPS upstream with its own
 * CA, a link from the test's own namespace (where PostgreSQL runs) to the
 * gateway namespace, and the agent host enrolled with `devices add` +
 * `join --token`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Topology, ADDR } from './topology.js';
import { makeCa, makeLeaf, CLI, ROOT, type Msg } from './harness.js';

/** The test's own namespace ↔ the gateway namespace (a veth pair). */
export const HOST_LINK = { hostSide: '192.168.70.1', gatewaySide: '192.168.70.2' } as const;

export function sh(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Link this namespace to the gateway's (removed with the gateway namespace). */
export function linkHostToGateway(topo: Topology): void {
  const v = `cpt${topo.id}h`;
  sh('ip', ['link', 'add', `${v}0`, 'type', 'veth', 'peer', 'name', `${v}1`, 'netns', topo.ns.gw]);
  sh('ip', ['addr', 'add', `${HOST_LINK.hostSide}/30`, 'dev', `${v}0`]);
  sh('ip', ['link', 'set', `${v}0`, 'up']);
  sh('ip', ['-n', topo.ns.gw, 'addr', 'add', `${HOST_LINK.gatewaySide}/30`, 'dev', `${v}1`]);
  sh('ip', ['-n', topo.ns.gw, 'link', 'set', `${v}1`, 'up']);
}

export interface Upstream {
  child: ChildProcess;
  events: Msg[];
}

/**
 * The upstream servers (upstream-host.mjs) with an HTTPS API on 443 whose
 * certificate comes from its own CA; that CA is written to
 * `<dir>/policy/upstream-ca.pem` for the policy's `ca_cert`.
 */
export async function startUpstream(topo: Topology, dir: string, extra: Record<string, unknown>): Promise<Upstream> {
  const upstreamCa = makeCa(dir);
  mkdirSync(join(dir, 'policy'), { recursive: true });
  writeFileSync(join(dir, 'policy', 'upstream-ca.pem'), upstreamCa.pem);
  const leaf = makeLeaf(dir, upstreamCa, 'api.example.test');
  const child = topo.spawn(topo.ns.up, process.execPath, [join(ROOT, 'test', 'net', 'support', 'upstream-host.mjs')], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: { ...process.env, CP_TEST_UPSTREAM: JSON.stringify({ dnsAddress: ADDR.up, dns: {}, https: { port: 443, certPath: leaf.certPath, keyPath: leaf.keyPath }, ...extra }) },
  });
  const events: Msg[] = [];
  child.on('message', (m: Msg) => events.push(m));
  await new Promise<void>((resolve) => child.on('message', (m: Msg) => m.type === 'ready' && resolve()));
  return { child, events };
}

/** How the gateway host resolves the real upstream hosts (its /etc/hosts and resolver). */
export function gatewayHostNames(topo: Topology): void {
  mkdirSync(`/etc/netns/${topo.ns.gw}`, { recursive: true });
  writeFileSync(`/etc/netns/${topo.ns.gw}/hosts`, `127.0.0.1 localhost\n${ADDR.up} api.example.test\n${HOST_LINK.hostSide} db.example.test\n`);
  writeFileSync(`/etc/netns/${topo.ns.gw}/resolv.conf`, `nameserver ${ADDR.up}\n`);
}

export interface PolicyOptions {
  stateDir: string;
  listenPort: number;
  unknownHost: 'passthrough' | 'deny';
  /** Where the gateway reaches PostgreSQL as `db.example.test`. */
  pgPort: number;
  /** `rule` blocks. */
  rules: string;
}

/** The policy: an HTTPS API with a bearer token, a PostgreSQL endpoint with a read-only login, one profile `dev`. */
export function productPolicy(o: PolicyOptions): string {
  return `schema_version = 1
gateway {
  state_dir        = "${o.stateDir}"
  dashboard_listen = "0.0.0.0:8080"
  wireguard {
    subnet_cidr = "10.55.0.0/24"
    listen_port = ${o.listenPort}
  }
}
defaults {
  unknown_host = "${o.unknownHost}"
}
endpoint "https" "api" {
  hosts   = ["api.example.test"]
  ca_cert = "<<file:upstream-ca.pem>>"
}
credential "bearer_token" "gh" {
  endpoint = https.api
  env      = "GITHUB_TOKEN"
}
endpoint "postgres" "db" {
  host    = "db.example.test:${o.pgPort}"
  sslmode = "disable"
}
credential "postgres_credential" "ro" {
  endpoint = postgres.db
  user     = "agent_ro"
  env      = "PGUSER"
}
profile "dev" {
  credentials = [bearer_token.gh, { credential = postgres_credential.ro, placeholder = "PH_agent_ro" }]
}
${o.rules.trim()}
`;
}

export interface RunningProduct {
  gateway: ChildProcess;
  /** What the gateway printed so far. */
  log(): string;
  stop(): Promise<void>;
}

/** `clawpatrol gateway <dir>/policy` in the gateway namespace; resolves once it says it is ready. */
export async function startProductGateway(topo: Topology, dir: string, secrets: Record<string, string>): Promise<RunningProduct> {
  let log = '';
  const gateway = spawn('ip', ['netns', 'exec', topo.ns.gw, process.execPath, CLI, 'gateway', join(dir, 'policy')], {
    env: { ...process.env, ...secrets, CLAWPATROL_STATE_DIR: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: ROOT,
  });
  gateway.stderr!.on('data', (d: Buffer) => {
    log += d.toString();
    if (process.env.CP_TEST_DEBUG) process.stderr.write(`[gateway] ${d}`);
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway did not start: ${log}`)), 60_000);
    gateway.stderr!.on('data', () => log.includes('gateway: ready') && (clearTimeout(t), resolve()));
    gateway.once('exit', (c) => reject(new Error(`gateway exited ${c}: ${log}`)));
  });
  return {
    gateway,
    log: () => log,
    async stop() {
      if (gateway.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => gateway.kill('SIGKILL'), 10_000);
        gateway.once('exit', () => (clearTimeout(t), resolve()));
        gateway.kill('SIGTERM');
      });
    },
  };
}

/** `devices add --profile dev` on the gateway host, then `join --token` on the agent host; returns the device id. */
export async function enrolAgentHost(topo: Topology, dir: string, configPath: string): Promise<string> {
  const added = await topo.run(topo.ns.gw, process.execPath, [CLI, 'devices', 'add', '--profile', 'dev', '--gateway', 'http://127.0.0.1:8080'], {
    env: { ...process.env, CLAWPATROL_STATE_DIR: join(dir, 'state') },
    cwd: ROOT,
  });
  const m = /sudo clawpatrol join \S+ --token (\S+) --ca-fingerprint (\S+)/.exec(added.stdout);
  if (!m) throw new Error(`devices add (${added.code}): ${added.stdout} ${added.stderr}`);
  const joined = await topo.run(topo.ns.agent, process.execPath, [CLI, 'join', `http://${ADDR.gwAgentSide}:8080`, '--token', m[1]!, '--ca-fingerprint', m[2]!, '--no-trust', '--config', configPath], {
    cwd: ROOT,
  });
  const id = /Joined as (dev_[0-9a-f]+)/.exec(joined.stdout)?.[1];
  if (!id) throw new Error(`join (${joined.code}): ${joined.stderr}`);
  return id;
}
