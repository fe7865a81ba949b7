import { describe, it, expect, afterEach, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, statSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { request as httpsRequest } from 'node:https';
import { startControlServer, ensureAdminToken, readAdminToken, sendJson, controlTlsNames, type ControlServer } from '../../src/gateway/control-server.js';
import { openStore, type Store } from '../../src/store/index.js';
import { openVault, openGatewayCa, type GatewayCa, type Vault } from '../../src/vault/index.js';
import { ControlClient, ControlError } from '../../src/gateway/control-client.js';
import type { ControlRoute } from '../../src/gateway/contracts.js';
import { connectAdmin } from '../../cli/admin-connection.js';

const echo: ControlRoute = async (req, res, ctx) => {
  if (ctx.url.pathname !== '/api/echo') return false;
  if (!ctx.admin) {
    sendJson(res, 401, { error: 'admin token required' });
    return true;
  }
  const body = await ctx.body();
  sendJson(res, 200, { method: req.method, got: JSON.parse(body.toString() || 'null') });
  return true;
};
const boom: ControlRoute = (_req, _res, ctx) => {
  if (ctx.url.pathname === '/api/boom') throw new Error('secret internals');
  return false;
};

describe('control server', () => {
  let server: ControlServer | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('creates a 0600 admin token once and reuses it', () => {
    dir = mkdtempSync(join(tmpdir(), 'cp-ctl-'));
    const t1 = ensureAdminToken(dir);
    const t2 = ensureAdminToken(dir);
    expect(t1).toBe(t2);
    expect(t1.length).toBeGreaterThanOrEqual(40);
    expect(statSync(join(dir, 'admin.token')).mode & 0o777).toBe(0o600);
    expect(readAdminToken(dir)).toBe(t1);
  });

  it('explains a missing admin token', () => {
    dir = mkdtempSync(join(tmpdir(), 'cp-ctl-'));
    expect(() => readAdminToken(dir!)).toThrow(/start the gateway once/);
  });

  it('authenticates admin routes, caps bodies, hides internal errors, 404s the rest', async () => {
    server = await startControlServer({ listen: '127.0.0.1:0', adminToken: 'tok-123', routes: [echo, boom], maxBodyBytes: 64 });
    const admin = new ControlClient({ baseUrl: server.url, token: 'tok-123' });
    expect(await admin.request('POST', '/api/echo', { a: 1 })).toEqual({ method: 'POST', got: { a: 1 } });

    const wrong = new ControlClient({ baseUrl: server.url, token: 'tok-124' });
    await expect(wrong.request('POST', '/api/echo', {})).rejects.toThrow(/refused the admin token \(401\)/);
    const none = new ControlClient({ baseUrl: server.url });
    await expect(none.request('POST', '/api/echo', {})).rejects.toMatchObject({ status: 401 });

    await expect(admin.request('POST', '/api/echo', { big: 'x'.repeat(200) })).rejects.toMatchObject({ status: 413 });

    const err = await admin.request('GET', '/api/boom').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlError);
    expect((err as ControlError).status).toBe(500);
    expect((err as ControlError).message).not.toContain('secret internals');

    await expect(admin.request('GET', '/nope')).rejects.toMatchObject({ status: 404 });
    expect(await admin.request('GET', '/healthz')).toEqual({ ok: true });
  });

  it('reports an unreachable gateway clearly', async () => {
    const c = new ControlClient({ baseUrl: 'http://127.0.0.1:1', timeoutMs: 2000 });
    await expect(c.request('GET', '/healthz')).rejects.toThrow(/cannot reach the gateway at http:\/\/127.0.0.1:1/);
  });
});

describe('control server with TLS on the same port', () => {
  let server: ControlServer;
  let dir: string;
  let store: Store;
  let vault: Vault;
  let ca: GatewayCa;
  let port: number;
  const record: ControlRoute = async (req, res, ctx) => {
    const body = await ctx.body();
    sendJson(res, 200, { path: ctx.url.pathname, secure: ctx.secure, bytes: body.length, method: req.method });
    return true;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cp-ctl-tls-'));
    store = await openStore({ stateDir: dir });
    vault = await openVault({ store, stateDir: dir, model: () => ({ credentials: new Map() }), env: {}, key: 'create', refreshMs: 0 });
    ca = await openGatewayCa(vault);
    server = await startControlServer({
      listen: '127.0.0.1:0',
      adminToken: 'tok',
      routes: [record],
      tls: { secureContextFor: (h) => ca.secureContextFor(h), names: controlTlsNames('https://gw.example.test:8443/') },
    });
    port = (server.server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await server.close();
    await vault.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function tlsGet(path: string, opts: { servername?: string; skipNameCheck?: boolean } = {}): Promise<{ status: number; body: Record<string, unknown>; subjectAltName: string }> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port,
          path,
          ca: ca.caCertPem,
          agent: false,
          ...(opts.servername ? { servername: opts.servername } : {}),
          ...(opts.skipNameCheck ? { checkServerIdentity: () => undefined } : {}),
        },
        (res) => {
          const san = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().subjectaltname ?? '';
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown>, subjectAltName: san }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('tells TLS from HTTP by the first byte, also when a request arrives in pieces or pipelined', async () => {
    const secure = await tlsGet('/a');
    expect(secure.body).toMatchObject({ path: '/a', secure: true });
    expect(secure.subjectAltName).toBe('IP Address:127.0.0.1');

    const sock = connect(port, '127.0.0.1');
    let out = '';
    sock.on('data', (d: Buffer) => (out += d.toString()));
    sock.write('P');
    await new Promise((r) => setTimeout(r, 50));
    sock.write('OST /b HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\n\r\nab');
    await new Promise((r) => setTimeout(r, 50));
    sock.write('cdGET /c HTTP/1.1\r\nHost: x\r\nconnection: close\r\n\r\n');
    await new Promise((r) => sock.once('close', r));
    const bodies = out.split('\r\n\r\n').filter((p) => p.startsWith('{'));
    expect(bodies.map((b) => JSON.parse(b.slice(0, b.indexOf('}') + 1)))).toEqual([
      { path: '/b', secure: false, bytes: 4, method: 'POST' },
      { path: '/c', secure: false, bytes: 0, method: 'GET' },
    ]);
  });

  it("serves public_url's host by name, and the dialed address for any other name without minting for it", async () => {
    const named = await tlsGet('/n', { servername: 'gw.example.test' });
    expect(named.subjectAltName).toBe('DNS:gw.example.test');
    const before = ca.minted;
    for (const name of ['bank.example', 'a.evil.test', 'b.evil.test']) {
      const r = await tlsGet('/x', { servername: name, skipNameCheck: true });
      expect(r.subjectAltName).toBe('IP Address:127.0.0.1');
    }
    expect(ca.minted).toBe(before);
    await expect(tlsGet('/x', { servername: 'bank.example' })).rejects.toThrow(/altnames/);
  });

  it('admin CLIs reach a remote gateway over https with --ca-file, and refuse without it or with a file that is no CA', async () => {
    const caFile = join(dir, 'gateway-ca.pem');
    writeFileSync(caFile, ca.caCertPem);
    const gateway = `https://127.0.0.1:${port}/`;
    const trusted = await connectAdmin({ gateway, token: 'tok', caFile });
    expect(await trusted.client.request('GET', '/remote')).toMatchObject({ path: '/remote', secure: true });
    const untrusted = await connectAdmin({ gateway, token: 'tok' });
    await expect(untrusted.client.request('GET', '/remote')).rejects.toThrow(/cannot reach the gateway at https:\/\/127\.0\.0\.1:\d+\/: .*(self-signed|issuer|verify)/i);
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate');
    await expect(connectAdmin({ gateway, token: 'tok', caFile: junk })).rejects.toThrow(/holds no PEM certificate/);
    await expect(connectAdmin({ gateway: `http://127.0.0.1:${port}/`, token: 'tok', caFile })).rejects.toThrow(/only applies to an https --gateway/);
    await expect(connectAdmin({ gateway, token: 'tok', caFile: join(dir, 'missing.pem') })).rejects.toThrow(/cannot read --ca-file/);
  });

  it('answers 408 and closes a client whose headers trickle in too slowly, over HTTP and TLS', async () => {
    const slow = await startControlServer({ listen: '127.0.0.1:0', adminToken: 'tok', routes: [record], headersTimeoutMs: 800, tls: { secureContextFor: (h) => ca.secureContextFor(h) } });
    const slowPort = (slow.server.address() as { port: number }).port;
    try {
      const plain = connect(slowPort, '127.0.0.1');
      plain.on('error', () => {}); // the drip may hit the closed socket
      let answer = '';
      plain.on('data', (d: Buffer) => (answer += d.toString()));
      plain.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => plain.write('x-drip: 1\r\n'), 200);
      const started = Date.now();
      await new Promise((r) => plain.once('close', r));
      clearInterval(drip);
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
      expect(Date.now() - started).toBeLessThan(5000);

      const { connect: tlsConnect } = await import('node:tls');
      const secure = tlsConnect({ host: '127.0.0.1', port: slowPort, ca: ca.caCertPem });
      secure.on('error', () => {});
      await new Promise((r) => secure.once('secureConnect', r));
      secure.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
      const drip2 = setInterval(() => secure.write('x-drip: 1\r\n'), 200);
      await new Promise((r) => secure.once('close', r));
      clearInterval(drip2);
    } finally {
      await slow.close();
    }
  });

  it('closes clients that never speak, and closes promptly with them attached', async () => {
    const idle = connect(port, '127.0.0.1');
    await new Promise((r) => idle.once('connect', r));
    const closed = new Promise((r) => idle.once('close', r));
    const started = Date.now();
    await server.close();
    await closed;
    expect(Date.now() - started).toBeLessThan(2000);
    // Reopen for afterAll.
    server = await startControlServer({ listen: '127.0.0.1:0', adminToken: 'tok', routes: [record] });
  });
});

describe('controlTlsNames', () => {
  it("takes public_url's host name, never an address", () => {
    expect(controlTlsNames('https://gw.example.com:8443')).toEqual(['gw.example.com']);
    expect(controlTlsNames('http://10.0.0.1:8080')).toEqual([]);
    expect(controlTlsNames('http://[fd00::1]:8080')).toEqual([]);
    expect(controlTlsNames(undefined)).toEqual([]);
  });
});
