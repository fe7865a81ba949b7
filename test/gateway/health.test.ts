/**
 * `GET /healthz` follows the audit log: healthy while records are written;
 * healthy with a named problem while writes fail and records wait in memory;
 * 503 once the backlog is full and every action is refused (fail-closed), so
 * a load balancer or probe takes the gateway out instead of sending agents to
 * a gateway that denies everything; healthy again once the store takes
 * records. The problems are shown only with the admin token.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openStore, type Store } from '../../src/store/index.js';
import { AuditLog } from '../../src/audit/index.js';
import { startControlServer, type ControlServer } from '../../src/gateway/control-server.js';
import { auditHealth } from '../../src/gateway/gateway.js';
import { record } from '../audit/records.js';
import { flakyWriter } from '../audit/support/flaky-writer.js';

describe('/healthz and the audit log', () => {
  let dir: string | undefined;
  let store: Store | undefined;
  let server: ControlServer | undefined;
  afterEach(async () => {
    await server?.close();
    await store?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('healthy → degraded (writes failing) → 503 (backlog full, every action refused) → healthy', async () => {
    dir = mkdtempSync(join(tmpdir(), 'cp-health-'));
    store = await openStore({ stateDir: dir });
    const key = randomBytes(32);
    const flaky = flakyWriter(store, key);
    const log = new AuditLog({ store, key, writer: flaky, maxQueued: 5, onError: () => undefined });
    server = await startControlServer({ listen: '127.0.0.1:0', adminToken: 'tok', routes: [], health: () => auditHealth(log), log: () => undefined });
    /** What an operator with the admin token sees; an anonymous probe gets the status and `ok` only. */
    const probe = async () => {
      const anonymous = await fetch(`${server!.url}/healthz`);
      const res = await fetch(`${server!.url}/healthz`, { headers: { authorization: 'Bearer tok' } });
      const body = (await res.json()) as { ok: boolean };
      expect(anonymous.status).toBe(res.status);
      expect(await anonymous.json()).toEqual({ ok: body.ok });
      return { status: res.status, body };
    };

    log.append(record(1));
    await log.flush();
    expect(await probe()).toEqual({ status: 200, body: { ok: true } });

    flaky.broken = true;
    log.append(record(2));
    log.append(record(3));
    await expect(log.flush()).rejects.toThrow(/disk I\/O error/);
    expect(await probe()).toEqual({
      status: 200,
      body: { ok: true, problems: ['the audit log cannot write (disk I/O error); 2 records wait in memory, and at 5 every action is denied'] },
    });

    for (let i = 4; i <= 6; i++) log.append(record(i));
    expect(await probe()).toEqual({
      status: 503,
      body: { ok: false, problems: ['the audit log cannot record actions: 5 records are waiting to be written (disk I/O error)'] },
    });

    flaky.broken = false;
    await log.flush();
    expect(await probe()).toEqual({ status: 200, body: { ok: true } });
    await log.close();
  });
});
