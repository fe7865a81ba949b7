/**
 * Device lifecycle through the real CLIs and a real WireGuard gateway:
 * device-code enrolment approved with `clawpatrol devices approve`,
 * `devices` listing, revoke cutting an established session, fail-closed
 * when the gateway dies, peers and virtual IPs restored after a restart,
 * `status`, `leave`, and system-wide CA trust (in a private mount namespace
 * so the machine's trust store is never touched).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Topology, ADDR } from './support/topology.js';
import { AgentHost, GatewayProcess, gatewayHostConfig, probeLines, tempDir, tearDown, AS_NOBODY, CLI, PROBE, ROOT } from './support/harness.js';
import type { GatewayHostConfig } from './support/gateway-host.js';

let topo: Topology;
let agent: AgentHost;
let dir: string;
let gw: GatewayProcess;
let gwCfg: GatewayHostConfig;
const devices: string[] = [];
let configA: string;
let deviceA: string;
let vipBefore: string;

const cli = (args: string[], env: Record<string, string> = {}) => agent.cli(args, env);
/** `clawpatrol devices …` on the gateway host. */
const devicesCli = (args: string[]) => gw.devices(args);
const probe = (config: string, probes: Array<Record<string, unknown>>) => agent.probe(config, probes);

beforeAll(async () => {
  topo = Topology.create();
  agent = new AgentHost(topo);
  dir = tempDir('cp-net-life-');
  gwCfg = gatewayHostConfig(dir, {
    unknownHost: 'deny',
    endpoints: [{ id: 'https.api', type: 'https', hosts: ['api.example.test'] }],
    profiles: { dev: ['https.api'], ops: ['https.api'] },
  });
  gw = await GatewayProcess.start(topo, gwCfg);
  configA = join(dir, 'a.json');
}, 120_000);

afterAll(async () => {
  await tearDown({ gateways: [gw], devices, topo, dir });
});

describe('device lifecycle', () => {
  it('enrols with a device code shown on both sides and approved with clawpatrol devices approve', async () => {
    const [c, a] = topo.argv(topo.ns.agent, process.execPath, [CLI, 'join', gw.controlUrl, '--ca-fingerprint', gwCfg.caFingerprint, '--no-trust', '--config', configA, '--name', 'laptop']);
    const join: ChildProcess = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
    let out = '';
    join.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    let err = '';
    join.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // Listening from the start: join may be approved and exit while the approve CLI is still returning.
    const exited = new Promise<number | null>((resolve) => join.once('close', (c) => resolve(c)));
    const code = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no enrolment code: ${out} ${err}`)), 20_000);
      join.stdout!.on('data', () => {
        const m = /Enrolment code: ([A-Z]{4}-[A-Z]{4})/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
    });
    // The gateway lists the same code, with the device's name.
    const listed = await devicesCli(['list']);
    expect(listed.stdout).toContain(code);
    expect(listed.stdout).toContain('laptop');
    const wrongProfile = await devicesCli(['approve', code, '--profile', 'nope']);
    expect(wrongProfile.code).toBe(1);
    expect(wrongProfile.stderr).toMatch(/no profile "nope"/);
    const approved = await devicesCli(['approve', code.toLowerCase().replace('-', ' '), '--profile', 'dev']);
    expect(approved.code, approved.stderr).toBe(0);
    expect(await exited, err).toBe(0);
    deviceA = /Joined as (dev_[0-9a-f]+)/.exec(out)![1]!;
    devices.push(deviceA);
    expect(approved.stdout).toContain(deviceA);
    // The code works once.
    expect((await devicesCli(['approve', code, '--profile', 'dev'])).code).toBe(1);
  }, 90_000); // several CLI starts and a polling join: slow when the machine is busy

  it('reports health with clawpatrol status', async () => {
    const first = await probe(configA, [{ kind: 'lookup', label: 'vip', name: 'api.example.test' }]);
    vipBefore = (first.results[0]!.addresses as string[]).find((a) => a.startsWith('10.78.'))!;
    expect(vipBefore).toBeTruthy();
    const s = await cli(['status', '--config', configA, '--json']);
    expect(s.code, s.stdout + s.stderr).toBe(0);
    const status = JSON.parse(s.stdout);
    expect(status).toMatchObject({ ok: true, reachable: true, caTrusted: false, tunnel: null });
    expect(status.device).toMatchObject({ id: deviceA, profile: 'dev' });
    expect(status.device.lastHandshake).toBeTruthy();
    const human = await cli(['status', '--config', configA]);
    expect(human.stdout).toMatch(/Gateway: +http:\/\/192\.168\.50\.1:\d+ \(reachable/);
    expect(human.stdout).toMatch(/gateway saw a handshake \d+s ago/);
  });

  it('revoke cuts an established connection at once, and the device can no longer run', async () => {
    const configB = join(dir, 'b.json');
    const token = await gw.request<{ token: string }>('mint', { profile: 'ops' });
    const j = await cli(['join', gw.controlUrl, '--token', token.token, '--ca-fingerprint', gwCfg.caFingerprint, '--no-trust', '--config', configB]);
    expect(j.code, j.stderr).toBe(0);
    const deviceB = /Joined as (dev_[0-9a-f]+)/.exec(j.stdout)![1]!;
    devices.push(deviceB);

    const [c, a] = topo.argv(topo.ns.agent, process.execPath, [CLI, 'run', '--config', configB, '--', process.execPath, PROBE,
      JSON.stringify([{ kind: 'hold', host: 'api.example.test', port: 443, family: 4, tls: 'api.example.test' }])]);
    const run = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...AS_NOBODY }, cwd: ROOT });
    const exited = new Promise<number | null>((resolve) => run.once('exit', (code) => resolve(code)));
    let runErr = '';
    run.stderr!.on('data', (d: Buffer) => (runErr += d.toString()));
    let out = '';
    const events: Array<{ event: string; at: number }> = [];
    run.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      for (const r of probeLines(out)) if (!events.some((e) => e.event === r.event)) events.push({ event: String(r.event), at: Date.now() });
    });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no session: ${out}`)), 20_000);
      run.stdout!.on('data', () => events.some((e) => e.event === 'established') && (clearTimeout(t), resolve()));
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(events.map((e) => e.event)).toEqual(['established']); // still open, echoing pings

    const revoked = await devicesCli(['revoke', deviceB]);
    const revokedAt = Date.now();
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/Revoked dev_[0-9a-f]+; 1 open connection\(s\) closed/);
    const exit = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 8000))]);
    expect(exit, `stdout=${out} stderr=${runErr}`).toBe(0);
    const closed = events.find((e) => e.event === 'closed');
    expect(closed).toBeTruthy();
    // At once: the connection died while the revoke request was being answered (not after some TCP timeout).
    expect(closed!.at - revokedAt).toBeLessThan(1500);
    await gw.waitFor((m) => m.type === 'engine-closed' && m.peer === deviceB);

    const again = await cli(['run', '--config', configB, '--', 'true'], AS_NOBODY);
    expect(again.code).toBe(125);
    expect(again.stderr).toMatch(/no longer enrolled/);
    const list = await devicesCli(['list', '--json']);
    expect(JSON.parse(list.stdout).devices.map((d: { id: string }) => d.id)).toEqual([deviceA]);
  });

  it('fails closed when the gateway dies: no DNS, no connections, nothing direct', async () => {
    gw.kill();
    await gw.exited;
    const r = await probe(configA, [
      { kind: 'query', label: 'dns', name: 'api.example.test', server: '10.55.0.1', timeoutMs: 2000 },
      { kind: 'query', label: 'dns-tcp', name: 'api.example.test', server: '10.55.0.1', tcp: true, timeoutMs: 2000 },
      { kind: 'tcp', label: 'vip', host: vipBefore, port: 443, timeoutMs: 2000 },
      { kind: 'tcp', label: 'upstream', host: ADDR.up, port: 443, timeoutMs: 2000 },
      { kind: 'tcp', label: 'gateway-host', host: ADDR.gwAgentSide, port: 22, timeoutMs: 2000 },
    ]);
    expect(r.stderr).toMatch(/cannot reach the gateway/);
    for (const x of r.results) expect(x.ok, String(x.label)).toBe(false);
  });

  it('restores peers and virtual IPs after a restart', async () => {
    gw = await GatewayProcess.start(topo, gwCfg);
    const list = await devicesCli(['list', '--json']);
    expect(JSON.parse(list.stdout).devices).toMatchObject([{ id: deviceA, profile: 'dev', name: 'laptop' }]);
    const r = await probe(configA, [
      { kind: 'lookup', label: 'vip', name: 'api.example.test' },
      { kind: 'tcp', label: 'tls', host: 'api.example.test', port: 443, family: 4, tls: 'api.example.test', untilNewline: true },
    ]);
    expect(r.results[0]!.addresses).toContain(vipBefore);
    expect(String(r.results[1]!.data)).toContain('"engine":"tls"');
  });

  it('leave deregisters the device and deletes the configuration', async () => {
    const r = await cli(['leave', '--config', configA]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/The gateway removed device/);
    expect(existsSync(configA)).toBe(false);
    const list = await devicesCli(['list', '--json']);
    expect(JSON.parse(list.stdout).devices).toEqual([]);
    const s = await cli(['status', '--config', configA]);
    expect(s.code).toBe(2);
    expect(readdirSync('/etc/netns').some((n) => n.includes(deviceA))).toBe(false);
  });
});

describe('system-wide CA trust', () => {
  it('join adds the CA to the trust store, run trusts it, leave removes it', async () => {
    const token = await gw.request<{ token: string }>('mint', { profile: 'dev' });
    const cfg = join(dir, 'trust.json');
    const bundle = '/etc/ssl/certs/ca-certificates.crt';
    // A private mount namespace with empty trust-store directories: the real ones are never touched.
    const script = [
      'set -e',
      'mount -t tmpfs tmpfs /usr/local/share/ca-certificates',
      'mount -t tmpfs tmpfs /etc/ssl/certs',
      `nsenter --net=/run/netns/${topo.ns.agent} -- ${process.execPath} ${CLI} join ${gw.controlUrl} --token ${token.token} --ca-fingerprint ${gwCfg.caFingerprint} --config ${cfg}`,
      `echo "---in-bundle: $(grep -c 'BEGIN CERTIFICATE' ${bundle})"`,
      `ls /usr/local/share/ca-certificates`,
      `SUDO_UID=65534 SUDO_GID=65534 nsenter --net=/run/netns/${topo.ns.agent} -- ${process.execPath} ${CLI} run --config ${cfg} -- env -u CURL_CA_BUNDLE -u SSL_CERT_FILE curl -sS --max-time 5 https://api.example.test/`,
      `nsenter --net=/run/netns/${topo.ns.agent} -- ${process.execPath} ${CLI} leave --config ${cfg}`,
      `echo "---after-leave: $(ls /usr/local/share/ca-certificates | wc -l)"`,
    ].join('\n');
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8', cwd: ROOT, timeout: 90_000 });
    const id = /Joined as (dev_[0-9a-f]+)/.exec(r.stdout)?.[1];
    if (id) devices.push(id);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Gateway CA trusted system-wide: \/usr\/local\/share\/ca-certificates\/clawpatrol-[0-9a-f]{16}\.crt/);
    expect(r.stdout).toMatch(/clawpatrol-[0-9a-f]{16}\.crt/);
    expect(Number(/---in-bundle: (\d+)/.exec(r.stdout)![1])).toBeGreaterThan(0);
    // curl with no CA variables: the system store alone made it trust the gateway's certificate.
    expect(r.stdout).toContain('"engine":"tls"');
    expect(r.stdout).toMatch(/Removed the gateway CA from the system trust store/);
    expect(r.stdout).toMatch(/---after-leave: 0/);
    expect(readFileSync(bundle, 'utf8')).not.toContain(readFileSync(gwCfg.caCertPath, 'utf8').split('\n')[1]);
  }, 120_000);
});

