/**
 * The enrolment and device API over a real control server (TLS on the same
 * port, leaves from the real gateway CA) and a real SQLite store (no
 * WireGuard needed: the tunnel side is exercised by the namespace tests).
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import type { JoinResult } from '../../src/net/enrol-routes.js';
import { TOKEN_NAMESPACE } from '../../src/net/enrolment.js';
import { generateKeyPair } from '../../src/net/keys.js';
import { ADMIN, startEnrolServer, type EnrolServer } from './support/enrol-server.js';

let es: EnrolServer;
const call = (method: string, path: string, body?: unknown, token?: string) => es.call(method, path, body, token);

beforeEach(async () => {
  es = await startEnrolServer();
});

afterEach(async () => {
  await es.close();
});

describe('join tokens', () => {
  it('are minted by admins only, for existing profiles', async () => {
    expect((await call('POST', '/api/devices/tokens', { profile: 'dev' })).status).toBe(401);
    expect((await call('POST', '/api/devices/tokens', { profile: 'dev' }, 'wrong')).status).toBe(401);
    const bad = await call('POST', '/api/devices/tokens', { profile: 'nope' }, ADMIN);
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/no profile "nope".*dev, ops/);
    const ok = await call('POST', '/api/devices/tokens', { profile: 'dev', ttlSec: 60 }, ADMIN);
    expect(ok.status).toBe(200);
    expect(ok.body.token).toMatch(/^cpj_/);
    // Only a hash is stored.
    const stored = await es.store.kv.list(TOKEN_NAMESPACE);
    expect(JSON.stringify(stored)).not.toContain(String(ok.body.token));
  });

  it('enrol a device once, with its own public key, and give it a device token for itself', async () => {
    const { token } = (await call('POST', '/api/devices/tokens', { profile: 'dev' }, ADMIN)).body as { token: string };
    const key = generateKeyPair().publicKey;
    const join = await call('POST', '/api/enrol/token', { token, publicKey: key, name: 'ci-1' });
    expect(join.status).toBe(200);
    const result = join.body as unknown as JoinResult;
    expect(result.device).toMatchObject({ name: 'ci-1', profile: 'dev', address4: '10.55.0.2', address6: 'fd7c::2', publicKey: key });
    expect(result.placeholders).toEqual([{ credential: 'bearer_token.gh', placeholder: 'cp_ph_gh', env: 'GITHUB_TOKEN' }]);
    const again = await call('POST', '/api/enrol/token', { token, publicKey: generateKeyPair().publicKey, name: 'ci-2' });
    expect(again.status).toBe(401);
    const self = await call('GET', '/api/enrol/self', undefined, result.deviceToken);
    expect(self.status).toBe(200);
    expect((self.body.device as { id: string }).id).toBe(result.device.id);
    expect((await call('GET', '/api/enrol/self', undefined, 'cpt_forged')).status).toBe(401);
    // The device token is not an admin token.
    expect((await call('GET', '/api/devices', undefined, result.deviceToken)).status).toBe(401);
    const left = await call('DELETE', '/api/enrol/self', undefined, result.deviceToken);
    expect(left.body).toMatchObject({ left: true });
    expect(es.removed).toContain(result.device.id);
    expect((await call('GET', '/api/enrol/self', undefined, result.deviceToken)).status).toBe(401);
  });

  it('expire', async () => {
    const { token } = (await call('POST', '/api/devices/tokens', { profile: 'dev', ttlSec: 60 }, ADMIN)).body as { token: string };
    es.advance(61_000);
    const r = await call('POST', '/api/enrol/token', { token, publicKey: generateKeyPair().publicKey });
    expect(r.status).toBe(401);
    expect(r.body.error).toMatch(/expired/);
  });

  it('reject malformed requests with a reason', async () => {
    expect((await call('POST', '/api/enrol/token', '{not json')).status).toBe(400);
    expect((await call('POST', '/api/enrol/token', { token: 'x', publicKey: 'short' })).body.error).toMatch(/WireGuard public key/);
    expect((await call('POST', '/api/enrol/token', { token: 'x', publicKey: generateKeyPair().publicKey, name: 'bad\nname' })).status).toBe(400);
    expect((await call('PUT', '/api/enrol/token', {})).status).toBe(405);
  });

  it('never enrol the same public key twice', async () => {
    const key = generateKeyPair().publicKey;
    for (const expected of [200, 409]) {
      const { token } = (await call('POST', '/api/devices/tokens', { profile: 'dev' }, ADMIN)).body as { token: string };
      expect((await call('POST', '/api/enrol/token', { token, publicKey: key })).status).toBe(expected);
    }
  });

  it('stop when the tunnel subnet is full', async () => {
    // 10.55.0.0/29: .1 is the gateway, .2–.6 for devices, .7 broadcast.
    for (let i = 0; i < 5; i++) {
      const { token } = (await call('POST', '/api/devices/tokens', { profile: 'ops' }, ADMIN)).body as { token: string };
      expect((await call('POST', '/api/enrol/token', { token, publicKey: generateKeyPair().publicKey })).status).toBe(200);
    }
    const { token } = (await call('POST', '/api/devices/tokens', { profile: 'ops' }, ADMIN)).body as { token: string };
    const full = await call('POST', '/api/enrol/token', { token, publicKey: generateKeyPair().publicKey });
    expect(full.status).toBe(507);
    expect(full.body.error).toMatch(/full/);
  });
});

describe('device codes', () => {
  it('wait for an admin, who picks the profile; the result is handed out once', async () => {
    const key = generateKeyPair().publicKey;
    const start = await call('POST', '/api/enrol/device', { publicKey: key, name: 'laptop' });
    expect(start.status).toBe(200);
    const { deviceCode, userCode } = start.body as { deviceCode: string; userCode: string };
    expect(userCode).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect((await call('POST', '/api/enrol/device/poll', { deviceCode })).body).toEqual({ status: 'pending' });
    const listed = await call('GET', '/api/devices', undefined, ADMIN);
    expect(listed.body.pending).toMatchObject([{ userCode, name: 'laptop', publicKey: key }]);
    expect((await call('POST', '/api/devices/approve', { userCode, profile: 'dev' })).status).toBe(401);
    const approved = await call('POST', '/api/devices/approve', { userCode: userCode.toLowerCase(), profile: 'ops' }, ADMIN);
    expect(approved.status).toBe(200);
    const polled = await call('POST', '/api/enrol/device/poll', { deviceCode });
    expect(polled.body.status).toBe('approved');
    expect((polled.body.join as JoinResult).device).toMatchObject({ name: 'laptop', profile: 'ops' });
    expect((await call('POST', '/api/enrol/device/poll', { deviceCode })).status).toBe(404);
    expect((await call('POST', '/api/devices/approve', { userCode, profile: 'ops' }, ADMIN)).status).toBe(404);
  });

  it('can be denied, and expire', async () => {
    const a = (await call('POST', '/api/enrol/device', { publicKey: generateKeyPair().publicKey })).body as { deviceCode: string; userCode: string };
    expect((await call('POST', '/api/devices/deny', { userCode: a.userCode }, ADMIN)).status).toBe(200);
    expect((await call('POST', '/api/enrol/device/poll', { deviceCode: a.deviceCode })).status).toBe(403);
    const b = (await call('POST', '/api/enrol/device', { publicKey: generateKeyPair().publicKey })).body as { deviceCode: string };
    es.advance(16 * 60_000);
    expect((await call('POST', '/api/enrol/device/poll', { deviceCode: b.deviceCode })).status).toBe(410);
  });

  it('a revoke of an unknown device is a 404', async () => {
    expect((await call('POST', '/api/devices/dev_0000000000/revoke', undefined, ADMIN)).status).toBe(404);
  });
});
