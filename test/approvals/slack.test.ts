/**
 * Slack approvals through real Bolt: cards go to a fake Slack Web API, clicks
 * come back as signed interactivity requests to the real control server.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ApprovalOutcome } from '../../src/gateway/contracts.js';
import type { HumanApprover, PolicyModel } from '../../src/policy/types.js';
import { blockActionPayload, signedRequest, startFakeSlack, type FakeSlack, type SlackCall } from './support/fake-slack.js';
import { approveDecision, humanApprover, model, secrets, sqlAction } from './support/model.js';
import { useApprovalServices, type ServiceSetup as Setup } from './support/service.js';

const BOT = 'xoxb-1234-bot-token-secret';
const SIGNING = 'slack-signing-secret-0123456789';
const DB_PASSWORD = 'db-pass-QQ9-never-show';
const ADMIN = 'admin-token-for-tests';
const vault = secrets({
  'slack_tokens.slack': { bot: BOT, signing_secret: SIGNING },
  'postgres_credential.app': { password: DB_PASSWORD },
});

let slackApi: FakeSlack;
beforeAll(async () => {
  slackApi = await startFakeSlack();
});
afterAll(() => slackApi.close());

const startService = useApprovalServices();
afterEach(() => {
  slackApi.calls.length = 0;
  slackApi.failures.clear();
});

async function setup(approver: Partial<HumanApprover> = {}, defaults: Partial<PolicyModel['defaults']> = {}): Promise<Setup> {
  return startService(model({ approvers: [humanApprover(approver)], defaults }), ADMIN, { secrets: vault, slackApiUrl: slackApi.apiUrl });
}

const opsOnly = approveDecision(['human_approver.ops']);

async function waitFor<T>(probe: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The card most recently posted, and the queue id its buttons carry. */
async function postedCard(index = 0): Promise<{ call: SlackCall; id: string; ts: string; channel: string }> {
  const call = await waitFor(() => slackApi.byMethod('chat.postMessage')[index]);
  const actions = (call.args.blocks as Array<{ type: string; elements?: Array<{ value?: string }> }>).find((b) => b.type === 'actions');
  const id = actions?.elements?.[0]?.value ?? '';
  const ts = String(call.response?.ts);
  return { call, id, ts, channel: 'C0OPS' };
}

/** Updates of one card (earlier tests' late updates carry other timestamps). */
function updates(card: { ts: string }): SlackCall[] {
  return slackApi.byMethod('chat.update').filter((c) => c.args.ts === card.ts);
}

async function click(
  s: Setup,
  opts: { user: string; id: string; ts: string; action?: 'approve' | 'deny'; secret?: string; timestamp?: number },
): Promise<Response> {
  const payload = blockActionPayload({
    user: opts.user,
    channel: 'C0OPS',
    messageTs: opts.ts,
    actionId: opts.action === 'deny' ? 'clawpatrol_deny' : 'clawpatrol_approve',
    value: opts.id,
  });
  const req = signedRequest(payload, opts.secret ?? SIGNING, opts.timestamp);
  return fetch(`${s.control.url}/slack/interactivity`, { method: 'POST', headers: req.headers, body: req.body });
}

function mrkdwnTexts(blocks: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (o.type === 'mrkdwn' && typeof o.text === 'string') out.push(o.text);
      Object.values(o).forEach(walk);
    }
  };
  walk(blocks);
  return out;
}

describe('Slack approval cards', () => {
  it('posts a Block Kit card to the configured channel; a signed Approve click allows and updates the card', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DELETE FROM users WHERE id = 42'), opsOnly);
    const card = await postedCard();

    expect(card.call.token).toBe(BOT);
    expect(card.call.args.channel).toBe('C0OPS');
    expect(card.call.args.thread_ts).toBeUndefined();
    const blocks = card.call.args.blocks as Array<Record<string, any>>;
    expect(blocks[0]).toEqual({ type: 'header', text: { type: 'plain_text', text: 'Approval needed: SQL DELETE', emoji: false } });
    const fields = blocks[1]!.fields.map((f: { text: string }) => f.text);
    expect(fields).toEqual([
      '*Rule*\nrisky-writes',
      '*Agent*\nagent-laptop (peer-1), profile default',
      '*Endpoint*\npostgres.pg',
      '*Credential*\npostgres_credential.app',
    ]);
    expect(blocks[2]).toEqual({ type: 'section', text: { type: 'mrkdwn', text: '*Why*\nwrites to production need approval' } });
    expect(blocks[3]).toEqual({
      type: 'rich_text',
      elements: [{ type: 'rich_text_preformatted', elements: [{ type: 'text', text: 'DELETE FROM users WHERE id = 42' }] }],
    });
    const actions = blocks.find((b) => b.type === 'actions')!;
    expect(actions.elements.map((e: any) => [e.action_id, e.text.text, e.value])).toEqual([
      ['clawpatrol_approve', 'Approve', card.id],
      ['clawpatrol_deny', 'Deny', card.id],
    ]);
    expect(s.service.queue.get(card.id)).toMatchObject({ channel: 'slack', approver: 'human_approver.ops' });

    const res = await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts });
    expect(res.status).toBe(200);
    const out = await run;
    expect(out.verdict).toBe('allow');
    expect(out.stages).toEqual([
      expect.objectContaining({ approver: 'human_approver.ops', verdict: 'allow', decidedBy: 'slack:U0ALICE' }),
    ]);
    const update = await waitFor(() => updates(card)[0]);
    expect(update.args).toMatchObject({ channel: 'C0OPS', ts: card.ts });
    const updated = update.args.blocks as Array<Record<string, any>>;
    expect(updated.some((b) => b.type === 'actions')).toBe(false);
    expect(updated.find((b) => b.block_id === 'clawpatrol_outcome')!.text.text).toBe(
      ':white_check_mark: Approved by <@U0ALICE>',
    );
    expect(s.service.queue.list()).toEqual([]);
  });

  it('a signed Deny click denies with who decided', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DROP TABLE users'), opsOnly);
    const card = await postedCard();
    await click(s, { user: 'U0BOB', id: card.id, ts: card.ts, action: 'deny' });
    const out = await run;
    expect(out.verdict).toBe('deny');
    expect(out.reason).toBe('approval denied by human_approver.ops (slack:U0BOB): denied by slack:U0BOB');
    const update = await waitFor(() => updates(card)[0]);
    expect(JSON.stringify(update.args.blocks)).toContain(':no_entry: Denied by <@U0BOB>');
  });

  it('rejects a wrong signature, a stale or future timestamp and missing headers with 401, and decides nothing', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('TRUNCATE audit'), opsOnly);
    const card = await postedCard();
    const now = Math.floor(Date.now() / 1000);

    expect((await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts, secret: 'not-the-secret' })).status).toBe(401);
    expect((await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts, timestamp: now - 301 })).status).toBe(401);
    expect((await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts, timestamp: now + 301 })).status).toBe(401);
    const bare = await fetch(`${s.control.url}/slack/interactivity`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `payload=${encodeURIComponent(JSON.stringify(blockActionPayload({ user: 'U0ALICE', channel: 'C0OPS', messageTs: card.ts, actionId: 'clawpatrol_approve', value: card.id })))}`,
    });
    expect(bare.status).toBe(401);
    // A body altered after signing.
    const signed = signedRequest(
      blockActionPayload({ user: 'U0MALLORY', channel: 'C0OPS', messageTs: card.ts, actionId: 'clawpatrol_deny', value: card.id }),
      SIGNING,
    );
    const tampered = signed.body.replace('U0MALLORY', 'U0ALICEXX');
    expect((await fetch(`${s.control.url}/slack/interactivity`, { method: 'POST', headers: signed.headers, body: tampered })).status).toBe(401);

    expect(s.service.queue.get(card.id)).toBeDefined();
    expect(updates(card)).toHaveLength(0);
    // The real click still works afterwards.
    await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts, timestamp: now - 200 });
    expect((await run).verdict).toBe('allow');
  });

  it('a user not listed in approvers gets an ephemeral refusal and cannot decide', async () => {
    const s = await setup({ approvers: ['U0ALICE', 'U0BOB'] });
    const run = s.service.runner.run(sqlAction('DELETE FROM orders'), opsOnly);
    const card = await postedCard();
    const res = await click(s, { user: 'U0EVE', id: card.id, ts: card.ts });
    expect(res.status).toBe(200);
    const ephemeral = await waitFor(() => slackApi.byMethod('chat.postEphemeral')[0]);
    expect(ephemeral.args).toMatchObject({ channel: 'C0OPS', user: 'U0EVE', text: 'You are not one of the approvers of this request.' });
    expect(s.service.queue.get(card.id)?.approvals).toEqual([]);
    // Deny is refused the same way.
    await click(s, { user: 'U0EVE', id: card.id, ts: card.ts, action: 'deny' });
    await waitFor(() => slackApi.byMethod('chat.postEphemeral')[1]);
    expect(s.service.queue.get(card.id)).toBeDefined();

    await click(s, { user: 'U0BOB', id: card.id, ts: card.ts });
    const out = await run;
    expect(out.stages[0]).toMatchObject({ verdict: 'allow', decidedBy: 'slack:U0BOB' });
  });

  it('require_approvers = 2 needs two distinct users; the card shows progress', async () => {
    const s = await setup({ requireApprovers: 2 });
    const run = s.service.runner.run(sqlAction('ALTER TABLE users DROP COLUMN email'), opsOnly);
    const card = await postedCard();
    expect(JSON.stringify(card.call.args.blocks)).toContain('0 of 2 approvals');

    await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts });
    const progress = await waitFor(() => updates(card)[0]);
    expect(JSON.stringify(progress.args.blocks)).toContain('1 of 2 approvals: <@U0ALICE>');
    expect(s.service.queue.get(card.id)?.approvals).toEqual(['slack:U0ALICE']);

    // The same user again does not count.
    await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts });
    const dup = await waitFor(() => slackApi.byMethod('chat.postEphemeral')[0]);
    expect(dup.args.text).toBe('slack:U0ALICE has already approved ' + card.id);
    expect(s.service.queue.get(card.id)).toBeDefined();

    await click(s, { user: 'U0BOB', id: card.id, ts: card.ts });
    const out = await run;
    expect(out.verdict).toBe('allow');
    expect(out.stages[0]!.decidedBy).toBe('slack:U0ALICE,slack:U0BOB');
    const final = await waitFor(() => updates(card)[1]);
    expect(JSON.stringify(final.args.blocks)).toContain('Approved by <@U0ALICE>, <@U0BOB>');
  });

  it('a timeout yields on_timeout (deny, then allow) and the card says so', async () => {
    const s = await setup({ timeoutSec: 1, onTimeout: 'deny' });
    const run = s.service.runner.run(sqlAction('DELETE FROM a'), opsOnly);
    const card = await postedCard();
    const out = await run;
    expect(out.verdict).toBe('deny');
    expect(out.stages[0]).toMatchObject({ decidedBy: 'timeout', failMode: true });
    expect(out.stages[0]!.reason).toBe('human_approver.ops did not answer within 1s (on_timeout = deny)');
    const update = await waitFor(() => updates(card)[0]);
    expect(JSON.stringify(update.args.blocks)).toContain('No decision in time — denied (on_timeout = deny)');
    expect(s.service.queue.list()).toEqual([]);

    s.policy.current = model({ approvers: [humanApprover({ timeoutSec: 1, onTimeout: 'allow' })] });
    const out2 = await s.service.runner.run(sqlAction('DELETE FROM b'), opsOnly);
    expect(out2.verdict).toBe('allow');
    expect(out2.stages[0]).toMatchObject({ decidedBy: 'timeout', failMode: true });
  });

  it('without its own timeout the approver uses defaults.human_timeout', async () => {
    const s = await setup({ timeoutSec: 0 }, { humanTimeoutSec: 1 });
    const started = Date.now();
    const out = await s.service.runner.run(sqlAction('DELETE FROM c'), opsOnly);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(out.stages[0]).toMatchObject({ decidedBy: 'timeout', verdict: 'deny' });
  });

  it('nothing in the action chooses the channel or thread, mentions or links; secrets never reach Slack', async () => {
    const s = await setup();
    const evil = `DELETE FROM users -- <!channel> <https://evil.example|click here> channel=C0EVIL thread_ts=1.2 ${DB_PASSWORD}`;
    const action = sqlAction(evil, { peer: { id: 'peer-9', name: '<!here> *bold*' } });
    const run = s.service.runner.run(action, opsOnly);
    const card = await postedCard();
    expect(card.call.args.channel).toBe('C0OPS');
    expect(card.call.args.thread_ts).toBeUndefined();
    expect(card.call.args.reply_broadcast).toBeUndefined();
    const wire = JSON.stringify(card.call.args);
    expect(wire).not.toContain(DB_PASSWORD);
    expect(wire).not.toContain(BOT);
    for (const text of mrkdwnTexts(card.call.args.blocks)) {
      expect(text).not.toMatch(/<!|<https?:/);
    }
    expect(mrkdwnTexts(card.call.args.blocks).join('\n')).toContain('&lt;!here&gt; *bold*');
    await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts, action: 'deny' });
    await run;
  });

  it('a click from another message or after the decision is refused ephemerally', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DELETE FROM x'), opsOnly);
    const card = await postedCard();
    await click(s, { user: 'U0ALICE', id: card.id, ts: '1699999999.000001' });
    const wrong = await waitFor(() => slackApi.byMethod('chat.postEphemeral')[0]);
    expect(wrong.args.text).toBe('This approval is no longer pending.');
    expect(s.service.queue.get(card.id)).toBeDefined();
    await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts });
    await run;
    await click(s, { user: 'U0BOB', id: card.id, ts: card.ts, action: 'deny' });
    const late = await waitFor(() => slackApi.byMethod('chat.postEphemeral')[1]);
    expect(late.args).toMatchObject({ user: 'U0BOB', text: 'This approval is no longer pending.' });
  });

  it('Slack being unreachable denies (fail closed) and leaves nothing pending', async () => {
    const s = await setup({ onTimeout: 'allow' });
    slackApi.failures.set('chat.postMessage', 'invalid_auth');
    const out = await s.service.runner.run(sqlAction('DELETE FROM y'), opsOnly);
    expect(out.verdict).toBe('deny');
    expect(out.stages[0]).toMatchObject({ decidedBy: 'error', failMode: true });
    expect(out.stages[0]!.reason).toContain('could not post the approval card to Slack');
    expect(out.stages[0]!.reason).toContain('invalid_auth');
    expect(s.service.queue.list()).toEqual([]);
  });

  it('when the agent hangs up the card is withdrawn', async () => {
    const s = await setup();
    const hangUp = new AbortController();
    const run = s.service.runner.run(sqlAction('DELETE FROM z'), opsOnly, hangUp.signal);
    const card = await postedCard();
    hangUp.abort();
    const out = await run;
    expect(out.stages[0]).toMatchObject({ decidedBy: 'withdrawn', verdict: 'deny' });
    const update = await waitFor(() => updates(card)[0]);
    expect(JSON.stringify(update.args.blocks)).toContain('Withdrawn — the agent stopped waiting');
    expect(s.service.queue.get(card.id)).toBeUndefined();
  });

  it('identical concurrent actions post one card and all get the answer', async () => {
    const s = await setup();
    const runs: Array<Promise<ApprovalOutcome>> = [1, 2, 3].map(() => s.service.runner.run(sqlAction('DELETE FROM dup'), opsOnly));
    const card = await postedCard();
    await new Promise((r) => setTimeout(r, 50));
    expect(slackApi.byMethod('chat.postMessage')).toHaveLength(1);
    await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts });
    for (const out of await Promise.all(runs)) expect(out.stages[0]).toMatchObject({ verdict: 'allow', decidedBy: 'slack:U0ALICE' });
  });

  it('interactive = false posts a card without buttons and waits in the queue for the CLI', async () => {
    const s = await setup({ interactive: false });
    const run = s.service.runner.run(sqlAction('DELETE FROM quiet'), opsOnly);
    const call = await waitFor(() => slackApi.byMethod('chat.postMessage')[0]);
    const blocks = call.args.blocks as Array<Record<string, any>>;
    expect(blocks.some((b) => b.type === 'actions')).toBe(false);
    const [entry] = s.service.queue.list();
    expect(entry).toMatchObject({ channel: 'queue', approver: 'human_approver.ops' });
    expect(JSON.stringify(blocks)).toContain(`decide with: clawpatrol approvals approve|deny ${entry!.id}`);
    const res = await fetch(`${s.control.url}/api/approvals/${entry!.id}/approve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'oncall' }),
    });
    expect(res.status).toBe(200);
    expect((await run).stages[0]).toMatchObject({ verdict: 'allow', decidedBy: 'cli:oncall' });
    const card = { ts: String(call.response?.ts) };
    const update = await waitFor(() => updates(card)[0]);
    expect(JSON.stringify(update.args.blocks)).toContain('Approved by cli:oncall');
  });

  it('the admin API can deny a Slack approval but not approve it', async () => {
    const s = await setup();
    const run = s.service.runner.run(sqlAction('DELETE FROM w'), opsOnly);
    const card = await postedCard();
    const approve = await fetch(`${s.control.url}/api/approvals/${card.id}/approve`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'root' }),
    });
    expect(approve.status).toBe(403);
    const deny = await fetch(`${s.control.url}/api/approvals/${card.id}/deny`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'root', reason: 'change freeze' }),
    });
    expect(deny.status).toBe(200);
    const out = await run;
    expect(out.stages[0]).toMatchObject({ verdict: 'deny', decidedBy: 'cli:root', reason: 'change freeze' });
    const update = await waitFor(() => updates(card)[0]);
    expect(JSON.stringify(update.args.blocks)).toContain('Denied by cli:root — change freeze');
  });
});

describe('Slack Socket Mode (credential with an app-level token)', () => {
  const socketVault = secrets({ 'slack_tokens.slack': { bot: BOT, app: 'xapp-1-socket-token' } });

  async function socketSetup(approver: Partial<HumanApprover> = {}, vault = socketVault): Promise<Setup> {
    return startService(model({ approvers: [humanApprover(approver)] }), ADMIN, { secrets: vault, slackApiUrl: slackApi.apiUrl });
  }

  it('connects over WebSocket, posts the card, and a click delivered over the socket approves', async () => {
    const s = await socketSetup({ approvers: ['U0ALICE'] });
    // An unauthenticated request opens no connection to Slack.
    expect((await click(s, { user: 'U0X', id: 'x', ts: '1.2', secret: 'guess' })).status).toBe(401);
    expect(slackApi.byMethod('apps.connections.open')).toHaveLength(0);
    const run = s.service.runner.run(sqlAction('DELETE FROM sock'), opsOnly);
    const card = await postedCard();
    expect(slackApi.byMethod('apps.connections.open')[0]!.token).toBe('xapp-1-socket-token');
    expect(slackApi.sockets).toHaveLength(1);

    // Not listed: refused, over the socket as well.
    const refusedAck = await slackApi.sendInteractive(
      blockActionPayload({ user: 'U0EVE', channel: 'C0OPS', messageTs: card.ts, actionId: 'clawpatrol_approve', value: card.id }),
    );
    expect(refusedAck).toHaveProperty('envelope_id');
    const ephemeral = await waitFor(() => slackApi.byMethod('chat.postEphemeral').find((c) => c.args.user === 'U0EVE'));
    expect(ephemeral.args.text).toBe('You are not one of the approvers of this request.');

    // The HTTP endpoint does not accept clicks for a Socket Mode credential.
    const viaHttp = await click(s, { user: 'U0ALICE', id: card.id, ts: card.ts });
    expect(viaHttp.status).toBe(401);
    expect(s.service.queue.get(card.id)).toBeDefined();

    await slackApi.sendInteractive(
      blockActionPayload({ user: 'U0ALICE', channel: 'C0OPS', messageTs: card.ts, actionId: 'clawpatrol_approve', value: card.id }),
    );
    const out = await run;
    expect(out.stages[0]).toMatchObject({ verdict: 'allow', decidedBy: 'slack:U0ALICE' });
    await waitFor(() => updates(card)[0]);

    await s.service.close();
    await waitFor(() => slackApi.sockets.length === 0);
  });

  it('when Socket Mode cannot connect, the stage fails closed and no card is posted', async () => {
    const badVault = secrets({ 'slack_tokens.slack': { bot: BOT, app: 'not-an-app-token' } });
    const s = await socketSetup({ onTimeout: 'allow' }, badVault);
    const out = await s.service.runner.run(sqlAction('DELETE FROM nosock'), opsOnly);
    expect(out.verdict).toBe('deny');
    expect(out.stages[0]).toMatchObject({ decidedBy: 'error', failMode: true });
    expect(slackApi.byMethod('chat.postMessage')).toHaveLength(0);
  });

  it('a credential with neither signing secret nor app token is an error, not an unverifiable card', async () => {
    const s = await socketSetup({}, secrets({ 'slack_tokens.slack': { bot: BOT } }));
    const out = await s.service.runner.run(sqlAction('DELETE FROM nothing'), opsOnly);
    expect(out.verdict).toBe('deny');
    expect(out.stages[0]!.reason).toContain('has no signing_secret (HTTP interactivity) or app token (Socket Mode)');
    expect(slackApi.byMethod('chat.postMessage')).toHaveLength(0);
  });
});
