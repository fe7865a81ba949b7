/**
 * The WireGuard transport end to end on one machine: a gateway namespace
 * running the real transport (stub engines that report what they were
 * handed), an agent-host namespace running the real `clawpatrol join` and
 * `clawpatrol run`, and an upstream namespace with servers and a resolver.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Topology, ADDR } from './support/topology.js';
import { AgentHost, GatewayProcess, gatewayHostConfig, tempDir, tearDown, AS_NOBODY, CLI, ROOT, type Msg } from './support/harness.js';
import type { GatewayHostConfig } from './support/gateway-host.js';
import { tunnelNames } from '../../src/net/client/tunnel.js';

const UP_PORTS = [443, 5432, 7000, 8443];

let topo: Topology;
let agent: AgentHost;
let dir: string;
let gw: GatewayProcess;
let gwCfg: GatewayHostConfig;
let upstream: ChildProcess;
const upstreamEvents: Msg[] = [];
const devices: string[] = [];
let configPath: string;
let deviceId: string;

const cli = (args: string[], env: Record<string, string> = {}, timeoutMs?: number) => agent.cli(args, env, timeoutMs);

/** `clawpatrol run` a probe list as the unprivileged user nobody (as if through sudo). */
const probe = (probes: Array<Record<string, unknown>>, opts: { config?: string; env?: Record<string, string>; runArgs?: string[] } = {}) =>
  agent.probe(opts.config ?? configPath, probes, opts);

function engineLine(data: string | undefined): Record<string, unknown> {
  const line = (data ?? '').split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`no engine answer in ${JSON.stringify(data)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

async function enrol(profile: string, config: string): Promise<string> {
  const id = await agent.join(gw, profile, config);
  devices.push(id);
  return id;
}

beforeAll(async () => {
  topo = Topology.create();
  agent = new AgentHost(topo);
  dir = tempDir('cp-net-');
  upstream = topo.spawn(topo.ns.up, process.execPath, [join(ROOT, 'test', 'net', 'support', 'upstream-host.mjs')], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: {
      ...process.env,
      CP_TEST_UPSTREAM: JSON.stringify({
        tcpPorts: UP_PORTS,
        dnsAddress: ADDR.up,
        dns: {
          'outside.test': { A: [ADDR.up], AAAA: [ADDR.up6] },
          'api.example.test': { A: [ADDR.up] },
          'db.example.test': { A: [ADDR.up] },
        },
      }),
    },
  });
  upstream.on('message', (m: Msg) => upstreamEvents.push(m));
  await new Promise<void>((resolve) => upstream.on('message', (m: Msg) => m.type === 'ready' && resolve()));

  gwCfg = gatewayHostConfig(dir, {
    unknownHost: 'passthrough',
    endpoints: [
      { id: 'https.api', type: 'https', hosts: ['api.example.test', '*.svc.example.test'] },
      { id: 'postgres.db', type: 'postgres', hosts: ['db.example.test:5432'] },
      { id: 'postgres.raw', type: 'postgres', hosts: [`${ADDR.up}:5432`] },
    ],
    profiles: { dev: ['https.api', 'postgres.db', 'postgres.raw'], narrow: ['https.api'] },
    placeholders: { dev: [{ credential: 'bearer_token.github', placeholder: 'cp_ph_github_123', env: 'GITHUB_TOKEN' }] },
  });
  gw = await GatewayProcess.start(topo, gwCfg);
  configPath = join(dir, 'client.json');
  deviceId = await enrol('dev', configPath);
}, 120_000);

afterAll(async () => {
  upstream?.kill('SIGKILL');
  await tearDown({ gateways: [gw], devices, topo, dir });
});

describe('clawpatrol join', () => {
  it('writes a 0600 configuration with the pinned CA and the tunnel parameters', () => {
    const st = spawnSync('stat', ['-c', '%a', configPath], { encoding: 'utf8' });
    expect(st.stdout.trim()).toBe('600');
    const cfg = JSON.parse(readFileSync(configPath, 'utf8'));
    expect(cfg.device.id).toBe(deviceId);
    expect(cfg.device.profile).toBe('dev');
    expect(cfg.device.address4).toMatch(/^10\.55\.0\.\d+$/);
    expect(cfg.wireguard.gatewayPublicKey).toBe(gw.ready.publicKey);
    expect(cfg.wireguard.endpoint).toBe(`${ADDR.gwAgentSide}:${gwCfg.listenPort}`);
    expect(cfg.wireguard.dns[0]).toBe('10.55.0.1');
    expect(cfg.ca.fingerprint).toBe(gwCfg.caFingerprint);
    expect(cfg.ca.trustedPath).toBeNull();
  });

  it('refuses a gateway whose CA does not match the pinned fingerprint', async () => {
    const token = await gw.request<{ token: string }>('mint', { profile: 'dev' });
    const wrong = 'AA:' + gwCfg.caFingerprint.slice(3);
    const r = await cli(['join', gw.controlUrl, '--token', token.token, '--ca-fingerprint', wrong, '--no-trust', '--config', join(dir, 'wrong.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/fingerprint mismatch/);
    expect(existsSync(join(dir, 'wrong.json'))).toBe(false);
  });

  it('uses a join token once', async () => {
    const token = await gw.request<{ token: string }>('mint', { profile: 'dev' });
    const first = await cli(['join', gw.controlUrl, '--token', token.token, '--ca-fingerprint', gwCfg.caFingerprint, '--no-trust', '--config', join(dir, 'once.json')]);
    expect(first.code, first.stderr).toBe(0);
    devices.push(/Joined as (dev_[0-9a-f]+)/.exec(first.stdout)![1]!);
    const again = await cli(['join', gw.controlUrl, '--token', token.token, '--ca-fingerprint', gwCfg.caFingerprint, '--no-trust', '--config', join(dir, 'twice.json')]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/unknown or already used join token/);
  });
});

describe('the tunnel', () => {
  it('comes up: the gateway sees a handshake, names resolve through the tunnel DNS', async () => {
    const r = await probe([
      { kind: 'lookup', label: 'vip', name: 'api.example.test' },
      { kind: 'lookup', label: 'wild1', name: 'one.svc.example.test' },
      { kind: 'lookup', label: 'wild2', name: 'two.svc.example.test' },
      { kind: 'lookup', label: 'outside', name: 'outside.test' },
      { kind: 'query', label: 'tcp-dns', name: 'api.example.test', server: '10.55.0.1', tcp: true },
    ]);
    expect(r.code, r.stderr).toBe(0);
    const vip = r.byLabel('vip').addresses!;
    expect(vip.some((a) => /^10\.78\./.test(a))).toBe(true);
    expect(vip.some((a) => /^fd78::/.test(a))).toBe(true);
    const w1 = r.byLabel('wild1').addresses!.find((a) => a.startsWith('10.78.'));
    const w2 = r.byLabel('wild2').addresses!.find((a) => a.startsWith('10.78.'));
    expect(w1).toBeTruthy();
    expect(w1).not.toBe(w2);
    expect(r.byLabel('outside').addresses).toContain(ADDR.up);
    expect(r.byLabel('tcp-dns').answers).toContain(vip.find((a) => a.startsWith('10.78.')));
    const devs = await gw.request<Array<{ id: string; lastHandshake: string | null }>>('devices');
    expect(devs.find((d) => d.id === deviceId)?.lastHandshake).toBeTruthy();
  });

  it('dispatches by virtual IP to the endpoint engine with the peer, profile and dialed name', async () => {
    const r = await probe([
      { kind: 'tcp', label: 'tls', host: 'api.example.test', port: 443, family: 4, tls: 'api.example.test', untilNewline: true },
      { kind: 'tcp', label: 'http', host: 'api.example.test', port: 80, send: 'GET /x HTTP/1.1\r\nHost: api.example.test\r\n\r\n' },
      { kind: 'tcp', label: 'pg', host: 'db.example.test', port: 5432, untilNewline: true },
      { kind: 'tcp', label: 'v6', host: 'api.example.test', port: 443, family: 6, tls: 'api.example.test', untilNewline: true },
    ]);
    expect(r.code, r.stderr).toBe(0);
    const tls = engineLine(r.byLabel('tls').data);
    expect(tls).toMatchObject({ engine: 'tls', endpointId: 'https.api', dialedHost: 'api.example.test', sni: 'api.example.test', dialedPort: 443, profile: 'dev' });
    expect((tls.peer as { id: string }).id).toBe(deviceId);
    expect(tls.dialedIp).toMatch(/^10\.78\./);
    expect(engineLine(r.byLabel('http').data)).toMatchObject({ engine: 'http', endpointId: 'https.api', dialedPort: 80 });
    expect(engineLine(r.byLabel('pg').data)).toMatchObject({ engine: 'postgres', endpointId: 'postgres.db', dialedHost: 'db.example.test' });
    expect(engineLine(r.byLabel('v6').data)).toMatchObject({ engine: 'tls', endpointId: 'https.api', dialedIp: expect.stringMatching(/^fd78::/) });
  });

  it('dispatches a real IP by SNI, and a declared IP:port to its engine', async () => {
    const r = await probe([
      { kind: 'tcp', label: 'sni', host: ADDR.up, port: 443, tls: 'x.svc.example.test', untilNewline: true },
      { kind: 'tcp', label: 'ipport', host: ADDR.up, port: 5432, send: '\x00\x00\x00\x08\x04\xd2\x16\x2f', untilNewline: true },
    ]);
    expect(engineLine(r.byLabel('sni').data)).toMatchObject({ engine: 'tls', endpointId: 'https.api', sni: 'x.svc.example.test', dialedIp: ADDR.up });
    expect(engineLine(r.byLabel('ipport').data)).toMatchObject({ engine: 'postgres', endpointId: 'postgres.raw', dialedIp: ADDR.up, dialedPort: 5432 });
  });

  it('relays unknown hosts under passthrough, from the gateway, and reports the bytes', async () => {
    const before = upstreamEvents.filter((e) => e.type === 'conn').length;
    const r = await probe([{ kind: 'tcp', label: 'relay', host: 'outside.test', port: 7000, family: 4, send: 'hello\n', timeoutMs: 1500 }]);
    const relay = r.byLabel('relay');
    expect(relay.data).toContain(`upstream 7000 from ${ADDR.gwUpSide}`);
    expect(relay.data).toContain('hello');
    const conns = upstreamEvents.filter((e) => e.type === 'conn').slice(before);
    expect(conns.map((c) => c.remote)).toEqual([ADDR.gwUpSide]);
    const ev = (await gw.waitFor((m) => m.type === 'connection' && (m.event as { outcome: string; dialedPort: number }).dialedPort === 7000)).event as Record<string, unknown>;
    expect(ev).toMatchObject({ outcome: 'relayed', dialedIp: ADDR.up, profile: 'dev' });
    expect(ev.bytesOut).toBe(6);
    expect(ev.bytesIn as number).toBeGreaterThan(6);
  });

  it('never relays to the gateway host itself or its tunnel address, even under passthrough', async () => {
    const r = await probe([
      { kind: 'tcp', label: 'control', host: ADDR.gwAgentSide, port: gw.ready.controlPort, send: 'GET /api/devices HTTP/1.1\r\nHost: x\r\n\r\n' },
      { kind: 'tcp', label: 'gw-up-side', host: ADDR.gwUpSide, port: gw.ready.controlPort, send: 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' },
      { kind: 'tcp', label: 'tunnel-addr', host: '10.55.0.1', port: gw.ready.controlPort },
    ]);
    for (const l of ['control', 'gw-up-side', 'tunnel-addr']) {
      const x = r.byLabel(l);
      expect(x.data ?? '', l).not.toMatch(/HTTP\/1\.1 200/);
      expect(x.ok, l).toBe(false);
    }
  });

  it('drops UDP other than DNS to the gateway', async () => {
    const r = await probe([{ kind: 'udp', label: 'udp', host: ADDR.up, port: 7000, send: 'x', timeoutMs: 1000 }]);
    expect(r.byLabel('udp')).toMatchObject({ ok: false, error: 'timeout' });
  });
});

describe('unknown_host = deny: nothing gets out but declared endpoints', () => {
  beforeAll(async () => {
    await gw.request('unknownHost', { mode: 'deny' });
  });
  afterAll(async () => {
    await gw.request('unknownHost', { mode: 'passthrough' });
  });

  it('refuses in the protocol the agent spoke, and the upstream sees nothing', async () => {
    const before = upstreamEvents.length;
    const r = await probe([
      { kind: 'lookup', label: 'dns', name: 'outside.test' },
      { kind: 'tcp', label: 'real-ip', host: ADDR.up, port: 7000 },
      { kind: 'tcp', label: 'other-port', host: ADDR.up, port: 8443 },
      { kind: 'tcp', label: 'ipv6', host: ADDR.up6, port: 7000 },
      { kind: 'tcp', label: 'no-sni', host: ADDR.up, port: 443, tls: true },
      { kind: 'tcp', label: 'bad-sni', host: ADDR.up, port: 443, tls: 'evil.test' },
      { kind: 'tcp', label: 'http', host: ADDR.up, port: 8443, send: 'GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n' },
      { kind: 'query', label: 'outside-resolver-udp', name: 'outside.test', server: ADDR.up, timeoutMs: 1000 },
      { kind: 'query', label: 'outside-resolver-tcp', name: 'outside.test', server: ADDR.up, tcp: true, timeoutMs: 1500 },
      { kind: 'query', label: 'outside-resolver-v6', name: 'outside.test', server: ADDR.up6, timeoutMs: 1000 },
      { kind: 'tcp', label: 'still-declared', host: 'api.example.test', port: 443, tls: 'api.example.test', untilNewline: true },
    ]);
    expect(r.byLabel('dns').ok).toBe(false);
    for (const l of ['real-ip', 'other-port', 'ipv6', 'no-sni', 'bad-sni']) expect(r.byLabel(l).ok, l).toBe(false);
    expect(r.byLabel('http').data).toMatch(/^HTTP\/1\.1 403 Forbidden/);
    expect(r.byLabel('http').data).toMatch(/unknown_host = "deny"/);
    expect(r.byLabel('outside-resolver-udp')).toMatchObject({ ok: false, error: 'timeout' });
    expect(r.byLabel('outside-resolver-tcp').ok).toBe(false);
    expect(r.byLabel('outside-resolver-v6').ok).toBe(false);
    expect(engineLine(r.byLabel('still-declared').data)).toMatchObject({ engine: 'tls', endpointId: 'https.api' });
    expect(upstreamEvents.slice(before)).toEqual([]);
    const refused = gw.events.filter((m) => m.type === 'connection' && (m.event as { outcome: string }).outcome === 'refused');
    expect(refused.length).toBeGreaterThanOrEqual(5);
  }, 90_000);

  it('a name outside the profile is an unknown host for that device', async () => {
    const narrowCfg = join(dir, 'narrow.json');
    await enrol('narrow', narrowCfg);
    const r = await probe([
      { kind: 'tcp', label: 'pg', host: 'db.example.test', port: 5432, send: '\x00\x00\x00\x08\x04\xd2\x16\x2f' },
      { kind: 'tcp', label: 'api', host: 'api.example.test', port: 443, tls: 'api.example.test', untilNewline: true },
    ], { config: narrowCfg });
    expect(r.byLabel('pg').ok).toBe(false);
    expect(engineLine(r.byLabel('api').data)).toMatchObject({ engine: 'tls', profile: 'narrow' });
    // Under passthrough the same name is relayed, uninspected, to its real address (resolved by the gateway host).
    await gw.request('unknownHost', { mode: 'passthrough' });
    try {
      const p = await probe([{ kind: 'tcp', label: 'pg', host: 'db.example.test', port: 5432, family: 4, untilNewline: true }], { config: narrowCfg });
      expect(p.byLabel('pg').data).toBe(`upstream 5432 from ${ADDR.gwUpSide}\n`);
      const relayed = (m: Msg) => {
        const e = m.event as { dialedHost?: string; profile: string; outcome: string } | undefined;
        return m.type === 'connection' && e?.dialedHost === 'db.example.test' && e.profile === 'narrow' && e.outcome === 'relayed';
      };
      const ev = (await gw.waitFor(relayed)).event as Record<string, unknown>;
      expect(ev).toMatchObject({ outcome: 'relayed', dialedIp: expect.stringMatching(/^10\.78\./), dialedPort: 5432 });
    } finally {
      await gw.request('unknownHost', { mode: 'deny' });
    }
  });
});

describe('clawpatrol run', () => {
  it('runs as the invoking user with credentials scrubbed, placeholders and CA bundles exported', async () => {
    const r = await probe([{ kind: 'env', label: 'env' }], {
      env: { AWS_SECRET_ACCESS_KEY: 'AKIAREALSECRET', GITHUB_TOKEN: 'ghp_realtoken', DATABASE_URL: 'postgres://u:hunter2@db/x', HTTPS_PROXY: 'http://proxy:3128', HARMLESS: 'yes', BUILD_TOKEN: 'not-secret' },
      runArgs: ['--keep-env', 'BUILD_TOKEN'],
    });
    expect(r.code, r.stderr).toBe(0);
    const e = r.byLabel('env');
    expect(e.uid).toBe(65534);
    expect(e.env!.AWS_SECRET_ACCESS_KEY).toBeUndefined();
    expect(e.env!.DATABASE_URL).toBeUndefined();
    expect(e.env!.HTTPS_PROXY).toBeUndefined();
    expect(e.env!.GITHUB_TOKEN).toBe('cp_ph_github_123');
    expect(e.env!.HARMLESS).toBe('yes');
    expect(e.env!.BUILD_TOKEN).toBe('not-secret');
    expect(e.env!.CLAWPATROL_DEVICE).toBe(deviceId);
    expect(r.stdout).not.toContain('AKIAREALSECRET');
    expect(r.stdout).not.toContain('ghp_realtoken');
    for (const v of ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'PGSSLROOTCERT']) {
      expect(e.env![v]).toBe(e.env!.SSL_CERT_FILE);
    }
    expect(r.stderr).toMatch(/removed credentials from the environment.*AWS_SECRET_ACCESS_KEY.*DATABASE_URL.*GITHUB_TOKEN/);
    expect(r.stderr).not.toContain('AKIAREALSECRET');
    expect(r.stderr).toMatch(/placeholders: GITHUB_TOKEN \(bearer_token\.github\)/);
  });

  it('passes the exit status through and tears the namespace down', async () => {
    const r = await cli(['run', '--config', configPath, '--', 'sh', '-c', 'exit 7'], AS_NOBODY);
    expect(r.code).toBe(7);
    const names = tunnelNames(deviceId);
    expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).not.toContain(names.netns);
    expect(existsSync(join('/etc/netns', names.netns))).toBe(false);
    expect(existsSync(join(names.runtimeDir, 'state.json'))).toBe(false);
  });

  it('passes signals through: SIGTERM to run reaches the command, a killed command kills run the same way', async () => {
    const child = spawn('nsenter', [`--net=/run/netns/${topo.ns.agent}`, '--', process.execPath, CLI, 'run', '--config', configPath, '--',
      'sh', '-c', 'trap "exit 42" TERM; echo ready; while :; do sleep 0.1; done'], { env: { ...process.env, ...AS_NOBODY }, stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()));
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(42);

    const killed = await cli(['run', '--config', configPath, '--', 'sh', '-c', 'kill -KILL $$'], AS_NOBODY);
    expect(killed.signal).toBe('SIGKILL');
  });

  it('two concurrent runs share one tunnel; the last one out removes it', async () => {
    const names = tunnelNames(deviceId);
    const long = spawn('nsenter', [`--net=/run/netns/${topo.ns.agent}`, '--', process.execPath, CLI, 'run', '--config', configPath, '--', 'sh', '-c', 'echo up; sleep 60'],
      { env: { ...process.env, ...AS_NOBODY }, stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve) => long.stdout!.on('data', (d: Buffer) => d.toString().includes('up') && resolve()));
    const r = await probe([{ kind: 'tcp', label: 'api', host: 'api.example.test', port: 443, tls: 'api.example.test', untilNewline: true }]);
    expect(engineLine(r.byLabel('api').data)).toMatchObject({ engine: 'tls' });
    expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).toContain(names.netns);
    const status = await cli(['status', '--config', configPath, '--json']);
    expect(JSON.parse(status.stdout).tunnel).toMatchObject({ netns: names.netns, runs: 1, lastHandshake: expect.any(String) });
    const exited = new Promise((resolve) => long.once('exit', resolve));
    long.kill('SIGTERM');
    await exited;
    expect(spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout).not.toContain(names.netns);
  });
});
