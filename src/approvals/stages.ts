/**
 * What one stage of an approver chain is: which approver, how it is asked
 * (LLM judge, Slack, or the CLI/dashboard queue), how long it may take, and
 * what a timeout or an error yields. Settings are read from the policy in
 * force when the stage starts, so a hot reload applies to the next question.
 */
import type { Action, Approver, BuiltinApprover, Decision, Defaults, PolicyModel } from '../policy/types.js';
import type { ActionView } from './action-view.js';
import { canonicalJson, sha256Hex } from './canonical.js';

export type StageKind = 'llm' | 'slack' | 'queue';

/** Seconds an LLM judge may take when the approver sets no `timeout`. */
export const DEFAULT_JUDGE_TIMEOUT_SEC = 30;

export interface StagePlan {
  approverId: string;
  approver: Approver;
  kind: StageKind;
  timeoutMs: number;
  /** Verdict when the approver does not answer in time. */
  onTimeout: 'allow' | 'deny';
  /** Verdict when asking fails (model error, malformed answer, Slack unreachable). */
  onError: 'allow' | 'deny';
  /** Words for the fail mode in reasons, e.g. `llm_fail_mode = closed`. */
  failModeLabel: string;
  /** Hash of everything in the approver's settings that could change an answer. */
  fingerprint: string;
  /** The policy defaults in force when the stage started (cache TTL, …). */
  defaults: Defaults;
}

export function planStage(model: PolicyModel, approverId: string): StagePlan | { error: string } {
  const defaults = model.defaults;
  const approver = model.approvers.get(approverId) ?? (approverId === 'builtin.dashboard' ? builtinDashboard(model) : undefined);
  if (!approver) return { error: `approver ${approverId} is not defined in the policy in force` };

  if (approver.type === 'llm_approver') {
    const verdict = defaults.llmFailMode === 'open' ? 'allow' : 'deny';
    return {
      approverId,
      approver,
      defaults,
      kind: 'llm',
      timeoutMs: secondsOr(approver.timeoutSec, DEFAULT_JUDGE_TIMEOUT_SEC) * 1000,
      onTimeout: verdict,
      onError: verdict,
      failModeLabel: `llm_fail_mode = ${defaults.llmFailMode}`,
      fingerprint: fingerprint({ model: approver.model, policy: approver.policy, baseUrl: approver.baseUrl, credential: approver.credential }),
    };
  }
  if (approver.type === 'human_approver') {
    const onTimeout = approver.onTimeout ?? defaults.humanOnTimeout;
    return {
      approverId,
      approver,
      defaults,
      kind: approver.credential ? 'slack' : 'queue',
      timeoutMs: secondsOr(approver.timeoutSec, defaults.humanTimeoutSec) * 1000,
      onTimeout,
      // An unreachable Slack is not "nobody answered": traffic stops (threats.md 25).
      onError: 'deny',
      failModeLabel: `on_timeout = ${onTimeout}`,
      fingerprint: fingerprint({
        channel: approver.channel,
        credential: approver.credential,
        approvers: [...approver.approvers].sort(),
        quorum: approver.requireApprovers,
      }),
    };
  }
  return {
    approverId,
    approver,
    defaults,
    kind: 'queue',
    timeoutMs: secondsOr(approver.timeoutSec, defaults.humanTimeoutSec) * 1000,
    onTimeout: approver.onTimeout ?? defaults.humanOnTimeout,
    onError: 'deny',
    failModeLabel: `on_timeout = ${approver.onTimeout ?? defaults.humanOnTimeout}`,
    fingerprint: fingerprint({ builtin: approver.id }),
  };
}

function builtinDashboard(model: PolicyModel): BuiltinApprover {
  return {
    id: 'builtin.dashboard',
    type: 'builtin',
    name: 'dashboard',
    timeoutSec: model.defaults.humanTimeoutSec,
    onTimeout: model.defaults.humanOnTimeout,
  };
}

function secondsOr(value: number | undefined, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
}

function fingerprint(settings: unknown): string {
  return sha256Hex(canonicalJson(settings));
}

/** One question put to one approver. */
export interface StageQuestion {
  plan: StagePlan;
  action: Action;
  decision: Decision;
  /** Redacted, scrubbed, bounded facts — all an approver is ever shown. */
  view: ActionView;
  /** Fingerprint of the full subject (see canonical.ts). */
  subject: string;
  /** Epoch milliseconds after which the stage's `onTimeout` applies. */
  deadline: number;
}

export interface StageAnswer {
  verdict: 'allow' | 'deny';
  reason: string;
  /** `llm:<model>`, `slack:<user id>`, `cli:<user>`, `dashboard:<user>`. */
  decidedBy: string;
}

/**
 * Asks one kind of approver. `ask` resolves with a real answer and rejects on
 * any failure; when `signal` aborts (timeout, or every waiting agent hung up,
 * see `StageAbort`) it must withdraw the question (update the Slack card,
 * drop the queue entry) and settle promptly.
 */
export interface StageDriver {
  ask(question: StageQuestion, signal: AbortSignal): Promise<StageAnswer>;
}

/** The reason a stage's signal aborts with. */
export class StageAbort extends Error {
  constructor(readonly kind: 'timeout' | 'withdrawn') {
    super(kind === 'timeout' ? 'the approver did not answer in time' : 'the agent withdrew the request');
    this.name = 'StageAbort';
  }
}

export function abortKind(signal: AbortSignal): 'timeout' | 'withdrawn' | null {
  if (!signal.aborted) return null;
  return signal.reason instanceof StageAbort ? signal.reason.kind : 'withdrawn';
}
