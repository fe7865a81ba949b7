import { describe, it, expect, afterEach } from 'vitest';
import { mkdtempSync, statSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlServer, ensureAdminToken, readAdminToken, sendJson, type ControlServer } from '../../src/gateway/control-server.js';
import { ControlClient, ControlError } from '../../src/gateway/control-client.js';
import type { ControlRoute } from '../../src/gateway/contracts.js';

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
