import { describe, it, expect } from 'vitest';
import { createEnforcer, type DecidingPolicy } from '../../src/gateway/enforcer.js';
import type { Action, Decision } from '../../src/policy/types.js';
import type { ApprovalRunner, AuditRecordInput, AuditSink, SecretResolver } from '../../src/gateway/contracts.js';

const action: Action = {
  family: 'http',
  host: 'api.github.com',
  profile: 'dev',
  peer: { id: 'dev-1' },
  facts: {
    http: { method: 'GET', path: '/x', raw_path: '/x', host: 'api.github.com', query: {}, headers: {}, body: '', body_json: {} },
  },
};

function decision(over: Partial<Decision>): Decision {
  return {
    verdict: 'allow', effective: 'allow', mode: 'enforce', rule: 'r', endpoint: 'https.github',
    credential: 'bearer_token.github', reason: '', approve: [], failClosed: false, passthrough: false, ...over,
  };
}

function harness(d: Decision | (() => Decision), opts: { secret?: boolean; approval?: 'allow' | 'deny'; auditUnavailable?: () => string | null } = {}) {
  const records: AuditRecordInput[] = [];
  const audit: AuditSink = {
    append: (r) => void records.push(r),
    flush: async () => {},
    close: async () => {},
    ...(opts.auditUnavailable ? { unavailable: opts.auditUnavailable } : {}),
  };
  const secrets: SecretResolver = {
    resolve: (id) =>
      opts.secret === false
        ? { missing: `credential ${id} has no secret` }
        : { credential: { id, type: 'bearer_token', name: 'github', endpoints: [], slots: ['token'], pos: { file: 'x', line: 1, col: 1 } }, slots: { token: 's3cret' } },
    allValues: () => ['s3cret'],
  };
  const calls: Decision[] = [];
  const approvals: ApprovalRunner = {
    run: async (_a, dec) => {
      calls.push(dec);
      const v = opts.approval ?? 'allow';
      return { verdict: v, reason: `human said ${v}`, stages: [{ approver: 'human_approver.ops', verdict: v, reason: 'ok', decidedBy: 'slack:U1', durationMs: 5 }] };
    },
  };
  const policy: DecidingPolicy = { decide: () => (typeof d === 'function' ? d() : d) };
  const enforcer = createEnforcer({ policy: () => policy, secrets, approvals, audit, redactFacts: (a) => a.facts });
  return { enforcer, records, calls };
}

describe('enforcer', () => {
  it('allows, hands out the secret, and audits once with bytes and status', async () => {
    const h = harness(decision({}));
    const e = await h.enforcer.enforce(action);
    expect(e.allowed).toBe(true);
    expect(e.material?.slots.token).toBe('s3cret');
    e.finish({ bytesIn: 10, bytesOut: 20, status: '200' });
    e.finish({ bytesIn: 99 });
    expect(h.records).toHaveLength(1);
    expect(h.records[0]).toMatchObject({ outcome: 'allow', verdict: 'allow', bytesIn: 10, bytesOut: 20, status: '200', peer: 'dev-1', profile: 'dev' });
  });

  it('denies with the rule reason and hands out no secret', async () => {
    const h = harness(decision({ verdict: 'deny', effective: 'deny', reason: 'writes need a PR' }));
    const e = await h.enforcer.enforce(action);
    expect(e).toMatchObject({ allowed: false, reason: 'writes need a PR', material: null });
  });

  it('runs the approval chain and follows its verdict', async () => {
    const approve = decision({ verdict: 'approve', effective: 'approve', approve: ['human_approver.ops'] });
    const yes = await harness(approve, { approval: 'allow' }).enforcer.enforce(action);
    expect(yes.allowed).toBe(true);
    expect(yes.approvals[0]?.decidedBy).toBe('slack:U1');
    const h = harness(approve, { approval: 'deny' });
    const no = await h.enforcer.enforce(action);
    expect(no).toMatchObject({ allowed: false, reason: 'human said deny', material: null });
    expect(h.calls).toHaveLength(1);
  });

  it('denies an allowed action whose credential has no secret (never unauthenticated upstream)', async () => {
    const h = harness(decision({}), { secret: false });
    const e = await h.enforcer.enforce(action);
    expect(e.allowed).toBe(false);
    expect(e.reason).toBe('credential bearer_token.github has no secret');
    e.finish();
    expect(h.records[0]).toMatchObject({ outcome: 'deny', failClosed: true });
  });

  it('denies every action, fail-closed, while the audit log cannot record — observe mode and approvals included', async () => {
    const full = () => 'the audit log cannot record actions: 200000 records are waiting to be written (disk I/O error)';
    for (const d of [decision({}), decision({ verdict: 'deny', effective: 'allow', mode: 'observe' })]) {
      const h = harness(d, { auditUnavailable: full });
      const now = h.enforcer.enforceNow!(action)!;
      expect(now).toMatchObject({ allowed: false, reason: full(), material: null });
      const e = await h.enforcer.enforce(action);
      expect(e).toMatchObject({ allowed: false, reason: full(), material: null });
      e.finish();
      expect(h.records[0]).toMatchObject({ outcome: 'deny', failClosed: true, reason: full() });
    }
    // Nobody is asked to approve what could not be recorded; a backlog that fills during an approval denies too.
    const approve = decision({ verdict: 'approve', effective: 'approve', approve: ['human_approver.ops'] });
    const asked = harness(approve, { auditUnavailable: full });
    expect(await asked.enforcer.enforce(action)).toMatchObject({ allowed: false, reason: full() });
    expect(asked.calls).toHaveLength(0);
    let fills: string | null = null;
    const during = harness(approve, { auditUnavailable: () => fills });
    const pending = during.enforcer.enforce(action);
    fills = full();
    expect(await pending).toMatchObject({ allowed: false, reason: full() });
    expect(during.calls).toHaveLength(1);
    // And it recovers: once the log takes records, actions are decided as usual.
    expect(harness(decision({}), { auditUnavailable: () => null }).enforcer.enforceNow!(action)).toMatchObject({ allowed: true });
  });

  it('observe mode forwards what the policy would deny, and records the would-be verdict', async () => {
    const h = harness(decision({ verdict: 'deny', effective: 'allow', mode: 'observe', reason: 'no' }));
    const e = await h.enforcer.enforce(action);
    expect(e.allowed).toBe(true);
    e.finish();
    expect(h.records[0]).toMatchObject({ verdict: 'deny', outcome: 'allow', mode: 'observe' });
    expect(h.calls).toHaveLength(0);
  });

  it('turns a throwing policy into a fail-closed deny', async () => {
    const h = harness(() => {
      throw new Error('boom');
    });
    const e = await h.enforcer.enforce(action);
    expect(e.allowed).toBe(false);
    expect(e.decision.failClosed).toBe(true);
    expect(e.reason).toMatch(/policy evaluation failed: boom/);
  });
});
