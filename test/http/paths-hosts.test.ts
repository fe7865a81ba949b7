/**
 * threats.md classes 11 (path tricks) and 12 (host tricks) through the real
 * path: the rule `no-admin` (http.path.startsWith('/admin')) must hold
 * however the path or host is spelled, and what reaches the upstream is the
 * path the rule saw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { CANARY, PLACEHOLDER, curl, rawExchange, startEnv, tlsToGateway, viaTunnel, type Env } from './support/env.js';
import { GATEWAY_IP, UPSTREAM_IP } from './support/gateway.js';

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env?.close();
});

const raw = (path: string, extra = '') =>
  rawExchange(
    () => tlsToGateway(env, 'api.test', env.api.port),
    `GET ${path} HTTP/1.1\r\nHost: api.test:${env.api.port}\r\n${extra}Connection: close\r\n\r\n`,
  );
const status = (out: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0);

describe('path tricks (class 11)', () => {
  it.each([
    '/admin/users',
    '/v1/../admin/users',
    '/v1/./../admin/users',
    '/v1/%2e%2e/admin/users',
    '/v1/%2E%2E/admin/users',
    '/v1/.%2e/admin/users',
    '//admin/users',
    '/%61dmin/users',
    '/v1\\..\\admin\\users',
    '/v1/..\\admin/users',
    '/./admin',
    '/../../admin',
  ])('%s is denied as /admin…', async (path) => {
    const before = env.api.seen.length;
    const out = await raw(path);
    expect(status(out)).toBe(403);
    expect(out).toContain('agents may not use the admin API');
    expect(env.api.seen.length).toBe(before);
  });

  it.each(['/v1/..%2Fadmin/users', '/v1/..%5Cadmin', '/v1/..;/admin', '/v1/%2e%2e%2fadmin', '/v1/%00', '/v1/%zz'])(
    '%s is refused as ambiguous (400)',
    async (path) => {
      const before = env.api.seen.length;
      expect(status(await raw(path))).toBe(400);
      expect(env.api.seen.length).toBe(before);
    },
  );

  it('the upstream receives the canonical path the rule saw', async () => {
    await raw('/v1//items/./a/../b/%72efunds?q=%2e%2e&x=1');
    expect(env.api.seen.at(-1)!.url).toBe('/v1/items/b/refunds?q=%2e%2e&x=1');
  });

  it('%252e stays single-decoded: allowed (the rule sees /v1/%2e%2e/admin), forwarded unchanged', async () => {
    const out = await raw('/v1/%252e%252e/admin');
    expect(status(out)).toBe(200);
    expect(env.api.seen.at(-1)!.url).toBe('/v1/%252e%252e/admin');
  });

  it('curl --path-as-is cannot slip ../admin past the rule', async () => {
    const r = await curl([...viaTunnel(env, 'api.test', env.api.port), '--path-as-is', '-i', `https://api.test:${env.api.port}/v1/../admin`]);
    expect(r.stdout).toMatch(/^HTTP\/2 403/);
  });
});

describe('host tricks (class 12)', () => {
  it('SNI ≠ Host is refused with 421 and never forwarded', async () => {
    const before = env.api.seen.length;
    const out = await rawExchange(
      () => tlsToGateway(env, 'api.test', env.api.port),
      `GET /v1/items HTTP/1.1\r\nHost: h2.test:${env.api.port}\r\nConnection: close\r\n\r\n`,
    );
    expect(status(out)).toBe(421);
    expect(out).toContain('TLS server name and Host disagree');
    expect(env.api.seen.length).toBe(before);
  });

  it('the 421 is audited: peer, the connection\'s host, the reason, the request line scrubbed of secrets', async () => {
    const before = env.gw.audit.records.length;
    const out = await rawExchange(
      () => tlsToGateway(env, 'api.test', env.api.port),
      `GET /v1/items?key=${CANARY} HTTP/1.1\r\nHost: h2.test:${env.api.port}\r\nConnection: close\r\n\r\n`,
    );
    expect(status(out)).toBe(421);
    const rec = await env.gw.audit.waitForRecord((r) => env.gw.audit.records.indexOf(r) >= before && r.status === '421');
    expect(rec).toMatchObject({ peer: 'test-agent', profile: 'agent', host: 'api.test', verdict: 'deny', outcome: 'deny', rule: '', credential: null });
    expect(rec!.reason).toContain('request for "h2.test" on a connection for "api.test"');
    expect(rec!.facts).toEqual({ http: { method: 'GET', target: `/v1/items?key=${'*'.repeat(CANARY.length)}` } });
    expect(rec!.bytesOut).toBeGreaterThan(0);
  });

  it('a port other than the one dialed is refused (421)', async () => {
    const out = await rawExchange(
      () => tlsToGateway(env, 'api.test', env.api.port),
      `GET /v1/items HTTP/1.1\r\nHost: api.test:1\r\nConnection: close\r\n\r\n`,
    );
    expect(status(out)).toBe(421);
  });

  it('absolute-form naming another host on a TLS connection is refused (421)', async () => {
    const out = await rawExchange(
      () => tlsToGateway(env, 'api.test', env.api.port),
      `GET https://h2.test:${env.api.port}/v1/x HTTP/1.1\r\nHost: api.test:${env.api.port}\r\nConnection: close\r\n\r\n`,
    );
    expect(status(out)).toBe(421);
  });

  it('upper case and a trailing dot are the same host: the rule still applies', async () => {
    const out = await rawExchange(
      () => tlsToGateway(env, 'API.Test.', env.api.port),
      `GET /admin HTTP/1.1\r\nHost: API.TEST.:${env.api.port}\r\nConnection: close\r\n\r\n`,
    );
    expect(status(out)).toBe(403);
    const ok = await curl([...viaTunnel(env, 'API.TEST', env.api.port), '-H', `Authorization: Bearer ${PLACEHOLDER}`, `https://API.TEST:${env.api.port}/v1/items`]);
    expect(JSON.parse(ok.stdout).headers.host).toBe(`api.test:${env.api.port}`);
  });

  it('an IP literal without SNI gets a certificate for the IP and is decided as that endpoint', async () => {
    const r = await curl([
      '--cacert',
      env.gatewayCaPath,
      '--connect-to',
      `${UPSTREAM_IP}:${env.api.port}:${GATEWAY_IP}:${env.api.port}`,
      '-H',
      `Authorization: Bearer ${PLACEHOLDER}`,
      `https://${UPSTREAM_IP}:${env.api.port}/v1/items`,
    ]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout).url).toBe('/v1/items');
    expect(env.api.seen.at(-1)!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    const sock = tls.connect({ host: GATEWAY_IP, port: env.api.port, ca: env.gw.ca.caCertPem, checkServerIdentity: () => undefined });
    const cert = await new Promise<tls.PeerCertificate>((resolve) => sock.once('secureConnect', () => resolve(sock.getPeerCertificate())));
    sock.destroy();
    expect(cert.subjectaltname).toBe(`IP Address:${UPSTREAM_IP}`);
  });

  it('absolute-form through the proxy: the target names the host and Host is replaced', async () => {
    const before = env.plain.seen.length;
    const out = await rawExchange(
      () => net.connect(env.gw.proxyPort, '127.0.0.1'),
      `GET http://plain.test:${env.plain.port}/v1/items HTTP/1.1\r\nHost: evil.test\r\nAuthorization: Bearer ${PLACEHOLDER}\r\nConnection: close\r\n\r\n`,
    );
    expect(status(out)).toBe(200);
    const seen = env.plain.seen.slice(before);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers['host']).toBe(`plain.test:${env.plain.port}`);
    expect(seen[0]!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    const denied = await rawExchange(
      () => net.connect(env.gw.proxyPort, '127.0.0.1'),
      `GET http://plain.test:${env.plain.port}/admin HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n`,
    );
    expect(status(denied)).toBe(403);
  });

  it('origin-form to the proxy is refused', async () => {
    const out = await rawExchange(() => net.connect(env.gw.proxyPort, '127.0.0.1'), `GET /v1/items HTTP/1.1\r\nHost: plain.test\r\n\r\n`);
    expect(status(out)).toBe(400);
  });

  it('userinfo in an absolute URI is refused', async () => {
    const out = await rawExchange(
      () => net.connect(env.gw.proxyPort, '127.0.0.1'),
      `GET http://plain.test@evil.test/ HTTP/1.1\r\nHost: plain.test\r\n\r\n`,
    );
    expect(status(out)).toBe(400);
  });

  it('SNI of an unknown host with Host of a declared one: passed through untouched, no credential injected', async () => {
    const before = env.api.seen.length;
    const sock = tls.connect({ host: GATEWAY_IP, port: env.api.port, servername: 'unknown.test', ca: [env.pki.caPem], ALPNProtocols: ['http/1.1'] });
    const out = await rawExchange(
      () => sock,
      `GET /v1/items HTTP/1.1\r\nHost: api.test:${env.api.port}\r\nAuthorization: Bearer ${PLACEHOLDER}\r\nConnection: close\r\n\r\n`,
    );
    expect(status(out)).toBe(200);
    const seen = env.api.seen.slice(before);
    expect(seen).toHaveLength(1);
    // The upstream's own certificate reached the client (not a gateway leaf) and the placeholder was not replaced.
    expect(seen[0]!.headers['authorization']).toBe(`Bearer ${PLACEHOLDER}`);
    const rec = await env.gw.audit.waitForRecord((r) => r.host === 'unknown.test');
    expect(rec).toMatchObject({ outcome: 'allow', endpoint: null, status: 'passthrough' });
    expect(rec!.bytesIn).toBeGreaterThan(100);
    expect(rec!.bytesOut).toBeGreaterThan(100);
  });
});
