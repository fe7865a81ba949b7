/**
 * Two gateways on one PostgreSQL store (`gateway { store { postgres = … } }`),
 * each in its own namespace with its own WireGuard interface, sharing the
 * WireGuard key and CA: a device enrolled through one reaches the other
 * within seconds (listed, and its tunnel works there), a device-code
 * enrolment can be approved on either, and a device revoked on one loses
 * its established connection through the other within seconds.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Topology, ADDR } from './support/topology.js';
import { AgentHost, GatewayProcess, gatewayHostConfig, probeLines, tempDir, tearDown, writeJson, AS_NOBODY, CLI, PROBE, ROOT } from './support/harness.js';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';

let topo: Topology;
let dir: string;
let pg: PgCluster;
let gwA: GatewayProcess;
let gwB: GatewayProcess;
let agent: AgentHost;
const devices: string[] = [];
let configViaA: string;
let deviceId: string;

/** Poll until `check` holds; returns how long it took. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function listed(gw: GatewayProcess): Promise<string[]> {
  const r = await gw.devices(['list', '--json']);
  if (r.code !== 0) throw new Error(r.stderr);
  return (JSON.parse(r.stdout) as { devices: Array<{ id: string }> }).devices.map((d) => d.id);
}

beforeAll(async () => {
  topo = Topology.create({ secondGateway: true });
  agent = new AgentHost(topo);
  dir = tempDir('cp-net-cluster-');
  pg = await startPgCluster();
  pg.sql('CREATE DATABASE clawpatrol');
  // Over the cluster's Unix socket: a path on the shared filesystem reaches it from any network namespace.
  const postgres = `postgres://postgres@/clawpatrol?host=${encodeURIComponent(pg.socketDir)}&port=${pg.port}`;
  const config = gatewayHostConfig(dir, {
    unknownHost: 'deny',
    endpoints: [{ id: 'https.api', type: 'https', hosts: ['api.example.test'] }],
    profiles: { dev: ['https.api'] },
    postgres,
  });
  gwA = await GatewayProcess.start(topo, config);
  // B: its own state dir, holding A's WireGuard key so a device can use either gateway.
  const stateB = join(dir, 'gateway-b-state');
  mkdirSync(join(stateB, 'wireguard'), { recursive: true, mode: 0o700 });
  copyFileSync(join(config.stateDir, 'wireguard', 'gateway.key'), join(stateB, 'wireguard', 'gateway.key'));
  gwB = await GatewayProcess.start(topo, { ...config, stateDir: stateB }, { ns: topo.ns.gw2, agentSideAddress: ADDR.gw2AgentSide });
  configViaA = join(dir, 'via-a.json');
}, 180_000);

afterAll(async () => {
  await tearDown({ gateways: [gwA, gwB], devices, topo, dir });
  await pg?.stop();
});

describe('two gateways on one PostgreSQL store', () => {
  it('a device enrolled through one is listed on the other within seconds, and its tunnel works there', async () => {
    deviceId = await agent.join(gwA, 'dev', configViaA, 'roamer');
    const joinedAt = Date.now();
    devices.push(deviceId);
    await gwB.waitFor((m) => m.type === 'log' && String(m.line).includes(`device ${deviceId} (roamer) enrolled through another gateway`), 10_000);
    expect(Date.now() - joinedAt).toBeLessThan(5000);
    expect(await listed(gwB)).toContain(deviceId);

    // The same device, pointed at B (control API and UDP): status and traffic go through B.
    const viaB = JSON.parse(readFileSync(configViaA, 'utf8'));
    viaB.gatewayUrl = gwB.controlUrl;
    viaB.wireguard.endpoint = `${ADDR.gw2AgentSide}:${gwB.config.listenPort}`;
    const configViaB = join(dir, 'via-b.json');
    writeJson(configViaB, viaB);
    const status = await agent.cli(['status', '--config', configViaB, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ reachable: true, device: { id: deviceId } });
    const r = await agent.probe(configViaB, [{ kind: 'tcp', label: 'api', host: 'api.example.test', port: 443, family: 4, tls: 'api.example.test', untilNewline: true }]);
    expect(r.byLabel('api').data).toContain('"engine":"tls"');
    const engine = await gwB.waitFor((m) => m.type === 'engine' && (m.ctx as { peer: { id: string } }).peer.id === deviceId);
    expect(engine.ctx).toMatchObject({ endpointId: 'https.api', profile: 'dev' });
  }, 90_000);

  it('a device-code enrolment started on one gateway can be approved on the other', async () => {
    const config = join(dir, 'code.json');
    const [c, a] = topo.argv(topo.ns.agent, process.execPath, [CLI, 'join', gwA.controlUrl, '--ca-fingerprint', gwA.config.caFingerprint, '--no-trust', '--config', config, '--name', 'by-code']);
    const join_ = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    let out = '';
    join_.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    let err = '';
    join_.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => join_.once('exit', (code) => resolve(code)));
    await within(20_000, async () => /Enrolment code: [A-Z]{4}-[A-Z]{4}/.test(out));
    const code = /Enrolment code: ([A-Z]{4}-[A-Z]{4})/.exec(out)![1]!;
    const approved = await gwB.devices(['approve', code, '--profile', 'dev']);
    expect(approved.code, approved.stderr).toBe(0);
    expect(await exited, err).toBe(0);
    const id = /Joined as (dev_[0-9a-f]+)/.exec(out)![1]!;
    devices.push(id);
    expect(approved.stdout).toContain(id);
    // Both gateways know it; addresses stay unique across them.
    await within(6000, async () => (await listed(gwA)).includes(id));
    const all = JSON.parse((await gwA.devices(['list', '--json'])).stdout).devices as Array<{ address4: string }>;
    expect(new Set(all.map((d) => d.address4)).size).toBe(all.length);
  }, 90_000);

  it('a device revoked on one gateway loses its established connection through the other within seconds', async () => {
    const [c, a] = topo.argv(topo.ns.agent, process.execPath, [CLI, 'run', '--config', configViaA, '--', process.execPath, PROBE,
      JSON.stringify([{ kind: 'hold', host: 'api.example.test', port: 443, family: 4, tls: 'api.example.test' }])]);
    const run = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...AS_NOBODY }, cwd: ROOT });
    const exited = new Promise<number | null>((resolve) => run.once('exit', (code) => resolve(code)));
    let out = '';
    let closedAt = 0;
    run.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!closedAt && probeLines(out).some((l) => l.event === 'closed')) closedAt = Date.now();
    });
    await within(20_000, async () => out.includes('"established"'));
    await gwA.waitFor((m) => m.type === 'engine' && (m.ctx as { peer: { id: string } }).peer.id === deviceId);

    const revoked = await gwB.devices(['revoke', deviceId]);
    const revokedAt = Date.now();
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))])).toBe(0);
    expect(closedAt).toBeGreaterThan(0);
    expect(closedAt - revokedAt).toBeLessThan(5000);
    await gwA.waitFor((m) => m.type === 'engine-closed' && m.peer === deviceId);
    await gwA.waitFor((m) => m.type === 'log' && String(m.line).includes(`device ${deviceId} (roamer) was removed through another gateway; 1 connection(s) closed`));
    expect(await listed(gwA)).not.toContain(deviceId);
    const again = await agent.cli(['run', '--config', configViaA, '--', 'true'], AS_NOBODY);
    expect(again.code).toBe(125);
    expect(again.stderr).toMatch(/no longer enrolled/);
  }, 90_000);
});
