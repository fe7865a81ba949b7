/**
 * The approver chain runner — `ApprovalRunner` for the Enforcer.
 *
 * A rule's `approve = [a, b, c]` runs in order; every stage must allow and
 * the first deny stops the chain. A stage that times out yields its
 * `onTimeout`, one that fails yields its `onError` (see stages.ts). `run`
 * never rejects: whatever goes wrong becomes a recorded, fail-mode verdict.
 *
 * Identical questions are asked once: while a stage for (approver, subject)
 * is pending, further identical actions wait on the same question and all
 * receive its answer. A waiter whose agent hangs up detaches; when the last
 * one has gone the question is withdrawn (card updated, queue entry removed).
 */
import type { Action, Decision, PolicyModel } from '../policy/types.js';
import type { ApprovalOutcome, ApprovalRunner, ApprovalStage } from '../gateway/contracts.js';
import type { ActionView } from './action-view.js';
import { subjectFingerprint } from './canonical.js';
import {
  StageAbort,
  abortKind,
  planStage,
  type StageAnswer,
  type StageDriver,
  type StageKind,
  type StagePlan,
} from './stages.js';

export interface ChainRunnerOptions {
  /** The policy in force now (hot reload: read once per stage). */
  policy: () => PolicyModel;
  drivers: Record<StageKind, StageDriver>;
  /** Builds the redacted, scrubbed view approvers are shown. */
  view: (action: Action, decision: Decision) => ActionView;
  /** Removes vault values from reasons (they reach the agent and the audit log). */
  scrub?: (text: string) => string;
  now?: () => number;
  log?: (line: string) => void;
}

/** Longest reason recorded for one stage; model and error texts are not trusted to be short. */
const MAX_REASON = 500;

interface StageResult extends StageAnswer {
  failMode: boolean;
}

interface SharedStage {
  result: Promise<StageResult>;
  controller: AbortController;
  waiters: number;
}

export interface ChainRunner extends ApprovalRunner {
  /** Questions currently being asked (after coalescing). */
  pendingCount(): number;
  /** Withdraw every pending question (gateway shutdown). */
  close(): void;
}

export function createChainRunner(opts: ChainRunnerOptions): ChainRunner {
  const now = opts.now ?? Date.now;
  const log = opts.log ?? (() => {});
  const scrub = opts.scrub ?? ((text: string) => text);
  const inflight = new Map<string, SharedStage>();

  async function run(action: Action, decision: Decision, signal?: AbortSignal): Promise<ApprovalOutcome> {
    const stages: ApprovalStage[] = [];
    try {
      if (decision.approve.length === 0) {
        return { verdict: 'deny', reason: `rule "${decision.rule}" asks for approval but names no approver`, stages };
      }
      let view: ActionView | undefined;
      let subject: string | undefined;
      for (const approverId of decision.approve) {
        const started = now();
        let result: StageResult;
        const plan = planStage(opts.policy(), approverId);
        if ('error' in plan) {
          result = { verdict: 'deny', reason: plan.error, decidedBy: 'error', failMode: true };
        } else {
          view ??= opts.view(action, decision);
          subject ??= subjectFingerprint(action, decision);
          result = await askShared(plan, action, decision, view, subject, signal);
        }
        result = { ...result, reason: cleanReason(scrub(result.reason)) };
        stages.push({
          approver: approverId,
          verdict: result.verdict,
          reason: result.reason,
          decidedBy: result.decidedBy,
          ...(result.failMode ? { failMode: true } : {}),
          durationMs: Math.max(0, now() - started),
        });
        if (result.verdict === 'deny') {
          return { verdict: 'deny', reason: denyReason(approverId, result), stages };
        }
      }
      return {
        verdict: 'allow',
        reason: `approved by ${stages.map((s) => `${s.approver} (${s.decidedBy})`).join(', ')}`,
        stages,
      };
    } catch (err) {
      // A bug in a driver must not crash the gateway or let the action through.
      log(`approvals: chain for rule "${decision.rule}" failed: ${err instanceof Error ? err.stack : String(err)}`);
      return { verdict: 'deny', reason: 'the approval chain failed; denied (fail closed)', stages };
    }
  }

  function askShared(
    plan: StagePlan,
    action: Action,
    decision: Decision,
    view: ActionView,
    subject: string,
    signal: AbortSignal | undefined,
  ): Promise<StageResult> {
    const key = `${plan.approverId}\u0000${plan.fingerprint}\u0000${subject}`;
    if (signal?.aborted) return Promise.resolve(withdrawnResult());
    let shared = inflight.get(key);
    if (!shared) {
      shared = startStage(key, plan, action, decision, view, subject);
      inflight.set(key, shared);
    }
    shared.waiters += 1;
    return waitFor(key, shared, signal);
  }

  function startStage(
    key: string,
    plan: StagePlan,
    action: Action,
    decision: Decision,
    view: ActionView,
    subject: string,
  ): SharedStage {
    const controller = new AbortController();
    const deadline = now() + plan.timeoutMs;
    const timer = setTimeout(() => controller.abort(new StageAbort('timeout')), plan.timeoutMs);
    timer.unref?.();

    const aborted = new Promise<StageResult>((resolve) => {
      controller.signal.addEventListener('abort', () => resolve(abortedResult(plan, controller.signal)), { once: true });
    });
    const asked = Promise.resolve()
      .then(() => opts.drivers[plan.kind].ask({ plan, action, decision, view, subject, deadline }, controller.signal))
      .then(
        (answer): StageResult => validAnswer(answer) ?? errorResult(plan, new Error('the approver returned no valid verdict')),
        (err: unknown): StageResult =>
          controller.signal.aborted ? abortedResult(plan, controller.signal) : errorResult(plan, err),
      );
    const shared: SharedStage = {
      controller,
      waiters: 0,
      result: Promise.race([asked, aborted]).finally(() => {
        clearTimeout(timer);
        if (inflight.get(key) === shared) inflight.delete(key);
        // Tell the driver to clean up if it has not settled (e.g. a late card update).
        if (!controller.signal.aborted) controller.abort(new StageAbort('withdrawn'));
      }),
    };
    return shared;
  }

  function waitFor(key: string, shared: SharedStage, signal: AbortSignal | undefined): Promise<StageResult> {
    if (!signal) return shared.result;
    return new Promise<StageResult>((resolve) => {
      const onAbort = () => {
        shared.waiters -= 1;
        if (shared.waiters <= 0) {
          if (inflight.get(key) === shared) inflight.delete(key);
          shared.controller.abort(new StageAbort('withdrawn'));
        }
        resolve(withdrawnResult());
      };
      signal.addEventListener('abort', onAbort, { once: true });
      void shared.result.then((result) => {
        signal.removeEventListener('abort', onAbort);
        resolve(result);
      });
    });
  }

  return {
    run,
    pendingCount: () => inflight.size,
    close() {
      for (const [key, shared] of inflight) {
        inflight.delete(key);
        shared.controller.abort(new StageAbort('withdrawn'));
      }
    },
  };
}

function cleanReason(text: string): string {
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim();
  return flat.length > MAX_REASON ? `${flat.slice(0, MAX_REASON - 1)}…` : flat;
}

function validAnswer(answer: StageAnswer | undefined): StageResult | null {
  if (!answer || (answer.verdict !== 'allow' && answer.verdict !== 'deny')) return null;
  if (typeof answer.decidedBy !== 'string' || !answer.decidedBy) return null;
  return { verdict: answer.verdict, reason: String(answer.reason ?? ''), decidedBy: answer.decidedBy, failMode: false };
}

function abortedResult(plan: StagePlan, signal: AbortSignal): StageResult {
  if (abortKind(signal) === 'timeout') {
    return {
      verdict: plan.onTimeout,
      reason: `${plan.approverId} did not answer within ${Math.round(plan.timeoutMs / 1000)}s (${plan.failModeLabel})`,
      decidedBy: 'timeout',
      failMode: true,
    };
  }
  return withdrawnResult();
}

function withdrawnResult(): StageResult {
  return { verdict: 'deny', reason: 'the agent withdrew the request before it was approved', decidedBy: 'withdrawn', failMode: true };
}

function errorResult(plan: StagePlan, err: unknown): StageResult {
  const message = err instanceof Error ? err.message : String(err);
  const failMode = plan.kind === 'llm' ? `; ${plan.failModeLabel}` : '';
  return {
    verdict: plan.onError,
    reason: `${plan.approverId} failed: ${message}${failMode}`,
    decidedBy: 'error',
    failMode: true,
  };
}

function denyReason(approverId: string, result: StageResult): string {
  if (result.decidedBy === 'timeout' || result.decidedBy === 'error' || result.decidedBy === 'withdrawn') {
    return `approval denied: ${result.reason}`;
  }
  return `approval denied by ${approverId} (${result.decidedBy})${result.reason ? `: ${result.reason}` : ''}`;
}
