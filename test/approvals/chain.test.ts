/**
 * The chain runner's own rules, with scripted stage drivers (the real
 * drivers — judge, Slack, queue — have their own tests): order, fail modes
 * for misbehaving drivers, coalescing keys, reloads, shutdown.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildActionView } from '../../src/approvals/action-view.js';
import { createChainRunner, type ChainRunner } from '../../src/approvals/chain.js';
import type { StageAnswer, StageDriver, StageQuestion } from '../../src/approvals/stages.js';
import type { PolicyModel } from '../../src/policy/types.js';
import { approveDecision, humanApprover, llmApprover, model, sqlAction } from './support/model.js';

type Script = (q: StageQuestion, signal: AbortSignal) => Promise<StageAnswer> | StageAnswer;

let runners: ChainRunner[] = [];
afterEach(() => {
  for (const r of runners) r.close();
  runners = [];
});

function runnerWith(script: Script, policy: { current: PolicyModel }, view = (a: Parameters<typeof buildActionView>[0], d: Parameters<typeof buildActionView>[1]) => buildActionView(a, d, { scrub: (t) => t })) {
  const asked: StageQuestion[] = [];
  const driver: StageDriver = {
    ask: (q, signal) => {
      asked.push(q);
      return Promise.resolve().then(() => script(q, signal));
    },
  };
  const runner = createChainRunner({ policy: () => policy.current, drivers: { llm: driver, slack: driver, queue: driver }, view });
  runners.push(runner);
  return { runner, asked };
}

const twoHumans = () =>
  model({
    approvers: [
      humanApprover({ id: 'human_approver.a', name: 'a', credential: undefined, timeoutSec: 5 }),
      humanApprover({ id: 'human_approver.b', name: 'b', credential: undefined, timeoutSec: 5 }),
    ],
  });

describe('chain runner', () => {
  it('a rule that names no approver denies', async () => {
    const { runner, asked } = runnerWith(() => ({ verdict: 'allow', reason: '', decidedBy: 'cli:x' }), { current: twoHumans() });
    const out = await runner.run(sqlAction('DELETE FROM t'), approveDecision([]));
    expect(out).toEqual({ verdict: 'deny', reason: 'rule "risky-writes" asks for approval but names no approver', stages: [] });
    expect(asked).toHaveLength(0);
  });

  it('runs stages in order and stops at the first deny', async () => {
    const { runner, asked } = runnerWith(
      (q) => (q.plan.approverId === 'human_approver.a' ? { verdict: 'deny', reason: 'no', decidedBy: 'cli:a' } : { verdict: 'allow', reason: '', decidedBy: 'cli:b' }),
      { current: twoHumans() },
    );
    const out = await runner.run(sqlAction('DELETE FROM t'), approveDecision(['human_approver.a', 'human_approver.b']));
    expect(out.verdict).toBe('deny');
    expect(asked.map((q) => q.plan.approverId)).toEqual(['human_approver.a']);
    expect(out.stages.map((s) => s.approver)).toEqual(['human_approver.a']);
  });

  it('all stages allowing allows, naming who approved', async () => {
    const { runner } = runnerWith((q) => ({ verdict: 'allow', reason: 'ok', decidedBy: `cli:${q.plan.approver.name}` }), { current: twoHumans() });
    const out = await runner.run(sqlAction('DELETE FROM t'), approveDecision(['human_approver.a', 'human_approver.b']));
    expect(out).toMatchObject({ verdict: 'allow', reason: 'approved by human_approver.a (cli:a), human_approver.b (cli:b)' });
  });

  it('a driver that ignores the abort still yields the timeout verdict on time', async () => {
    const policy = { current: model({ approvers: [humanApprover({ id: 'human_approver.a', credential: undefined, timeoutSec: 1, onTimeout: 'allow' })] }) };
    const { runner } = runnerWith(() => new Promise<StageAnswer>(() => {}), policy);
    const started = Date.now();
    const out = await runner.run(sqlAction('DELETE FROM t'), approveDecision(['human_approver.a']));
    expect(Date.now() - started).toBeLessThan(3000);
    expect(out.stages[0]).toMatchObject({ verdict: 'allow', decidedBy: 'timeout', failMode: true });
  });

  it('garbage answers and thrown errors follow the fail mode; a failing view builder denies', async () => {
    const policy = { current: model({ approvers: [llmApprover({ id: 'llm_approver.j' })], defaults: { llmFailMode: 'open' } }) };
    const garbage = runnerWith(() => ({ verdict: 'yes' as never, reason: '', decidedBy: 'llm:x' }), policy);
    expect((await garbage.runner.run(sqlAction('x'), approveDecision(['llm_approver.j']))).stages[0]).toMatchObject({
      verdict: 'allow',
      decidedBy: 'error',
      failMode: true,
    });
    const throwing = runnerWith(() => {
      throw new Error('boom');
    }, policy);
    expect((await throwing.runner.run(sqlAction('x'), approveDecision(['llm_approver.j']))).stages[0]).toMatchObject({
      verdict: 'allow',
      reason: 'llm_approver.j failed: boom; llm_fail_mode = open',
    });
    const badView = runnerWith(() => ({ verdict: 'allow', reason: '', decidedBy: 'llm:x' }), policy, () => {
      throw new Error('view bug');
    });
    expect(await badView.runner.run(sqlAction('x'), approveDecision(['llm_approver.j']))).toEqual({
      verdict: 'deny',
      reason: 'the approval chain failed; denied (fail closed)',
      stages: [],
    });
  });

  it('reasons are scrubbed, flattened and bounded', async () => {
    const policy = { current: twoHumans() };
    const driver: StageDriver = { ask: async () => ({ verdict: 'deny', reason: `leak SECRET-VALUE\n\u001b[31m${'x'.repeat(2000)}`, decidedBy: 'cli:a' }) };
    const runner = createChainRunner({
      policy: () => policy.current,
      drivers: { llm: driver, slack: driver, queue: driver },
      view: (a, d) => buildActionView(a, d, { scrub: (t) => t }),
      scrub: (t) => t.split('SECRET-VALUE').join('************'),
    });
    runners.push(runner);
    const out = await runner.run(sqlAction('x'), approveDecision(['human_approver.a']));
    expect(out.stages[0]!.reason).not.toContain('SECRET-VALUE');
    expect(out.stages[0]!.reason).not.toMatch(/[\n\u001b]/);
    expect(out.stages[0]!.reason.length).toBeLessThanOrEqual(500);
  });

  it('coalesces only identical subjects: another agent or other facts ask again', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { runner, asked } = runnerWith(async () => {
      await gate;
      return { verdict: 'allow', reason: '', decidedBy: 'cli:a' };
    }, { current: twoHumans() });
    const d = approveDecision(['human_approver.a']);
    const runs = [
      runner.run(sqlAction('DELETE FROM t'), d),
      runner.run(sqlAction('DELETE FROM t'), d),
      runner.run(sqlAction('DELETE FROM t', { peer: { id: 'peer-2' } }), d),
      runner.run(sqlAction('DELETE FROM t '), d),
      runner.run(sqlAction('DELETE FROM t'), { ...d, credential: 'postgres_credential.other' }),
    ];
    await new Promise((r) => setTimeout(r, 20));
    expect(asked).toHaveLength(4);
    expect(runner.pendingCount()).toBe(4);
    release();
    await Promise.all(runs);
    expect(runner.pendingCount()).toBe(0);
  });

  it('a reload applies to the next stage: changed settings are a different question', async () => {
    const policy = { current: twoHumans() };
    const seen: number[] = [];
    const { runner } = runnerWith((q) => {
      seen.push(q.plan.timeoutMs);
      return { verdict: 'allow', reason: '', decidedBy: 'cli:a' };
    }, policy);
    await runner.run(sqlAction('x'), approveDecision(['human_approver.a']));
    policy.current = model({ approvers: [humanApprover({ id: 'human_approver.a', credential: undefined, timeoutSec: 42 })] });
    await runner.run(sqlAction('x'), approveDecision(['human_approver.a']));
    expect(seen).toEqual([5000, 42_000]);
  });

  it('close() withdraws every pending question', async () => {
    const aborted: string[] = [];
    const { runner } = runnerWith(
      (_q, signal) =>
        new Promise<StageAnswer>((_resolve, reject) =>
          signal.addEventListener('abort', () => {
            aborted.push(String((signal.reason as Error).message));
            reject(signal.reason);
          }),
        ),
      { current: twoHumans() },
    );
    const run = runner.run(sqlAction('x'), approveDecision(['human_approver.a']));
    await new Promise((r) => setTimeout(r, 20));
    runner.close();
    const out = await run;
    expect(out.stages[0]).toMatchObject({ verdict: 'deny', decidedBy: 'withdrawn' });
    expect(aborted).toEqual(['the agent withdrew the request']);
  });
});
