/**
 * The approval queue without Slack: human approvers without a Slack
 * credential and builtin.dashboard wait there; the control API (real control
 * server, admin token) lists and decides; `clawpatrol approvals` (the built
 * CLI, spawned) talks to it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import type { PendingApproval } from '../../src/approvals/index.js';
import { ensureAdminToken } from '../../src/gateway/control-server.js';
import type { ApprovalOutcome } from '../../src/gateway/contracts.js';
import type { PolicyModel } from '../../src/policy/types.js';
import { approveDecision, humanApprover, model, secrets, sqlAction } from './support/model.js';
import { useApprovalServices, type ServiceSetup as Setup } from './support/service.js';

const vault = secrets({});
let stateDir: string;
let token: string;

beforeAll(() => {
  stateDir = mkdtempSync(join(tmpdir(), 'clawpatrol-approvals-'));
  token = ensureAdminToken(stateDir);
});
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

const startService = useApprovalServices();

async function setup(over: Parameters<typeof humanApprover>[0] = {}, defaults: Partial<PolicyModel['defaults']> = {}): Promise<Setup> {
  const approver = humanApprover({ id: 'human_approver.oncall', name: 'oncall', credential: undefined, channel: undefined, ...over });
  return startService(model({ approvers: [approver], defaults }), token, { secrets: vault });
}

const oncall = approveDecision(['human_approver.oncall']);

async function api(s: Setup, method: string, path: string, body?: unknown, auth = token): Promise<{ status: number; json: any }> {
  const res = await fetch(`${s.control.url}${path}`, {
    method,
    headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function pending(s: Setup, count = 1): Promise<PendingApproval[]> {
  const start = Date.now();
  for (;;) {
    const list = s.service.queue.list();
    if (list.length >= count) return list;
    if (Date.now() - start > 5000) throw new Error('nothing pending');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('approval queue API', () => {
  it('refuses requests without the admin token', async () => {
    const s = await setup();
    expect((await api(s, 'GET', '/api/approvals', undefined, '')).status).toBe(401);
    expect((await api(s, 'GET', '/api/approvals', undefined, 'wrong-token')).status).toBe(401);
    expect((await api(s, 'POST', '/api/approvals/x/approve', { user: 'a' }, 'wrong-token')).status).toBe(401);
  });

  it('lists a waiting action with its facts and approves it as cli:<user>', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DELETE FROM users WHERE id = 1'), oncall);
    const [entry] = await pending(s);
    const list = await api(s, 'GET', '/api/approvals');
    expect(list.status).toBe(200);
    expect(list.json.approvals).toHaveLength(1);
    expect(list.json.approvals[0]).toMatchObject({
      id: entry!.id,
      approver: 'human_approver.oncall',
      channel: 'queue',
      rule: 'risky-writes',
      reason: 'writes to production need approval',
      summary: 'DELETE FROM users WHERE id = 1',
      requiredApprovals: 1,
      approvals: [],
      onTimeout: 'deny',
    });
    expect(list.json.approvals[0].action.sql.statement.text).toBe('DELETE FROM users WHERE id = 1');
    expect((await api(s, 'GET', `/api/approvals/${entry!.id}`)).json.id).toBe(entry!.id);

    const decided = await api(s, 'POST', `/api/approvals/${entry!.id}/approve`, { user: 'alice', reason: 'ticket OPS-12' });
    expect(decided).toMatchObject({ status: 200, json: { state: 'decided' } });
    const out = await run;
    expect(out.verdict).toBe('allow');
    expect(out.stages[0]).toMatchObject({ decidedBy: 'cli:alice', reason: 'cli:alice: ticket OPS-12' });
    expect((await api(s, 'GET', '/api/approvals')).json.approvals).toEqual([]);
    expect((await api(s, 'GET', `/api/approvals/${entry!.id}`)).status).toBe(404);
  });

  it('a deny tells the agent the reason', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DROP TABLE t'), oncall);
    const [entry] = await pending(s);
    await api(s, 'POST', `/api/approvals/${entry!.id}/deny`, { user: 'bob', reason: 'not during the freeze' });
    const out = await run;
    expect(out.verdict).toBe('deny');
    expect(out.reason).toBe('approval denied by human_approver.oncall (cli:bob): not during the freeze');
  });

  it('rejects bad requests: unknown id, bad body, unknown fields, wrong method', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DELETE FROM q'), oncall);
    const [entry] = await pending(s);
    expect((await api(s, 'POST', '/api/approvals/nope/approve', { user: 'a' })).status).toBe(404);
    expect((await api(s, 'POST', `/api/approvals/${entry!.id}/approve`, {})).status).toBe(400);
    expect((await api(s, 'POST', `/api/approvals/${entry!.id}/approve`, { user: 'a', verdict: 'allow' })).status).toBe(400);
    expect((await api(s, 'POST', `/api/approvals/${entry!.id}/approve`, { user: 'a b\n' })).status).toBe(400);
    expect((await api(s, 'GET', `/api/approvals/${entry!.id}/approve`)).status).toBe(405);
    expect(s.service.queue.get(entry!.id)).toBeDefined();
    await api(s, 'POST', `/api/approvals/${entry!.id}/deny`, { user: 'a' });
    expect((await run).verdict).toBe('deny');
  });

  it('require_approvers = 2 needs two distinct users through the API', async () => {
    const s = await setup({ requireApprovers: 2 });
    const run = s.service.runner.run(sqlAction('DELETE FROM big'), oncall);
    const [entry] = await pending(s);
    expect((await api(s, 'POST', `/api/approvals/${entry!.id}/approve`, { user: 'alice' })).json.state).toBe('recorded');
    expect((await api(s, 'POST', `/api/approvals/${entry!.id}/approve`, { user: 'alice' })).status).toBe(409);
    expect(s.service.queue.get(entry!.id)?.approvals).toEqual(['cli:alice']);
    expect((await api(s, 'POST', `/api/approvals/${entry!.id}/approve`, { user: 'carol', via: 'dashboard' })).json.state).toBe('decided');
    const out = await run;
    expect(out.stages[0]).toMatchObject({ verdict: 'allow', decidedBy: 'cli:alice,dashboard:carol' });
  });

  it('builtin.dashboard waits in the queue and records dashboard:<user>', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DELETE FROM d'), approveDecision(['builtin.dashboard']));
    const [entry] = await pending(s);
    expect(entry!.approver).toBe('builtin.dashboard');
    await api(s, 'POST', `/api/approvals/${entry!.id}/approve`, { user: 'dana', via: 'dashboard' });
    expect((await run).stages[0]).toMatchObject({ approver: 'builtin.dashboard', decidedBy: 'dashboard:dana' });
  });

  it('a queue entry times out into human_on_timeout and disappears', async () => {
    const s = await setup({ timeoutSec: 1, onTimeout: 'allow' });
    const out = await s.service.runner.run(sqlAction('DELETE FROM e'), oncall);
    expect(out.verdict).toBe('allow');
    expect(out.stages[0]).toMatchObject({ decidedBy: 'timeout', failMode: true });
    expect(s.service.queue.list()).toEqual([]);
  });

  it('the summary names a verb hidden inside the statement', async () => {
    const s = await setup();
    const action = sqlAction('WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d');
    action.facts.sql!.verb = 'delete';
    const run = s.service.runner.run(action, oncall);
    const [entry] = await pending(s);
    expect(entry!.summary).toBe('[DELETE] WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d');
    s.service.queue.decide(entry!.id, 'deny', { via: 'cli', user: 'x' });
    await run;
  });

  it('the agent hanging up removes the entry', async () => {
    const s = await setup();
    const hangUp = new AbortController();
    const run = s.service.runner.run(sqlAction('DELETE FROM f'), oncall, hangUp.signal);
    await pending(s);
    hangUp.abort();
    expect((await run).stages[0]).toMatchObject({ decidedBy: 'withdrawn' });
    expect(s.service.queue.list()).toEqual([]);
  });

  it('a chain runs in order: the queue stage only starts after the previous stage allowed', async () => {
    const s = await setup();
    s.policy.current = model({
      approvers: [
        humanApprover({ id: 'human_approver.first', name: 'first', credential: undefined }),
        humanApprover({ id: 'human_approver.second', name: 'second', credential: undefined }),
      ],
    });
    const run = s.service.runner.run(sqlAction('DELETE FROM g'), approveDecision(['human_approver.first', 'human_approver.second']));
    const [first] = await pending(s);
    expect(s.service.queue.list().map((e) => e.approver)).toEqual(['human_approver.first']);
    await api(s, 'POST', `/api/approvals/${first!.id}/approve`, { user: 'alice' });
    const start = Date.now();
    let second: PendingApproval | undefined;
    while (!(second = s.service.queue.list().find((e) => e.approver === 'human_approver.second')) && Date.now() - start < 5000) {
      await new Promise((r) => setTimeout(r, 10));
    }
    await api(s, 'POST', `/api/approvals/${second!.id}/deny`, { user: 'bob', reason: 'second thoughts' });
    const out = await run;
    expect(out.verdict).toBe('deny');
    expect(out.stages.map((st) => [st.approver, st.verdict, st.decidedBy])).toEqual([
      ['human_approver.first', 'allow', 'cli:alice'],
      ['human_approver.second', 'deny', 'cli:bob'],
    ]);
  });

  it('long-polls: a waiting list request answers as soon as the queue changes', async () => {
    const s = await setup();
    const { json } = await api(s, 'GET', '/api/approvals');
    const started = Date.now();
    const waiting = api(s, 'GET', `/api/approvals?since=${json.version}&wait=10`);
    await new Promise((r) => setTimeout(r, 100));
    const run = s.service.runner.run(sqlAction('DELETE FROM h'), oncall);
    const changed = await waiting;
    expect(Date.now() - started).toBeLessThan(5000);
    expect(changed.json.version).toBeGreaterThan(json.version);
    expect(changed.json.approvals).toHaveLength(1);
    await api(s, 'POST', `/api/approvals/${changed.json.approvals[0].id}/deny`, { user: 'x' });
    await run;
  });
});

// ───────────────────────────── CLI ─────────────────────────────────────────

const CLI = join(process.cwd(), 'dist', 'cli', 'main.js');

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, 'approvals', ...args],
      { env: { ...process.env, CLAWPATROL_STATE_DIR: stateDir, ...env }, timeout: 20_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A port nothing listens on. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

// Each case spawns the CLI several times; on a busy 2-core machine that takes a while.
describe('clawpatrol approvals (built CLI; run `npm run build` first)', { timeout: 90_000 }, () => {
  it('list shows the waiting actions; approve by id prefix decides as cli:<user>', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DELETE FROM users WHERE id = 9'), oncall);
    const [entry] = await pending(s);

    const list = await cli(['list', '--gateway', s.control.url]);
    expect(list.code).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+AGE\s+EXPIRES\s+APPROVER\s+VOTES\s+RULE\s+ACTION$/);
    expect(lines[1]).toContain(entry!.id);
    expect(lines[1]).toMatch(/human_approver\.oncall\s+-\s+risky-writes\s+DELETE FROM users WHERE id = 9$/);
    expect(lines[1]).toMatch(/\d+m\d\ds→deny/);

    const json = await cli(['list', '--json', '--gateway', s.control.url]);
    expect(JSON.parse(json.stdout)).toEqual([expect.objectContaining({ id: entry!.id })]);

    const approve = await cli(['approve', entry!.id.slice(0, 6), '--as', 'alice', '--reason', 'looks right', '--gateway', s.control.url]);
    expect(approve.stderr).toBe('');
    expect(approve.code).toBe(0);
    expect(approve.stdout).toBe(`Approved ${entry!.id}: DELETE FROM users WHERE id = 9\n`);
    const out: ApprovalOutcome = await run;
    expect(out.stages[0]).toMatchObject({ verdict: 'allow', decidedBy: 'cli:alice', reason: 'cli:alice: looks right' });

    const empty = await cli(['list', '--gateway', s.control.url]);
    expect(empty.stdout).toBe('No actions are waiting for approval.\n');
  });

  it('deny with a reason; the gateway URL and state dir come from the policy file', async () => {
    const s = await setup();
    const dir = mkdtempSync(join(tmpdir(), 'clawpatrol-policy-'));
    try {
      const port = new URL(s.control.url).port;
      writeFileSync(
        join(dir, 'gateway.hcl'),
        `schema_version = 1\ngateway {\n  dashboard_listen = "0.0.0.0:${port}"\n  state_dir = "${stateDir}"\n}\n` +
          `endpoint "postgres" "pg" {\n  host = "127.0.0.1:5432"\n  listen = "127.0.0.1:15432"\n}\n`,
      );
      const run = s.service.runner.run(sqlAction('TRUNCATE payments'), oncall);
      const [entry] = await pending(s);
      const deny = await cli(['deny', entry!.id, '--reason', 'use the staging copy', '--as', 'bob', '--config', dir], {
        CLAWPATROL_STATE_DIR: '',
      });
      expect(deny.stderr).toBe('');
      expect(deny.code).toBe(0);
      expect(deny.stdout).toBe(`Denied ${entry!.id}: TRUNCATE payments\n`);
      const out = await run;
      expect(out.reason).toBe('approval denied by human_approver.oncall (cli:bob): use the staging copy');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('quorum progress and a second approval by the same user', async () => {
    const s = await setup({ requireApprovers: 2 });
    const run = s.service.runner.run(sqlAction('DELETE FROM two'), oncall);
    const [entry] = await pending(s);
    const first = await cli(['approve', entry!.id, '--as', 'alice', '--gateway', s.control.url]);
    expect(first.stdout).toBe(`Approval by cli:alice recorded for ${entry!.id} (1 of 2); waiting for more approvers\n`);
    const again = await cli(['approve', entry!.id, '--as', 'alice', '--gateway', s.control.url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`clawpatrol approvals: cli:alice has already approved ${entry!.id}\n`);
    await cli(['approve', entry!.id, '--as', 'bob', '--gateway', s.control.url]);
    expect((await run).stages[0]!.decidedBy).toBe('cli:alice,cli:bob');
  });

  it('unknown ids, a wrong or missing token, an unreachable gateway, usage errors', async () => {
    const s = await setup();
    const missing = await cli(['deny', 'ffffffffffffffff', '--gateway', s.control.url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no pending approval "ffffffffffffffff"');

    const badToken = await cli(['list', '--gateway', s.control.url, '--token', 'wrong']);
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).toContain('the gateway refused the admin token (401)');

    const noTokenDir = mkdtempSync(join(tmpdir(), 'clawpatrol-empty-'));
    const noToken = await cli(['list', '--gateway', s.control.url], { CLAWPATROL_STATE_DIR: noTokenDir });
    rmSync(noTokenDir, { recursive: true, force: true });
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toContain('no admin token at');

    const closed = await closedPort();
    const down = await cli(['list', '--gateway', `http://127.0.0.1:${closed}`]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain(`cannot reach the gateway at http://127.0.0.1:${closed}`);

    const usage = await cli(['approve']);
    expect(usage.code).toBe(2);
  });

  it('agent text cannot inject terminal escapes into the listing', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DELETE FROM t WHERE note = \'\u001b[2J\u001b[31mowned\r\''), oncall);
    const [entry] = await pending(s);
    const list = await cli(['list', '--gateway', s.control.url]);
    expect(list.stdout).not.toMatch(/[\u001b\r]/);
    expect(list.stdout).toContain('owned');
    await cli(['deny', entry!.id, '--gateway', s.control.url]);
    await run;
  });
});
