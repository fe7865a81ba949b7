/**
 * The whole product through the real binaries: `clawpatrol gateway` (policy,
 * vault, CA, engines, WireGuard) in the gateway namespace, `devices add`,
 * `join --token` and `run` on the agent host, a real PostgreSQL 15 and a
 * real HTTPS API upstream.
 *
 * Where the servers live: the HTTPS API runs in the upstream namespace. The
 * PostgreSQL cluster comes from test/support/pg-cluster.ts, which listens on
 * 127.0.0.1 of the test's own namespace; a veth pair joins that namespace to
 * the gateway namespace and a TCP forwarder in this process (on the host end
 * of the pair) hands the gateway's connections to 127.0.0.1, so PostgreSQL
 * checks SCRAM as for any local client. The agent host has no route to
 * either: only the gateway does.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Server } from 'node:net';
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Topology, ADDR } from './support/topology.js';
import { makeCa, makeLeaf, tempDir, removeDir, cleanupDevice, CLI, ROOT, type Msg } from './support/harness.js';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';

const PG_PASSWORD = 'pg-secret-7f3c9a1e55';
const API_TOKEN = 'ghp_realsecret_4b1d9e0c2a';
const HOST_SIDE = '192.168.70.1';
const GW_HOST_SIDE = '192.168.70.2';

let topo: Topology;
let dir: string;
let pg: PgCluster;
let forwarder: Server;
let fwdPort: number;
let upstream: ChildProcess;
const upstreamEvents: Msg[] = [];
let gateway: ChildProcess;
let gatewayLog = '';
let configPath: string;
let deviceId: string | undefined;
let listenPort: number;

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
}

function run(args: string[], env: Record<string, string> = {}) {
  return topo.run(topo.ns.agent, process.execPath, [CLI, 'run', '--config', configPath, ...args], {
    env: { ...process.env, SUDO_UID: '65534', SUDO_GID: '65534', ...env },
    cwd: ROOT,
  });
}

beforeAll(async () => {
  topo = Topology.create();
  dir = tempDir('cp-net-e2e-');

  // PostgreSQL behind the gateway, reached through the host link.
  pg = await startPgCluster();
  pg.createUser('agent_ro', PG_PASSWORD);
  pg.sql("CREATE TABLE orders (id int primary key, status text); INSERT INTO orders VALUES (1, 'new'), (2, 'paid'); GRANT SELECT ON orders TO agent_ro;");
  const hostVeth = `cpt${topo.id}h`;
  sh('ip', ['link', 'add', `${hostVeth}0`, 'type', 'veth', 'peer', 'name', `${hostVeth}1`, 'netns', topo.ns.gw]);
  sh('ip', ['addr', 'add', `${HOST_SIDE}/30`, 'dev', `${hostVeth}0`]);
  sh('ip', ['link', 'set', `${hostVeth}0`, 'up']);
  sh('ip', ['-n', topo.ns.gw, 'addr', 'add', `${GW_HOST_SIDE}/30`, 'dev', `${hostVeth}1`]);
  sh('ip', ['-n', topo.ns.gw, 'link', 'set', `${hostVeth}1`, 'up']);
  forwarder = createServer((s) => {
    const up = connect(pg.port, '127.0.0.1');
    s.pipe(up).pipe(s);
    s.on('error', () => up.destroy());
    up.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => forwarder.listen(0, HOST_SIDE, r));
  fwdPort = (forwarder.address() as { port: number }).port;

  // The HTTPS API upstream, with a certificate from its own CA.
  const upstreamCa = makeCa(dir);
  mkdirSync(join(dir, 'policy'), { recursive: true });
  writeFileSync(join(dir, 'policy', 'upstream-ca.pem'), upstreamCa.pem);
  const leaf = makeLeaf(dir, upstreamCa, 'api.example.test');
  upstream = topo.spawn(topo.ns.up, process.execPath, [join(ROOT, 'test', 'net', 'support', 'upstream-host.mjs')], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: {
      ...process.env,
      CP_TEST_UPSTREAM: JSON.stringify({ tcpPorts: [7000], dnsAddress: ADDR.up, dns: {}, https: { port: 443, certPath: leaf.certPath, keyPath: leaf.keyPath } }),
    },
  });
  upstream.on('message', (m: Msg) => upstreamEvents.push(m));
  await new Promise<void>((resolve) => upstream.on('message', (m: Msg) => m.type === 'ready' && resolve()));

  // How the gateway host resolves the real upstream hosts.
  mkdirSync(`/etc/netns/${topo.ns.gw}`, { recursive: true });
  writeFileSync(`/etc/netns/${topo.ns.gw}/hosts`, `127.0.0.1 localhost\n${ADDR.up} api.example.test\n${HOST_SIDE} db.example.test\n`);
  writeFileSync(`/etc/netns/${topo.ns.gw}/resolv.conf`, `nameserver ${ADDR.up}\n`);

  listenPort = 20000 + Math.floor(Math.random() * 30000);
  writeFileSync(
    join(dir, 'policy', 'policy.hcl'),
    `schema_version = 1
gateway {
  state_dir        = "${join(dir, 'state')}"
  dashboard_listen = "0.0.0.0:8080"
  wireguard {
    subnet_cidr = "10.55.0.0/24"
    listen_port = ${listenPort}
  }
}
defaults {
  unknown_host = "deny"
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
  host    = "db.example.test:${fwdPort}"
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
rule "reads" {
  endpoint  = postgres.db
  condition = "sets.contains(['connect', 'select'], sql.verbs)"
  verdict   = "allow"
}
rule "read-only" {
  endpoint = postgres.db
  priority = -100
  verdict  = "deny"
  reason   = "read-only for agents"
}
`,
  );
  gateway = spawn('ip', ['netns', 'exec', topo.ns.gw, process.execPath, CLI, 'gateway', join(dir, 'policy')], {
    env: { ...process.env, CLAWPATROL_SECRET_RO_PASSWORD: PG_PASSWORD, CLAWPATROL_SECRET_GH_TOKEN: API_TOKEN, CLAWPATROL_STATE_DIR: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
    cwd: ROOT,
  });
  gateway.stderr!.on('data', (d: Buffer) => {
    gatewayLog += d.toString();
    if (process.env.CP_TEST_DEBUG) process.stderr.write(`[gateway] ${d}`);
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway did not start: ${gatewayLog}`)), 60_000);
    gateway.stderr!.on('data', () => gatewayLog.includes('gateway: ready') && (clearTimeout(t), resolve()));
    gateway.once('exit', (c) => reject(new Error(`gateway exited ${c}: ${gatewayLog}`)));
  });

  // Enrol the agent host: devices add on the gateway host, join --token on the agent host.
  const added = await topo.run(topo.ns.gw, process.execPath, [CLI, 'devices', 'add', '--profile', 'dev', '--gateway', 'http://127.0.0.1:8080'], {
    env: { ...process.env, CLAWPATROL_STATE_DIR: join(dir, 'state') },
    cwd: ROOT,
  });
  expect(added.code, added.stderr).toBe(0);
  const joinLine = /sudo clawpatrol join \S+ --token (\S+) --ca-fingerprint (\S+)/.exec(added.stdout);
  expect(joinLine).toBeTruthy();
  configPath = join(dir, 'client.json');
  const joined = await topo.run(topo.ns.agent, process.execPath, [CLI, 'join', `http://${ADDR.gwAgentSide}:8080`, '--token', joinLine![1]!, '--ca-fingerprint', joinLine![2]!, '--no-trust', '--config', configPath], { cwd: ROOT });
  expect(joined.code, joined.stderr + gatewayLog).toBe(0);
  deviceId = /Joined as (dev_[0-9a-f]+)/.exec(joined.stdout)![1]!;
}, 180_000);

afterAll(async () => {
  if (gateway && gateway.exitCode === null) {
    gateway.kill('SIGTERM');
    await new Promise((r) => {
      const t = setTimeout(() => {
        gateway.kill('SIGKILL');
        r(null);
      }, 10_000);
      gateway.once('exit', () => (clearTimeout(t), r(null)));
    });
  }
  upstream?.kill('SIGKILL');
  forwarder?.close();
  if (deviceId) await cleanupDevice(topo, deviceId);
  topo?.destroy();
  rmSync(`/etc/netns/${topo?.ns.gw}`, { recursive: true, force: true });
  await pg?.stop();
  if (dir) removeDir(dir);
});

describe('an agent through clawpatrol run and the real gateway', () => {
  it('psql reads with the injected credential; DROP TABLE is denied; the password never appears inside', async () => {
    const psql = (sql: string) => ['--', 'sh', '-c', `env; echo ---; psql -X -A -t -h db.example.test -p ${fwdPort} -d postgres -c "${sql}"`];
    const read = await run(psql('select count(*) from orders'), { PGPASSWORD: 'stale-local-password' });
    expect(read.code, read.stderr + gatewayLog).toBe(0);
    const [envText, result] = read.stdout.split('---\n');
    expect(result!.trim()).toBe('2');
    expect(envText).toMatch(/^PGUSER=PH_agent_ro$/m);
    expect(envText).not.toMatch(/PGPASSWORD/);
    expect(read.stdout + read.stderr).not.toContain(PG_PASSWORD);

    const drop = await run(psql('drop table orders'));
    expect(drop.code).not.toBe(0);
    expect(drop.stderr).toMatch(/read-only for agents/);
    expect(drop.stdout + drop.stderr).not.toContain(PG_PASSWORD);
    expect(pg.sql('select count(*) from orders').trim()).toBe('2');
  });

  it('curl https://<declared host> is intercepted, and the placeholder is replaced on the wire', async () => {
    const before = upstreamEvents.length;
    const r = await run(['--', 'sh', '-c', 'curl -sS --max-time 10 -H "Authorization: Bearer $GITHUB_TOKEN" https://api.example.test/user']);
    expect(r.code, r.stderr + gatewayLog).toBe(0);
    const seen = upstreamEvents.slice(before).filter((e) => e.type === 'https');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/user', authorization: `Bearer ${API_TOKEN}` });
    // The agent sent its placeholder, got the answer, and never saw the real token (scrubbed on the way back).
    expect(r.stdout).toContain('"path":"/user"');
    expect(r.stdout).not.toContain(API_TOKEN);
  });

  it('an undeclared host is refused (unknown_host = "deny"), DNS included', async () => {
    const r = await run(['--', 'sh', '-c', `getent hosts outside.test; echo dns=$?; curl -sS --max-time 5 http://${ADDR.up}:7000/ ; echo curl=$?`]);
    expect(r.stdout).toMatch(/dns=2/);
    // Plain HTTP is refused in HTTP: the agent reads why.
    expect(r.stdout).toMatch(/clawpatrol: 192\.168\.60\.2:7000 is not an endpoint of profile "dev" and unknown_host = "deny"/);
    expect(upstreamEvents.some((e) => e.type === 'conn')).toBe(false);
    // Refused tunnel connections are in the audit log, attributed to the device.
    let records: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 20 && !records.some((x) => x.family === 'tcp'); i++) {
      await new Promise((res) => setTimeout(res, 250));
      const exp = await topo.run(topo.ns.gw, process.execPath, [CLI, 'audit', 'export', '--config', join(dir, 'policy')], { cwd: ROOT, env: { ...process.env, CLAWPATROL_STATE_DIR: '' } });
      records = exp.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    }
    const tcp = records.find((x) => x.family === 'tcp');
    expect(tcp).toMatchObject({ peer: deviceId, profile: 'dev', outcome: 'deny', host: ADDR.up });
    expect(String(tcp!.reason)).toMatch(/unknown_host = "deny"/);
  });
});
