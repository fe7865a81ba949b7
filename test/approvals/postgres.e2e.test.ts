/**
 * Approvals end to end through the Postgres engine: a real PostgreSQL 15
 * behind the gateway's real Postgres listener, the real `pg` client, the
 * policy from HCL, the Enforcer, and the approvals service (queue + the
 * built `clawpatrol approvals` CLI, LLM judge via the SDK against a fake
 * Messages API). The statement waits, then runs (approve) or fails with
 * 42501 and the approver's reason (deny, timeout).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import pg from 'pg';
import { createApprovalService, type ApprovalService, type PendingApproval } from '../../src/approvals/index.js';
import { startControlServer, type ControlServer } from '../../src/gateway/control-server.js';
import { startGatewayFixture, type GatewayFixture } from '../postgres/support/gateway-fixture.js';
import { startFakeAnthropic, toolMessage, type FakeAnthropic } from './support/fake-anthropic.js';
import { secrets } from './support/model.js';

const ADMIN = 'pg-e2e-admin-token';
const CLI = join(process.cwd(), 'dist', 'cli', 'main.js');

let anthropic: FakeAnthropic;
let f: GatewayFixture;
let service: ApprovalService;
let control: ControlServer;

function rules(anthropicUrl: string): string {
  return `
endpoint "https" "anthropic" { hosts = ["api.anthropic.com"] }
credential "anthropic_manual_key" "judge" { endpoint = https.anthropic }
approver "llm_approver" "judge" {
  model      = "claude-pg-e2e"
  credential = anthropic_manual_key.judge
  base_url   = "${anthropicUrl}"
  policy     = "Updates that change balances of a single account are fine; bulk updates are not."
}
approver "human_approver" "dba" {
  timeout = 30
}
approver "human_approver" "quick" {
  timeout    = 1
  on_timeout = "deny"
}
rule "deletes-need-a-dba" {
  endpoint  = postgres.db
  condition = "sql.verb == 'delete'"
  approve   = [human_approver.dba]
  reason    = "deletes need a DBA"
}
rule "updates-are-judged" {
  endpoint  = postgres.db
  condition = "sql.verb == 'update'"
  approve   = [llm_approver.judge]
}
rule "truncate-quick" {
  endpoint  = postgres.db
  condition = "sql.verb == 'truncate'"
  approve   = [human_approver.quick]
}
`;
}

beforeAll(async () => {
  anthropic = await startFakeAnthropic();
  f = await startGatewayFixture(rules(anthropic.url));
  service = createApprovalService({
    policy: () => f.h.policy.model,
    secrets: secrets({ 'anthropic_manual_key.judge': { token: 'sk-ant-pg-e2e' } }),
  });
  f.h.approve = (action, decision, signal) => service.runner.run(action, decision, signal);
  control = await startControlServer({ listen: '127.0.0.1:0', adminToken: ADMIN, routes: [service.route] });
}, 120_000);

afterAll(async () => {
  await service?.close();
  await control?.close();
  await f?.stop();
  await anthropic?.close();
});

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ host: '127.0.0.1', port: f.port, user: 'PH_scram', database: 'postgres' });
  await c.connect();
  return c;
}

async function pendingEntry(): Promise<PendingApproval> {
  const start = Date.now();
  for (;;) {
    const [entry] = service.queue.list();
    if (entry) return entry;
    if (Date.now() - start > 10_000) throw new Error('no approval became pending');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'approvals', ...args, '--gateway', control.url, '--token', ADMIN], { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('approvals through the Postgres engine (PostgreSQL 15, pg)', () => {
  it('a DELETE waits in the queue; approved with the CLI, it runs', async () => {
    const c = await client();
    try {
      const pending = c.query('DELETE FROM accounts WHERE id = 100');
      const entry = await pendingEntry();
      expect(entry).toMatchObject({ approver: 'human_approver.dba', rule: 'deletes-need-a-dba', summary: 'DELETE FROM accounts WHERE id = 100' });
      expect(entry.action.sql?.tables).toContain('accounts');
      // Still waiting: nothing has run.
      expect(f.count('accounts')).toBe(100);
      const r = await cli(['approve', entry.id, '--as', 'alice']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const result = await pending;
      expect(result.rowCount).toBe(1);
      expect(f.count('accounts')).toBe(99);
      const record = f.h.audit.find((a) => a.rule === 'deletes-need-a-dba');
      expect(record?.approvals).toEqual([expect.objectContaining({ approver: 'human_approver.dba', verdict: 'allow', decidedBy: 'cli:alice' })]);
    } finally {
      f.pg.sql(`INSERT INTO accounts VALUES (100, 'owner100', 1000) ON CONFLICT DO NOTHING`);
      await c.end();
    }
  });

  it('denied with the CLI, the DELETE fails with 42501 and the reason; the session stays usable', async () => {
    const c = await client();
    try {
      const pending = c.query('DELETE FROM accounts WHERE id > 50').catch((e: unknown) => e);
      const entry = await pendingEntry();
      await cli(['deny', entry.id, '--as', 'bob', '--reason', 'not during month end']);
      expect(await pending).toMatchObject({
        code: '42501',
        message: 'approval denied by human_approver.dba (cli:bob): not during month end',
      });
      expect(f.count('accounts')).toBe(100);
      expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await c.end();
    }
  });

  it('an UPDATE goes to the LLM judge: deny → 42501 with its reason; allow → it runs', async () => {
    const c = await client();
    try {
      anthropic.reply = () => toolMessage({ verdict: 'deny', reason: 'bulk update of every balance' });
      const err = await c.query('UPDATE accounts SET balance = 0').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: '42501', message: 'approval denied by llm_approver.judge (llm:claude-pg-e2e): bulk update of every balance' });
      expect(anthropic.calls.at(-1)!.body.messages[0]!.content).toContain('UPDATE accounts SET balance = 0');
      expect(Number(f.pg.sql('SELECT sum(balance) FROM accounts').trim())).toBeGreaterThan(0);

      anthropic.reply = () => toolMessage({ verdict: 'allow', reason: 'single account' });
      const ok = await c.query('UPDATE accounts SET balance = balance + 1 WHERE id = $1', [7]);
      expect(ok.rowCount).toBe(1);
      expect(f.pg.sql('SELECT balance FROM accounts WHERE id = 7').trim()).toBe('71');
    } finally {
      f.pg.sql('UPDATE accounts SET balance = 70 WHERE id = 7');
      await c.end();
    }
  });

  it('nobody answers: on_timeout = deny fails the statement with 42501', async () => {
    const c = await client();
    try {
      const err = await c.query('TRUNCATE items').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: '42501', message: 'approval denied: human_approver.quick did not answer within 1s (on_timeout = deny)' });
    } finally {
      await c.end();
    }
  });

  it('an agent that disconnects while waiting withdraws its queue entry', async () => {
    const c = await client();
    const pending = c.query('DELETE FROM accounts WHERE id = 1').catch(() => undefined);
    const entry = await pendingEntry();
    await c.end().catch(() => undefined);
    await pending;
    const start = Date.now();
    while (service.queue.get(entry.id) && Date.now() - start < 10_000) await new Promise((r) => setTimeout(r, 20));
    expect(service.queue.get(entry.id)).toBeUndefined();
    expect(f.count('accounts')).toBe(100);
  });
});
