/**
 * threats.md class 15 — every ingress path enforces the same rules; unknown
 * hosts (passthrough and deny); upstream TLS verification and mTLS; approvals
 * hold one request and never the others.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import http2 from 'node:http2';
import tls from 'node:tls';
import { CANARY, PLACEHOLDER, curl, rawExchange, startEnv, viaTunnel, type Env } from './support/env.js';
import { GATEWAY_IP, lookupTo } from './support/gateway.js';

let env: Env;
let sidecarPort: number;
beforeAll(async () => {
  env = await startEnv();
  const sidecar = await env.gw.engine.startEndpointListener({ endpointId: 'https.sidecar', listen: '127.0.0.1:0' });
  sidecarPort = sidecar.address.port;
});
afterAll(async () => {
  await env?.close();
});

const auth = ['-H', `Authorization: Bearer ${PLACEHOLDER}`];

describe('every ingress path enforces the same rule and injects the same way (class 15)', () => {
  const paths: Array<[string, (path: string) => string[], () => { seen: () => string | undefined }]> = [
    ['TLS from the tunnel', (p) => [...viaTunnel(env, 'api.test', env.api.port), `https://api.test:${env.api.port}${p}`], () => ({ seen: () => env.api.seen.at(-1)?.headers['authorization'] as string })],
    ['proxy CONNECT', (p) => ['-x', `http://127.0.0.1:${env.gw.proxyPort}`, '--cacert', env.gatewayCaPath, `https://api.test:${env.api.port}${p}`], () => ({ seen: () => env.api.seen.at(-1)?.headers['authorization'] as string })],
    ['proxy absolute-form http://', (p) => ['-x', `http://127.0.0.1:${env.gw.proxyPort}`, `http://plain.test:${env.plain.port}${p}`], () => ({ seen: () => env.plain.seen.at(-1)?.headers['authorization'] as string })],
    ['plain HTTP to a declared endpoint (port 80 style)', (p) => ['--resolve', `plain.test:${env.plain.port}:${GATEWAY_IP}`, `http://plain.test:${env.plain.port}${p}`], () => ({ seen: () => env.plain.seen.at(-1)?.headers['authorization'] as string })],
    ['an endpoint’s local listen sidecar', (p) => [`http://127.0.0.1:${sidecarPort}${p}`], () => ({ seen: () => env.api.seen.at(-1)?.headers['authorization'] as string })],
  ];

  it.each(paths)('%s', async (_name, args, upstream) => {
    const denied = await curl(['-i', ...args('/admin/x')]);
    expect(denied.stdout).toMatch(/^HTTP\/[\d.]+ 403/m);
    expect(denied.stdout).toContain('agents may not use the admin API');
    const ok = await curl([...auth, ...args('/v1/items')]);
    expect(ok.stderr).toBe('');
    expect(JSON.parse(ok.stdout).url).toBe('/v1/items');
    expect(upstream().seen()).toBe(`Bearer ${CANARY}`);
  });
});

describe('upstream TLS', () => {
  it('an upstream certificate not trusted by the system roots or ca_cert: 502 with the reason', async () => {
    const r = await curl([...viaTunnel(env, 'untrusted.test', env.api.port), '-i', `https://untrusted.test:${env.api.port}/v1/items`]);
    expect(r.stdout).toMatch(/^HTTP\/2 502/);
    expect(r.stdout).toContain('certificate not trusted');
    expect(r.stdout).not.toContain(CANARY);
  });

  it('mtls_credential: the gateway presents the client certificate the upstream requires', async () => {
    const r = await curl([...viaTunnel(env, 'mtls.test', env.mtls.port), `https://mtls.test:${env.mtls.port}/v1/items`]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout).url).toBe('/v1/items');
    expect(env.mtls.seen).toHaveLength(1);
  });

  it('an upstream that does not answer: 502, audited', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.2', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    await env.gw.tlsIngress(closed);
    const r = await curl([...viaTunnel(env, 'h2.test', closed), '-i', `https://h2.test:${closed}/x`]);
    expect(r.stdout).toMatch(/^HTTP\/2 502/);
    expect(r.stdout).toContain('ECONNREFUSED');
    expect(await env.gw.audit.waitForRecord((x) => x.status === '502')).toBeDefined();
  });
});

describe('approvals hold only the request that needs one', () => {
  it('HTTP/1.1: a held request on one connection, others flow; approve → forwarded', async () => {
    const held = curl([...viaTunnel(env, 'api.test', env.api.port), '--http1.1', '-X', 'POST', '-d', '{"amount":1}', `https://api.test:${env.api.port}/v1/refunds`]);
    await env.gw.approvals.waitPending(1);
    const other = await curl([...viaTunnel(env, 'api.test', env.api.port), `https://api.test:${env.api.port}/v1/items`]);
    expect(JSON.parse(other.stdout).url).toBe('/v1/items');
    expect(env.api.seen.some((s) => s.url === '/v1/refunds')).toBe(false);
    env.gw.approvals.pending.shift()!.resolve('allow');
    expect(JSON.parse((await held).stdout).url).toBe('/v1/refunds');
  });

  it('HTTP/2: a held stream does not block other streams of the same connection; deny → 403 with the reason', async () => {
    const session = http2.connect(`https://api.test:${env.api.port}`, { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP) } as http2.SecureClientSessionOptions);
    const read = (s: http2.ClientHttp2Stream) =>
      new Promise<{ status: number; body: string }>((resolve) => {
        let status = 0;
        let body = '';
        s.on('response', (h) => (status = Number(h[':status'])));
        s.setEncoding('utf8');
        s.on('data', (c: string) => (body += c));
        s.on('end', () => resolve({ status, body }));
      });
    const heldStream = session.request({ ':method': 'POST', ':path': '/v1/refunds' });
    heldStream.end('{"amount":1}');
    const held = read(heldStream);
    await env.gw.approvals.waitPending(1);
    const other = await read(session.request({ ':path': '/v1/items' }));
    expect(other.status).toBe(200);
    env.gw.approvals.pending.shift()!.resolve('deny');
    const result = await held;
    expect(result.status).toBe(403);
    expect(result.body).toContain('rejected by the test');
    session.close();
  });
});

describe('deny reasons', () => {
  it('an approver’s reason quoting a secret is scrubbed before the agent sees it', async () => {
    const held = curl([...viaTunnel(env, 'api.test', env.api.port), '-X', 'POST', '-d', '{}', `https://api.test:${env.api.port}/v1/refunds`]);
    await env.gw.approvals.waitPending(1);
    env.gw.approvals.pending.shift()!.resolve('deny', `the request would have used ${CANARY}`);
    const out = (await held).stdout;
    expect(out).toContain('the request would have used ***');
    expect(out).not.toContain(CANARY);
  });
});

describe('refusals at the proxy are audited', () => {
  const recordAfter = (before: number, pred: (r: import('../../src/gateway/contracts.js').AuditRecordInput) => boolean) =>
    env.gw.audit.waitForRecord((r) => env.gw.audit.records.indexOf(r) >= before && pred(r));

  it('a CONNECT target without a port: 400 and a record', async () => {
    const before = env.gw.audit.records.length;
    const out = await rawExchange(() => net.connect(env.gw.proxyPort, '127.0.0.1'), `CONNECT api.test HTTP/1.1\r\nHost: api.test\r\n\r\n`);
    expect(out).toMatch(/^HTTP\/1\.1 400 /);
    const rec = await recordAfter(before, (r) => r.status === '400');
    expect(rec).toMatchObject({ peer: 'local:proxy', outcome: 'deny', reason: 'CONNECT target needs host:port', facts: { http: { method: 'CONNECT', target: 'api.test' } } });
  });

  it('a TLS server name other than the CONNECT host: dropped and recorded', async () => {
    const before = env.gw.audit.records.length;
    const socket = net.connect(env.gw.proxyPort, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.write(`CONNECT api.test:${env.api.port} HTTP/1.1\r\nHost: api.test:${env.api.port}\r\n\r\n`);
    await new Promise((r) => socket.once('data', r));
    const t = tls.connect({ socket, servername: 'h2.test', ca: env.gw.ca.caCertPem });
    const failed = await new Promise<boolean>((resolve) => {
      t.once('secureConnect', () => resolve(false));
      t.once('error', () => resolve(true));
      t.once('close', () => resolve(true));
    });
    t.destroy();
    expect(failed).toBe(true);
    const rec = await recordAfter(before, (r) => r.status === 'refused');
    expect(rec).toMatchObject({ peer: 'local:proxy', host: 'api.test', outcome: 'deny', reason: 'TLS server name "h2.test" inside a CONNECT to "api.test"' });
  });
});

describe('unknown hosts, passthrough', () => {
  it('CONNECT to an unknown host is spliced untouched and logged with bytes', async () => {
    const r = await curl(['-x', `http://127.0.0.1:${env.gw.proxyPort}`, '--cacert', env.pki.caPath, ...auth, `https://unknown.test:${env.api.port}/v1/items`]);
    expect(r.stderr).toBe('');
    // No credential: the agent's own header went through as it was.
    expect(env.api.seen.at(-1)!.headers['authorization']).toBe(`Bearer ${PLACEHOLDER}`);
    const rec = await env.gw.audit.waitForRecord((x) => x.host === 'unknown.test' && x.status === 'passthrough');
    expect(rec).toMatchObject({ outcome: 'allow', endpoint: null, credential: null });
    expect(rec!.bytesOut).toBeGreaterThan(0);
  });
});

describe('unknown hosts, deny', () => {
  let denyEnv: Env;
  beforeAll(async () => {
    denyEnv = await startEnv({ unknownHost: 'deny' });
  });
  afterAll(async () => {
    await denyEnv?.close();
  });

  it('CONNECT is answered 403 with the reason', async () => {
    const out = await rawExchange(
      () => net.connect(denyEnv.gw.proxyPort, '127.0.0.1'),
      `CONNECT unknown.test:${denyEnv.api.port} HTTP/1.1\r\nHost: unknown.test:${denyEnv.api.port}\r\n\r\n`,
    );
    expect(out).toMatch(/^HTTP\/1\.1 403 /);
    expect(out).toContain('unknown hosts are denied');
  });

  it('TLS with an unknown SNI is terminated and each request refused with the reason', async () => {
    const sock = tls.connect({ host: GATEWAY_IP, port: denyEnv.api.port, servername: 'unknown.test', ca: denyEnv.gw.ca.caCertPem, ALPNProtocols: ['http/1.1'] });
    const out = await rawExchange(() => sock, `GET / HTTP/1.1\r\nHost: unknown.test:${denyEnv.api.port}\r\nConnection: close\r\n\r\n`);
    expect(out).toMatch(/^HTTP\/1\.1 403 /);
    expect(out).toContain('unknown hosts are denied');
    expect(denyEnv.api.seen).toHaveLength(0);
  });
});

describe('a connection to one endpoint cannot carry another host', () => {
  it('plain HTTP on an endpoint’s virtual IP with a foreign Host: 421, nothing sent anywhere', async () => {
    const server = net.createServer((s) =>
      env.gw.engine.handlePlainHttpConnection(s, { peer: { id: 'vip-agent' }, profile: 'agent', endpointId: 'https.api', dialedPort: env.plain.port }),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const before = env.plain.seen.length;
    const out = await rawExchange(
      () => net.connect(port, '127.0.0.1'),
      `GET /v1/items HTTP/1.1\r\nHost: unknown.test:${env.plain.port}\r\nAuthorization: Bearer ${PLACEHOLDER}\r\nConnection: close\r\n\r\n`,
    );
    expect(out).toMatch(/^HTTP\/1\.1 421 /);
    expect(env.plain.seen.length).toBe(before);
    const ok = await rawExchange(
      () => net.connect(port, '127.0.0.1'),
      `GET /v1/items HTTP/1.1\r\nHost: plain.test:${env.plain.port}\r\nAuthorization: Bearer ${PLACEHOLDER}\r\nConnection: close\r\n\r\n`,
    );
    expect(ok).toMatch(/^HTTP\/1\.1 200 /);
    expect(env.plain.seen.at(-1)!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    server.close();
  });
});

describe('half-closing clients', () => {
  it('a client that sends its request and half-closes still gets the answer (proxy listener)', async () => {
    const out = await new Promise<string>((resolve) => {
      const s = net.connect(env.gw.proxyPort, '127.0.0.1');
      let o = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (o += d));
      s.on('close', () => resolve(o));
      s.on('connect', () => s.end(`GET http://plain.test:${env.plain.port}/v1/half HTTP/1.1\r\nHost: plain.test\r\n\r\n`));
    });
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(out).toContain('"/v1/half"');
  });

  it('a TLS client on the tunnel path that half-closes after its request still gets the answer', async () => {
    // The test's tunnel listener, like a transport that never asked for half-open sockets, uses Node's default.
    const out = await new Promise<string>((resolve, reject) => {
      // allowHalfOpen: keep reading after our end (tls.connect honours it; its type does not list it).
      const options = { host: GATEWAY_IP, port: env.api.port, servername: 'api.test', ca: env.gw.ca.caCertPem, ALPNProtocols: ['http/1.1'], allowHalfOpen: true };
      const s = tls.connect(options as tls.ConnectionOptions);
      let o = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (o += d));
      s.on('error', reject);
      s.on('close', () => resolve(o));
      s.on('secureConnect', () => s.end(`GET /v1/half-tls HTTP/1.1\r\nHost: api.test:${env.api.port}\r\nAuthorization: Bearer ${PLACEHOLDER}\r\n\r\n`));
    });
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(out).toContain('"/v1/half-tls"');
    expect(out).not.toContain(CANARY);
  });

  it('a plain-HTTP client on the tunnel path that half-closes after its request still gets the answer', async () => {
    const out = await new Promise<string>((resolve) => {
      const s = net.connect(env.plain.port, GATEWAY_IP);
      let o = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (o += d));
      s.on('close', () => resolve(o));
      s.on('connect', () => s.end(`GET /v1/half-plain HTTP/1.1\r\nHost: plain.test:${env.plain.port}\r\n\r\n`));
    });
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(out).toContain('"/v1/half-plain"');
  });
});
