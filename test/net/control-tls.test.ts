/**
 * Attacks on enrolment and the device's control calls, through the real
 * `joinGateway` / `GatewayApi` code and the real control server (TLS on the
 * same port, leaves from the real gateway CA):
 *
 * - a passive wiretap sees the CA and nothing secret (no join token, no
 *   device token, no tunnel parameters);
 * - a MITM that swaps the CA is refused before the token is sent;
 * - a MITM that serves the real CA but cannot prove it holds it (TLS with
 *   another CA, or no TLS at all) gets nothing;
 * - a second certificate riding along with the real CA is never pinned;
 * - a join token sent in clear text by anyone is refused and voided;
 * - the admin token is refused over plain HTTP from another host (real curl
 *   in a network namespace).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinGateway } from '../../src/net/client/join.js';
import { GatewayApi, GatewayTlsError } from '../../src/net/client/gateway-api.js';
import { generateKeyPair } from '../../src/net/keys.js';
import { TOKEN_NAMESPACE } from '../../src/net/enrolment.js';
import { ADMIN, startEnrolServer, type EnrolServer } from './support/enrol-server.js';
import { startFakeGateway, startWiretap, type FakeGateway } from './support/wiretap.js';

let gateway: EnrolServer;
/** Another gateway: its CA is the attacker's. */
let attacker: EnrolServer;
let dir: string;
const fakes: FakeGateway[] = [];

beforeAll(async () => {
  gateway = await startEnrolServer({ subnet4: '10.55.0.0/24' });
  attacker = await startEnrolServer();
  dir = mkdtempSync(join(tmpdir(), 'cp-ctl-tls-'));
});

afterAll(async () => {
  for (const f of fakes) await f.close();
  await gateway?.close();
  await attacker?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function mint(profile = 'dev'): Promise<string> {
  const r = await gateway.call('POST', '/api/devices/tokens', { profile }, ADMIN);
  expect(r.status).toBe(200);
  return String(r.body.token);
}

/** `clawpatrol join <url> --token <token> --no-trust`, pinning the real gateway's fingerprint unless `pin` says otherwise. */
function join_(url: string, token: string, opts: { pin?: string | null; confirm?: (q: string) => Promise<boolean> } = {}) {
  const lines: string[] = [];
  const configPath = join(dir, `${randomBytes(4).toString('hex')}.json`);
  const pin = opts.pin === undefined ? gateway.ca.fingerprintSha256 : opts.pin;
  const run = joinGateway({
    gatewayUrl: url,
    token,
    ...(pin !== null ? { caFingerprint: pin } : {}),
    ...(opts.confirm ? { confirm: opts.confirm } : {}),
    trust: false,
    configPath,
    out: (l) => lines.push(l),
  });
  return { run, lines, configPath };
}

async function fake(opts: Parameters<typeof startFakeGateway>[0]): Promise<FakeGateway> {
  const f = await startFakeGateway(opts);
  fakes.push(f);
  return f;
}

/** The token still works at the real gateway: nobody redeemed or burned it. */
async function stillRedeemable(token: string): Promise<void> {
  const r = await gateway.call('POST', '/api/enrol/token', { token, publicKey: generateKeyPair().publicKey, name: 'late' });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
}

describe('what travels on the wire', () => {
  it('a passive wiretap sees the CA, and no join token, device token or tunnel parameters', async () => {
    const tap = await startWiretap({ host: '127.0.0.1', port: gateway.port });
    try {
      const token = await mint();
      const { run, configPath } = join_(`http://127.0.0.1:${tap.port}`, token);
      const { config } = await run;
      expect(existsSync(configPath)).toBe(true);
      // The device's own calls afterwards go the same way.
      const api = new GatewayApi(`http://127.0.0.1:${tap.port}`, config.ca.pem);
      expect((await api.self(config.deviceToken)).device.id).toBe(config.device.id);
      await api.ping();

      const wire = tap.captured();
      expect(wire.includes(Buffer.from('BEGIN CERTIFICATE'))).toBe(true); // the bootstrap CA fetch is in clear, by design
      for (const secret of [token, config.deviceToken, config.device.id, config.device.address4, 'cp_ph_gh', '/api/enrol/token', '/api/enrol/self']) {
        expect(wire.includes(Buffer.from(secret)), secret).toBe(false);
      }
      expect(wire.includes(Buffer.from([0x16, 0x03]))).toBe(true); // TLS handshake records
    } finally {
      await tap.close();
    }
  });
});

describe('a man in the middle', () => {
  it('that swaps the CA is refused before the token is sent', async () => {
    const mitm = await fake({ servedCaPem: attacker.ca.caCertPem, servedFingerprint: attacker.ca.fingerprintSha256, tlsCa: attacker.ca });
    const token = await mint();
    const { run, lines, configPath } = join_(mitm.url, token);
    await expect(run).rejects.toThrow(/CA fingerprint mismatch: expected .* presents /);
    expect(lines.join('\n')).toContain(attacker.ca.fingerprintSha256);
    expect(mitm.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /api/enrol/ca']);
    expect(existsSync(configPath)).toBe(false);
    await stillRedeemable(token);
  });

  it('that swaps the CA is refused when the operator compares the fingerprint on a terminal', async () => {
    const mitm = await fake({ servedCaPem: attacker.ca.caCertPem, servedFingerprint: attacker.ca.fingerprintSha256, tlsCa: attacker.ca });
    const asked: string[] = [];
    const { run, lines } = join_(mitm.url, await mint(), {
      pin: null,
      confirm: async (q) => {
        asked.push(q);
        return false; // the operator sees a fingerprint that is not the gateway's
      },
    });
    await expect(run).rejects.toThrow(/fingerprint not confirmed; nothing was changed/);
    expect(asked).toHaveLength(1);
    expect(lines).toContain(`Gateway CA fingerprint (SHA-256): ${attacker.ca.fingerprintSha256}`);
    expect(mitm.requests.map((r) => r.path)).toEqual(['/api/enrol/ca']);
  });

  it('that serves the real CA but speaks TLS with another CA gets no request', async () => {
    const mitm = await fake({ servedCaPem: gateway.ca.caCertPem, servedFingerprint: gateway.ca.fingerprintSha256, tlsCa: attacker.ca });
    const token = await mint();
    const { run } = join_(mitm.url, token);
    const err = await run.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayTlsError);
    expect(String((err as Error).message)).toMatch(/did not prove it holds the pinned CA/);
    // Only the bootstrap reached it: the TLS handshake failed before any request was sent.
    expect(mitm.requests.map((r) => `${r.method} ${r.path} ${r.secure}`)).toEqual(['GET /api/enrol/ca false']);
    await stillRedeemable(token);

    // A joined device's calls refuse the impostor the same way.
    const api = new GatewayApi(mitm.url, gateway.ca.caCertPem, 5000);
    await expect(api.self('cpt_device_token')).rejects.toBeInstanceOf(GatewayTlsError);
    await expect(api.leave('cpt_device_token')).rejects.toBeInstanceOf(GatewayTlsError);
    expect(mitm.requests).toHaveLength(1);
  });

  it('that serves the real CA over plain HTTP only never sees the token in clear text', async () => {
    const mitm = await fake({ servedCaPem: gateway.ca.caCertPem, servedFingerprint: gateway.ca.fingerprintSha256 });
    const token = await mint();
    const { run } = join_(mitm.url, token);
    await expect(run).rejects.toBeInstanceOf(GatewayTlsError);
    expect(mitm.requests.every((r) => !r.body.includes(token))).toBe(true);
    expect(mitm.requests.map((r) => r.path)).toEqual(['/api/enrol/ca']);
    await stillRedeemable(token);
  });

  it('that adds its own CA beside the real one is refused: only exactly one certificate is pinned', async () => {
    const mitm = await fake({ servedCaPem: gateway.ca.caCertPem + attacker.ca.caCertPem, servedFingerprint: gateway.ca.fingerprintSha256, tlsCa: attacker.ca });
    const token = await mint();
    const { run } = join_(mitm.url, token);
    await expect(run).rejects.toThrow(/exactly one PEM certificate.*refusing to join/);
    expect(mitm.requests.map((r) => r.path)).toEqual(['/api/enrol/ca']);
    await stillRedeemable(token);
  });

  it('of a joined device whose gateway now presents another CA: the pinned one still decides', async () => {
    const token = await mint();
    const { run } = join_(`http://127.0.0.1:${gateway.port}`, token);
    const { config } = await run;
    // The attacker's gateway answers at the same URL (DNS or routing hijacked).
    const api = new GatewayApi(`http://127.0.0.1:${attacker.port}`, config.ca.pem, 5000);
    await expect(api.self(config.deviceToken)).rejects.toBeInstanceOf(GatewayTlsError);
    await expect(api.ping()).rejects.toBeInstanceOf(GatewayTlsError);
  });
});

describe('plain HTTP on the control port', () => {
  it('refuses enrolment with a token, and voids the token that crossed the wire in clear text', async () => {
    const token = await mint();
    const r = await gateway.call('POST', '/api/enrol/token', { token, publicKey: generateKeyPair().publicKey, name: 'plain' }, undefined, { plain: true });
    expect(r.status).toBe(403);
    expect(r.body.error).toMatch(/only served over TLS.*now void: mint a new one/);
    const later = await gateway.call('POST', '/api/enrol/token', { token, publicKey: generateKeyPair().publicKey, name: 'tls' });
    expect(later.status).toBe(401);
    expect(later.body.error).toMatch(/unknown or already used join token/);
    expect(gateway.peers.all().some((p) => p.name === 'plain' || p.name === 'tls')).toBe(false);
  });

  it('refuses the device-code exchange and the device calls, serves the CA and the health check', async () => {
    const key = generateKeyPair().publicKey;
    for (const [method, path, body] of [
      ['POST', '/api/enrol/device', { publicKey: key, name: 'x' }],
      ['POST', '/api/enrol/device/poll', { deviceCode: 'cpd_x' }],
      ['GET', '/api/enrol/self', undefined],
      ['DELETE', '/api/enrol/self', undefined],
    ] as const) {
      const r = await gateway.call(method, path, body, 'cpt_whatever', { plain: true });
      expect(r.status, path).toBe(403);
      expect(r.body.error, path).toMatch(/only served over TLS/);
    }
    expect((await gateway.call('GET', '/api/devices', undefined, ADMIN)).body.pending).toEqual([]);
    const ca = await gateway.call('GET', '/api/enrol/ca', undefined, undefined, { plain: true });
    expect(ca).toMatchObject({ status: 200, body: { fingerprint: gateway.ca.fingerprintSha256 } });
    expect((await gateway.call('GET', '/healthz', undefined, undefined, { plain: true })).status).toBe(200);
  });

  it('lets admin CLIs on the gateway host use loopback HTTP', async () => {
    const r = await gateway.call('GET', '/api/devices', undefined, ADMIN, { plain: true });
    expect(r.status).toBe(200);
  });
});

describe('the admin token from another host', () => {
  const ns = `cpt-${randomBytes(3).toString('hex')}-ctl`;
  const veth = `cpc${randomBytes(3).toString('hex')}`;
  const hostSide = '10.213.77.1';
  let server: EnrolServer;

  beforeAll(async () => {
    const sh = (args: string[]) => {
      const r = spawnSync('ip', args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
    };
    sh(['netns', 'add', ns]);
    sh(['link', 'add', `${veth}0`, 'type', 'veth', 'peer', 'name', `${veth}1`, 'netns', ns]);
    sh(['addr', 'add', `${hostSide}/30`, 'dev', `${veth}0`]);
    sh(['link', 'set', `${veth}0`, 'up']);
    sh(['-n', ns, 'addr', 'add', '10.213.77.2/30', 'dev', `${veth}1`]);
    sh(['-n', ns, 'link', 'set', `${veth}1`, 'up']);
    sh(['-n', ns, 'link', 'set', 'lo', 'up']);
    server = await startEnrolServer({ listen: `${hostSide}:0` });
  });

  afterAll(async () => {
    await server?.close();
    spawnSync('ip', ['netns', 'del', ns]);
    spawnSync('ip', ['link', 'del', `${veth}0`]);
  });

  /** Real curl on the other host (asynchronously: the server answers from this process). */
  function curl(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', ns, 'curl', '-sS', '--max-time', '5', ...args], { encoding: 'utf8' }, (err, stdout, stderr) =>
        resolve({ status: err ? Number((err as { code?: unknown }).code ?? 1) || 1 : 0, stdout, stderr }),
      );
    });
  }

  it('is refused over plain HTTP, accepted over TLS pinned to the gateway CA', async () => {
    const plain = await curl(['-H', `authorization: Bearer ${ADMIN}`, `http://${hostSide}:${server.port}/api/devices`]);
    expect(plain.stdout, plain.stderr).toMatch(/admin token was sent in clear text over the network.*use https:\/\//);
    const caFile = join(server.dir, 'ca.pem');
    writeFileSync(caFile, server.ca.caCertPem);
    const secure = await curl(['--cacert', caFile, '-H', `authorization: Bearer ${ADMIN}`, `https://${hostSide}:${server.port}/api/devices`]);
    expect(secure.stderr).toBe('');
    expect(JSON.parse(secure.stdout)).toMatchObject({ devices: [], pending: [] });
    // Without the pinned CA, curl's system roots do not trust it.
    const unpinned = await curl([`https://${hostSide}:${server.port}/healthz`]);
    expect(unpinned.status).not.toBe(0);
  });

  it('does not make the routes see an admin over plain HTTP even when the token is right', async () => {
    const r = await curl(['-X', 'POST', '-H', 'content-type: application/json', '-H', `authorization: Bearer ${ADMIN}`, '-d', '{"profile":"dev"}', `http://${hostSide}:${server.port}/api/devices/tokens`]);
    expect(r.stdout).toMatch(/admin token was sent in clear text/);
    expect(await server.store.kv.list(TOKEN_NAMESPACE)).toEqual([]);
  });
});
