/**
 * Per-device limits through the real tunnel: a device that opens more
 * concurrent connections than its cap gets the extra ones reset and audited
 * (one record at once, the rest of the burst folded into one summary), and a
 * device that mints names under a wildcard endpoint stops getting virtual
 * IPs at its cap, with the reason in an Extended DNS Error — while another
 * device is unaffected.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { Topology } from './support/topology.js';
import { AgentHost, GatewayProcess, gatewayHostConfig, tempDir, tearDown, type Msg } from './support/harness.js';

let topo: Topology;
let dir: string;
let gw: GatewayProcess;
let agent: AgentHost;
const devices: string[] = [];
let configA: string;
let configB: string;
let deviceA: string;

beforeAll(async () => {
  topo = Topology.create();
  agent = new AgentHost(topo);
  dir = tempDir('cp-net-limits-');
  gw = await GatewayProcess.start(
    topo,
    gatewayHostConfig(dir, {
      unknownHost: 'deny',
      endpoints: [{ id: 'https.api', type: 'https', hosts: ['api.example.test', '*.svc.example.test'] }],
      profiles: { dev: ['https.api'] },
      limits: { maxConnectionsPerDevice: 3, maxWildcardNamesPerDevice: 2 },
    }),
  );
  configA = join(dir, 'a.json');
  configB = join(dir, 'b.json');
  deviceA = await agent.join(gw, 'dev', configA, 'limited-a');
  devices.push(deviceA);
  devices.push(await agent.join(gw, 'dev', configB, 'limited-b'));
}, 120_000);

afterAll(async () => {
  await tearDown({ gateways: [gw], devices, topo, dir });
});

const overCap = (m: Msg) => {
  const e = m.event as { outcome?: string; reason?: string; peer?: { id: string } } | undefined;
  return m.type === 'connection' && e?.outcome === 'refused' && /per-device limit/.test(e.reason ?? '') && e.peer?.id === deviceA;
};

describe('per-device limits', () => {
  it('resets connections over the cap and audits them, folding a burst into one summary', async () => {
    const r = await agent.probe(configA, [
      { kind: 'many', label: 'burst', host: 'api.example.test', port: 443, family: 4, tls: 'api.example.test', count: 6, holdMs: 300 },
      // Once they are closed (and the gateway saw them close) the device has room again.
      { kind: 'sleep', ms: 300 },
      { kind: 'tcp', label: 'after', host: 'api.example.test', port: 443, family: 4, tls: 'api.example.test', untilNewline: true },
    ]);
    expect(r.code, r.stderr).toBe(0);
    const burst = r.byLabel('burst');
    expect(burst.established).toBe(3);
    expect(burst.failed).toHaveLength(3);
    for (const f of burst.failed!) expect(f).toMatch(/ECONNRESET|closed/);
    expect(r.byLabel('after').data).toContain('"engine":"tls"');

    const first = (await gw.waitFor(overCap)).event as Record<string, unknown>;
    expect(first).toMatchObject({ outcome: 'refused', profile: 'dev', dialedPort: 443, bytesIn: 0, bytesOut: 0 });
    expect(first.reason).toBe(`device ${deviceA} already holds 3 tunnel connections, the per-device limit`);
    const summary = (await gw.waitFor((m) => overCap(m) && /and \d+ more refused within 1000 ms/.test(String((m.event as { reason: string }).reason)), 5000))
      .event as { reason: string };
    expect(summary.reason).toMatch(/\(and 2 more refused within 1000 ms\)$/);
    expect(gw.events.filter(overCap)).toHaveLength(2);
  });

  it("stops minting virtual IPs for the device's wildcard names at its cap, saying why", async () => {
    const q = (label: string, name: string) => ({ kind: 'query', label, name, server: gw.ready.gw4, edns: true });
    const a = await agent.probe(configA, [q('one', 'one.svc.example.test'), q('two', 'two.svc.example.test'), q('three', 'three.svc.example.test'), q('api', 'api.example.test')]);
    expect(a.byLabel('one').rcode).toBe('NOERROR');
    expect(a.byLabel('two').rcode).toBe('NOERROR');
    expect(a.byLabel('three')).toMatchObject({ rcode: 'REFUSED', answers: [] });
    expect(a.byLabel('three').ede).toBe(`clawpatrol: no virtual IP for three.svc.example.test: device ${deviceA} already has 2 names under wildcard endpoints (the per-device cap)`);
    // A name declared exactly is not a wildcard name: no cap.
    expect(a.byLabel('api').answers![0]).toMatch(/^10\.78\./);

    const b = await agent.probe(configB, [q('three', 'three.svc.example.test'), q('one', 'one.svc.example.test')]);
    expect(b.byLabel('three').rcode).toBe('NOERROR');
    expect(b.byLabel('one').answers).toEqual(a.byLabel('one').answers);
  });
});
