/**
 * The whole decision path with the real parts: an HCL policy loaded by
 * `loadPolicy` (hot-swappable getter), `decide`, the Enforcer, and the
 * approvals service — LLM judge (real SDK → fake Messages API) then a human
 * in Slack (real Bolt → fake Web API, signed clicks to the real control
 * server).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApprovalService, type ApprovalService } from '../../src/approvals/index.js';
import { startControlServer, type ControlServer } from '../../src/gateway/control-server.js';
import type { AuditRecordInput } from '../../src/gateway/contracts.js';
import { createEnforcer } from '../../src/gateway/enforcer.js';
import { loadPolicy, type CompiledPolicy } from '../../src/policy/index.js';
import { startFakeAnthropic, toolMessage, type FakeAnthropic } from './support/fake-anthropic.js';
import { blockActionPayload, signedRequest, startFakeSlack, type FakeSlack } from './support/fake-slack.js';
import { secrets, sqlAction } from './support/model.js';

const SIGNING = 'e2e-signing-secret-abcdef';
const vault = secrets({
  'anthropic_manual_key.judge': { token: 'sk-ant-e2e-judge' },
  'slack_tokens.slack': { bot: 'xoxb-e2e-bot', signing_secret: SIGNING },
  'postgres_credential.app': { password: 'e2e-db-password' },
});

let dir: string;
let policy: CompiledPolicy;
let anthropic: FakeAnthropic;
let slackApi: FakeSlack;
let service: ApprovalService;
let control: ControlServer;
const audit: AuditRecordInput[] = [];

function hcl(anthropicUrl: string): string {
  return `
schema_version = 1
defaults {
  llm_fail_mode = "closed"
  human_timeout = 30
}
endpoint "postgres" "pg" {
  host   = "127.0.0.1:5432"
  listen = "127.0.0.1:15432"
}
endpoint "https" "anthropic" { hosts = ["api.anthropic.com"] }
endpoint "https" "slack" { hosts = ["slack.com"] }
credential "postgres_credential" "app" {
  endpoint = postgres.pg
  user     = "app"
}
credential "anthropic_manual_key" "judge" { endpoint = https.anthropic }
credential "slack_tokens" "slack" { endpoint = https.slack }
approver "llm_approver" "judge" {
  model      = "claude-e2e"
  credential = anthropic_manual_key.judge
  base_url   = "${anthropicUrl}"
  policy     = <<-EOT
    Deletes of single rows by primary key are fine. Anything broader is not.
  EOT
}
approver "human_approver" "ops" {
  channel    = "#ops"
  credential = slack_tokens.slack
  approvers  = ["U0ALICE"]
}
rule "deletes" {
  endpoint  = postgres.pg
  condition = "sql.verb == 'delete'"
  approve   = [llm_approver.judge, human_approver.ops]
  reason    = "deletes need a second opinion"
}
`;
}

beforeAll(async () => {
  anthropic = await startFakeAnthropic();
  slackApi = await startFakeSlack();
  dir = mkdtempSync(join(tmpdir(), 'clawpatrol-e2e-approvals-'));
  writeFileSync(join(dir, 'policy.hcl'), hcl(anthropic.url));
  const loaded = await loadPolicy(join(dir, 'policy.hcl'));
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.diagnostics, null, 2));
  policy = loaded.policy;
  service = createApprovalService({ policy: () => policy.model, secrets: vault, slackApiUrl: slackApi.apiUrl });
  control = await startControlServer({ listen: '127.0.0.1:0', adminToken: 'e2e-admin', routes: [service.route] });
});

afterAll(async () => {
  await service.close();
  await control.close();
  await anthropic.close();
  await slackApi.close();
  rmSync(dir, { recursive: true, force: true });
});

function enforcer() {
  return createEnforcer({
    policy: () => policy,
    secrets: vault,
    approvals: service.runner,
    audit: { append: (r) => audit.push(r), flush: async () => {}, close: async () => {} },
    redactFacts: (a) => a.facts,
  });
}

/** A Postgres action as the engine would build it for a local listener (no profile: every endpoint in scope). */
function pgAction(statement: string) {
  const { profile: _profile, ...action } = sqlAction(statement);
  return { ...action, endpoint: 'postgres.pg' };
}

async function clickWhenPosted(user: string, index: number): Promise<void> {
  const start = Date.now();
  let call;
  while (!(call = slackApi.byMethod('chat.postMessage')[index])) {
    if (Date.now() - start > 5000) throw new Error('no card posted');
    await new Promise((r) => setTimeout(r, 10));
  }
  const blocks = call.args.blocks as Array<{ type: string; elements?: Array<{ value?: string }> }>;
  const id = blocks.find((b) => b.type === 'actions')!.elements![0]!.value!;
  const req = signedRequest(
    blockActionPayload({ user, channel: String(call.response?.channel), messageTs: String(call.response?.ts), actionId: 'clawpatrol_approve', value: id }),
    SIGNING,
  );
  const res = await fetch(`${control.url}/slack/interactivity`, { method: 'POST', headers: req.headers, body: req.body });
  expect(res.status).toBe(200);
}

describe('policy → enforcer → judge → Slack', () => {
  it('a delete the judge allows waits for Slack, then runs with the credential; every stage is audited', async () => {
    anthropic.reply = () => toolMessage({ verdict: 'allow', reason: 'single row by primary key' });
    const action = pgAction('DELETE FROM users WHERE id = 5');
    const pending = enforcer().enforce(action);
    await clickWhenPosted('U0ALICE', 0);
    const result = await pending;
    expect(result.decision).toMatchObject({ verdict: 'approve', rule: 'deletes', approve: ['llm_approver.judge', 'human_approver.ops'] });
    expect(result.allowed).toBe(true);
    expect(result.material?.slots.password).toBe('e2e-db-password');
    expect(result.approvals.map((s) => [s.approver, s.verdict, s.decidedBy])).toEqual([
      ['llm_approver.judge', 'allow', 'llm:claude-e2e'],
      ['human_approver.ops', 'allow', 'slack:U0ALICE'],
    ]);
    // The judge got the operator policy from the HCL heredoc and the rule's reason.
    expect(anthropic.calls[0]!.body.system).toContain('Deletes of single rows by primary key are fine.');
    expect(anthropic.calls[0]!.body.system).toContain('reason: deletes need a second opinion');
    expect(slackApi.byMethod('chat.postMessage')[0]!.args.channel).toBe('#ops');
    result.finish({ status: 'DELETE 1' });
    expect(audit.at(-1)).toMatchObject({ outcome: 'allow', rule: 'deletes', status: 'DELETE 1' });
    expect(audit.at(-1)!.approvals).toHaveLength(2);
  });

  it('a delete the judge denies never reaches Slack; the agent is told why', async () => {
    anthropic.reply = () => toolMessage({ verdict: 'deny', reason: 'deletes every row' });
    const before = slackApi.byMethod('chat.postMessage').length;
    const result = await enforcer().enforce(pgAction('DELETE FROM users'));
    expect(result.allowed).toBe(false);
    expect(result.material).toBeNull();
    expect(result.reason).toBe('approval denied by llm_approver.judge (llm:claude-e2e): deletes every row');
    expect(result.approvals).toHaveLength(1);
    expect(slackApi.byMethod('chat.postMessage')).toHaveLength(before);
  });
});
