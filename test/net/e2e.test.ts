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
import { createServer, connect, type Server } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Topology, ADDR } from './support/topology.js';
import { tempDir, removeDir, cleanupDevice, AS_NOBODY, CLI, ROOT, type Msg } from './support/harness.js';
import { HOST_LINK, enrolAgentHost, gatewayHostNames, linkHostToGateway, productPolicy, startProductGateway, startUpstream, type RunningProduct, type Upstream } from './support/product.js';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';

const PG_PASSWORD = 'pg-secret-7f3c9a1e55';
const API_TOKEN = 'ghp_realsecret_4b1d9e0c2a';

let topo: Topology;
let dir: string;
let pg: PgCluster;
let forwarder: Server;
let fwdPort: number;
let upstream: Upstream | undefined;
let upstreamEvents: Msg[] = [];
let product: RunningProduct | undefined;
let configPath: string;
let deviceId: string | undefined;

const gatewayLog = (): string => product?.log() ?? '';

function run(args: string[], env: Record<string, string> = {}) {
  return topo.run(topo.ns.agent, process.execPath, [CLI, 'run', '--config', configPath, ...args], {
    env: { ...process.env, ...AS_NOBODY, ...env },
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
  linkHostToGateway(topo);
  forwarder = createServer((s) => {
    const up = connect(pg.port, '127.0.0.1');
    s.pipe(up).pipe(s);
    s.on('error', () => up.destroy());
    up.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => forwarder.listen(0, HOST_LINK.hostSide, r));
  fwdPort = (forwarder.address() as { port: number }).port;

  upstream = await startUpstream(topo, dir, { tcpPorts: [7000] });
  upstreamEvents = upstream.events;
  gatewayHostNames(topo);

  writeFileSync(
    join(dir, 'policy', 'policy.hcl'),
    productPolicy({
      stateDir: join(dir, 'state'),
      listenPort: 20000 + Math.floor(Math.random() * 30000),
      unknownHost: 'deny',
      pgPort: fwdPort,
      rules: `
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
}`,
    }),
  );
  product = await startProductGateway(topo, dir, { CLAWPATROL_SECRET_RO_PASSWORD: PG_PASSWORD, CLAWPATROL_SECRET_GH_TOKEN: API_TOKEN });

  // Enrol the agent host: devices add on the gateway host, join --token on the agent host.
  configPath = join(dir, 'client.json');
  deviceId = await enrolAgentHost(topo, dir, configPath);
}, 180_000);

afterAll(async () => {
  await product?.stop();
  upstream?.child.kill('SIGKILL');
  forwarder?.close();
  if (deviceId) await cleanupDevice(topo, deviceId);
  topo?.destroy();
  await pg?.stop();
  if (dir) removeDir(dir);
});

describe('an agent through clawpatrol run and the real gateway', () => {
  it('psql reads with the injected credential; DROP TABLE is denied; the password never appears inside', async () => {
    const psql = (sql: string) => ['--', 'sh', '-c', `env; echo ---; psql -X -A -t -h db.example.test -p ${fwdPort} -d postgres -c "${sql}"`];
    const read = await run(psql('select count(*) from orders'), { PGPASSWORD: 'stale-local-password' });
    expect(read.code, read.stderr + gatewayLog()).toBe(0);
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
    expect(r.code, r.stderr + gatewayLog()).toBe(0);
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
