/**
 * The tunnel's share of the end-to-end cost: the same clients over a plain
 * WireGuard tunnel (wireguard-go both ends, the gateway namespace forwarding
 * at the IP level — no clawpatrol in the path) and through clawpatrol
 * (`clawpatrol run` on the agent host, `clawpatrol gateway` dispatching the
 * connection), interleaved round by round so machine noise hits both alike.
 *
 *   sudo node --import tsx bench/net/run.ts [--seconds 4] [--rounds 3] [--mib 64]
 *
 * Needs root and a build (`npm run build`): it runs the real binaries.
 *
 * Topology (one machine, network namespaces; see test/net/support/topology.ts):
 *   agent host ── gateway ── upstream (echo, sink, HTTPS API)
 *                    └──── host namespace (PostgreSQL 15 from test/support/pg-cluster.ts,
 *                          also listening on a private veth address for the gateway)
 *
 * Workloads:
 *   tcp-rtt     1-byte ping-pong on one connection (gateway: unknown-host passthrough relay)
 *   tcp-bulk    upload N MiB to a sink (gateway: relay)
 *   pg-select   pgbench -S, 1 and 8 clients (gateway: VIP → Postgres engine, policy, audit, injected SCRAM login)
 *   https-get   keep-alive GETs of a small JSON, 1 and 16 connections (gateway: VIP → TLS MITM, policy, injection, audit)
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync, appendFileSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Topology, ADDR } from '../../test/net/support/topology.js';
import { tempDir, removeDir, cleanupDevice, AS_NOBODY, CLI, ROOT } from '../../test/net/support/harness.js';
import { HOST_LINK, sh, enrolAgentHost, gatewayHostNames, linkHostToGateway, productPolicy, startProductGateway, startUpstream } from '../../test/net/support/product.js';
import { startPgCluster, type PgCluster } from '../../test/support/pg-cluster.js';
import { generateKeyPair } from '../../src/net/keys.js';
import { startWireguardGo, type WireguardGoProcess } from '../../src/net/wireguard-go.js';
import { uapiSet } from '../../src/net/uapi.js';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('seconds', 4);
const ROUNDS = arg('rounds', 3);
const MIB = arg('mib', 64);
const PG_PASSWORD = 'bench-pg-9c1e';
const API_TOKEN = 'ghp_bench_real_token_77';
const CLIENT = join(ROOT, 'bench', 'net', 'client.mjs');

const progress = (line: string) => process.stderr.write(`bench/net: ${line}\n`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

interface Env {
  topo: Topology;
  dir: string;
  plainNs: string;
  configPath: string;
  pg: PgCluster;
  cleanup: Array<() => Promise<void> | void>;
}

/** Builds everything; what it starts is registered in `env.cleanup` as it goes, so a failure half-way leaves nothing behind. */
async function setup(env: Env): Promise<void> {
  const { topo, dir, cleanup } = env;

  // PostgreSQL in the host namespace, also listening on the host end of a veth to the gateway namespace.
  linkHostToGateway(topo);
  progress('starting PostgreSQL');
  const pg = await startPgCluster();
  env.pg = pg;
  cleanup.push(() => pg.stop());
  pg.createUser('agent_ro', PG_PASSWORD);
  sh('runuser', ['-u', 'postgres', '--', 'pgbench', '-q', '-i', '-s', '1', '-h', pg.socketDir, '-p', String(pg.port), 'postgres']);
  pg.sql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO agent_ro');
  appendFileSync(join(pg.dataDir, 'pg_hba.conf'), `host all all ${HOST_LINK.gatewaySide}/32 scram-sha-256\n`);
  // -l: the server must not inherit our pipes (spawnSync would wait for it forever).
  sh('runuser', ['-u', 'postgres', '--', '/usr/lib/postgresql/15/bin/pg_ctl', '-D', pg.dataDir, '-l', join(pg.dataDir, '..', 'restart.log'), '-w', '-m', 'fast', 'restart', '-o',
    `-p ${pg.port} -k ${pg.socketDir} -c listen_addresses=127.0.0.1,${HOST_LINK.hostSide} -c fsync=off -c max_connections=200`]);

  progress('starting the upstream servers');
  // Upstream: echo, sink, HTTPS API (certificate from its own CA).
  const upstream = await startUpstream(topo, dir, { quiet: true, tcpPorts: [7000], sinkPorts: [7001] });
  cleanup.push(() => {
    upstream.child.kill('SIGKILL');
  });

  progress('starting clawpatrol gateway');
  gatewayHostNames(topo);
  cleanup.push(() => rmSync(`/etc/netns/${topo.ns.gw}`, { recursive: true, force: true }));
  const listenPort = 20000 + Math.floor(Math.random() * 30000);
  writeFileSync(
    join(dir, 'policy', 'policy.hcl'),
    productPolicy({
      stateDir: join(dir, 'state'),
      listenPort,
      unknownHost: 'passthrough',
      pgPort: pg.port,
      rules: `
rule "no-writes" {
  endpoint  = postgres.db
  condition = "sql.verb in ['insert', 'update', 'delete', 'drop', 'truncate', 'alter']"
  verdict   = "deny"
  reason    = "read-only"
}
rule "api-reads" {
  endpoint  = https.api
  condition = "http.method == 'GET'"
  verdict   = "allow"
}`,
    }),
  );
  const product = await startProductGateway(topo, dir, { CLAWPATROL_SECRET_RO_PASSWORD: PG_PASSWORD, CLAWPATROL_SECRET_GH_TOKEN: API_TOKEN });
  cleanup.push(() => product.stop());
  progress('enrolling the agent host');
  const deviceId = await enrolAgentHost(topo, dir, env.configPath);
  cleanup.push(() => cleanupDevice(topo, deviceId));

  progress('building the plain tunnel');
  // The plain tunnel: wireguard-go on both ends, the gateway namespace forwards (and masquerades) at the IP level.
  const gwKeys = generateKeyPair();
  const agKeys = generateKeyPair();
  const plainPort = listenPort + 1;
  const startIn = (ns: string, iface: string): Promise<WireguardGoProcess> =>
    startWireguardGo({ interfaceName: iface, runDir: join(dir, `run-${iface}`), netns: ns, dieWithParent: true });
  const wgs = await startIn(topo.ns.gw, 'plainwg0');
  const wgc = await startIn(topo.ns.agent, 'plainwg1');
  cleanup.push(() => wgs.stop(), () => wgc.stop());
  await uapiSet(wgs.socketPath, { privateKey: gwKeys.privateKey, listenPort: plainPort, peers: [{ publicKey: agKeys.publicKey, allowedIps: ['10.99.0.2/32'] }] });
  await uapiSet(wgc.socketPath, {
    privateKey: agKeys.privateKey,
    peers: [{ publicKey: gwKeys.publicKey, endpoint: `${ADDR.gwAgentSide}:${plainPort}`, allowedIps: ['0.0.0.0/0'], persistentKeepalive: 25 }],
  });
  sh('ip', ['-n', topo.ns.gw, 'addr', 'add', '10.99.0.1/24', 'dev', 'plainwg0']);
  sh('ip', ['-n', topo.ns.gw, 'link', 'set', 'plainwg0', 'mtu', '1420', 'up']);
  sh('ip', ['netns', 'add', env.plainNs]);
  topo.extraNamespaces.add(env.plainNs);
  sh('ip', ['-n', env.plainNs, 'link', 'set', 'lo', 'up']);
  sh('ip', ['-n', topo.ns.agent, 'link', 'set', 'plainwg1', 'netns', env.plainNs]);
  sh('ip', ['-n', env.plainNs, 'addr', 'add', '10.99.0.2/32', 'dev', 'plainwg1']);
  sh('ip', ['-n', env.plainNs, 'link', 'set', 'plainwg1', 'mtu', '1420', 'up']);
  sh('ip', ['-n', env.plainNs, 'route', 'add', 'default', 'dev', 'plainwg1']);
  sh('ip', ['netns', 'exec', topo.ns.gw, 'sysctl', '-q', 'net.ipv4.ip_forward=1']);
  sh('ip', ['netns', 'exec', topo.ns.gw, 'nft', '-f', '-'], 'table ip bench_plain {\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr 10.99.0.0/24 masquerade\n  }\n}\n');
  mkdirSync(`/etc/netns/${env.plainNs}`, { recursive: true });
  writeFileSync(`/etc/netns/${env.plainNs}/hosts`, `127.0.0.1 localhost\n${ADDR.up} api.example.test\n${HOST_LINK.hostSide} db.example.test\n`);
  cleanup.push(() => rmSync(`/etc/netns/${env.plainNs}`, { recursive: true, force: true }));

  progress('holding the clawpatrol tunnel up');
  // Hold the clawpatrol tunnel up for the whole run (each client joins it).
  const [c, a] = topo.argv(topo.ns.agent, process.execPath, [CLI, 'run', '--config', env.configPath, '--', 'sleep', '100000']);
  const holder = spawn(c, a, { stdio: 'ignore', env: { ...process.env, ...AS_NOBODY } });
  cleanup.unshift(
    () =>
      new Promise<void>((resolve) => {
        holder.once('exit', () => resolve());
        holder.kill('SIGTERM');
      }),
  );
  await new Promise((r) => setTimeout(r, 3000));
}

type Path = 'tunnel' | 'gateway';

/** Run a client command on a path; returns its stdout. */
async function onPath(env: Env, path: Path, cmd: string[], extraEnv: Record<string, string> = {}): Promise<string> {
  const r =
    path === 'tunnel'
      ? await env.topo.run(env.topo.ns.agent, 'ip', ['netns', 'exec', env.plainNs, ...cmd], { env: { ...process.env, ...extraEnv }, timeoutMs: 300_000 })
      : await env.topo.run(env.topo.ns.agent, process.execPath, [CLI, 'run', '--config', env.configPath, '--', ...cmd], {
          env: { ...process.env, ...AS_NOBODY, ...extraEnv },
          timeoutMs: 300_000,
        });
  if (r.code !== 0) throw new Error(`${path} ${cmd.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

interface Case {
  name: string;
  run(env: Env, path: Path): Promise<Record<string, number>>;
}

const node = (args: string[]) => [process.execPath, CLIENT, ...args];

const CASES: Case[] = [
  {
    name: 'tcp-rtt',
    run: async (env, path) => JSON.parse(await onPath(env, path, node(['rtt', ADDR.up, '7000', String(SECONDS)]))),
  },
  {
    name: 'tcp-bulk',
    run: async (env, path) => JSON.parse(await onPath(env, path, node(['bulk', ADDR.up, '7001', String(MIB)]))),
  },
  ...[1, 8].map((c) => ({
    name: `pg-select-c${c}`,
    run: async (env: Env, path: Path) => {
      const target = path === 'tunnel' ? ['-h', 'db.example.test', '-U', 'agent_ro'] : ['-h', 'db.example.test'];
      const out = await onPath(env, path, ['pgbench', '-n', '-S', '-c', String(c), '-j', String(Math.min(c, 2)), '-T', String(SECONDS), '-p', String(env.pg.port), ...target, 'postgres'],
        path === 'tunnel' ? { PGPASSWORD: PG_PASSWORD } : {});
      const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1]);
      const lat = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1]);
      return { tps, latencyMs: lat };
    },
  })),
  ...[1, 16].map((c) => ({
    name: `https-get-c${c}`,
    run: async (env: Env, path: Path) =>
      JSON.parse(
        await onPath(env, path, node(['https', 'https://api.example.test/user', String(c), String(SECONDS), ...(path === 'tunnel' ? [join(env.dir, 'policy', 'upstream-ca.pem')] : [])])),
      ),
  })),
];

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark needs root (network namespaces, WireGuard)');
  if (!existsSync(CLI)) throw new Error('build first: npm run build');
  const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1]!.split(',') : null;
  const topo = Topology.create();
  const dir = tempDir('cp-bench-net-');
  const env: Env = { topo, dir, plainNs: `${topo.ns.agent}-plain`, configPath: join(dir, 'client.json'), pg: null as unknown as PgCluster, cleanup: [] };
  const results = new Map<string, Record<Path, Array<Record<string, number>>>>();
  try {
    await setup(env);
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of CASES) {
        if (only && !only.includes(c.name)) continue;
        for (const path of (round % 2 === 0 ? ['tunnel', 'gateway'] : ['gateway', 'tunnel']) as Path[]) {
          const r = await c.run(env, path);
          process.stderr.write(`round ${round + 1} ${c.name} ${path}: ${JSON.stringify(r)}\n`);
          const entry = results.get(c.name) ?? { tunnel: [], gateway: [] };
          entry[path].push(r);
          results.set(c.name, entry);
        }
      }
    }
  } finally {
    for (const fn of env.cleanup.reverse()) {
      try {
        await fn();
      } catch (err) {
        process.stderr.write(`cleanup: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
    env.topo.destroy();
    removeDir(env.dir);
  }

  const m = (rows: Array<Record<string, number>>, key: string) => median(rows.map((r) => r[key]!));
  /** The gateway's share of the end-to-end time, from the per-operation times of both paths. */
  const share = (tunnelTime: number, gatewayTime: number) =>
    gatewayTime > tunnelTime ? `${(((gatewayTime - tunnelTime) / gatewayTime) * 100).toFixed(0)} %` : 'none (not slower)';
  const lines = [
    `${ROUNDS} rounds of ${SECONDS} s, medians. Share = (through clawpatrol − tunnel alone) / through clawpatrol, per operation.`,
    '',
    '| workload | tunnel alone | through clawpatrol | clawpatrol / tunnel | clawpatrol\'s share of the end-to-end time |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const [name, r] of results) {
    if (name === 'tcp-rtt') {
      const t = m(r.tunnel, 'p50us');
      const g = m(r.gateway, 'p50us');
      lines.push(`| tcp-rtt p50 (relay) | ${t.toFixed(0)} µs | ${g.toFixed(0)} µs | ${(g / t).toFixed(2)}× | ${share(t, g)} |`);
      const t99 = m(r.tunnel, 'p99us');
      const g99 = m(r.gateway, 'p99us');
      lines.push(`| tcp-rtt p99 (relay) | ${t99.toFixed(0)} µs | ${g99.toFixed(0)} µs | ${(g99 / t99).toFixed(2)}× | ${share(t99, g99)} |`);
    } else if (name === 'tcp-bulk') {
      const t = m(r.tunnel, 'Mbitps');
      const g = m(r.gateway, 'Mbitps');
      lines.push(`| tcp-bulk ${MIB} MiB up (relay) | ${t.toFixed(0)} Mbit/s | ${g.toFixed(0)} Mbit/s | ${(g / t).toFixed(2)}× | ${share(1 / t, 1 / g)} |`);
    } else if (name.startsWith('pg-')) {
      const t = m(r.tunnel, 'tps');
      const g = m(r.gateway, 'tps');
      const tl = m(r.tunnel, 'latencyMs');
      const gl = m(r.gateway, 'latencyMs');
      lines.push(`| ${name} | ${t.toFixed(0)} tps, ${tl.toFixed(2)} ms | ${g.toFixed(0)} tps, ${gl.toFixed(2)} ms | ${(g / t).toFixed(2)}× tps | ${share(tl, gl)} |`);
    } else {
      const t = m(r.tunnel, 'rps');
      const g = m(r.gateway, 'rps');
      const tl = m(r.tunnel, 'p50us') / 1000;
      const gl = m(r.gateway, 'p50us') / 1000;
      lines.push(`| ${name} | ${t.toFixed(0)} req/s, p50 ${tl.toFixed(2)} ms | ${g.toFixed(0)} req/s, p50 ${gl.toFixed(2)} ms | ${(g / t).toFixed(2)}× req/s | ${share(tl, gl)} |`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/net: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
