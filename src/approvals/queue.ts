/**
 * Pending human decisions. Every human stage — a `human_approver` with or
 * without Slack, and `builtin.dashboard` — is an entry here while it waits,
 * so the CLI and the dashboard can always see what is held. Entries are
 * decided here too: `cli:`/`dashboard:` decisions through the control API,
 * `slack:` decisions from signed Slack clicks.
 *
 * Who may decide what:
 * - an entry answered in Slack (interactive Slack approver) is approved only
 *   in Slack, by its `approvers`; the admin API may still *deny* it (stopping
 *   an action is always safe);
 * - a queue entry (no Slack, or a non-interactive card) is decided through
 *   the admin API;
 * - `require_approvers = N` needs N distinct deciders; one deny ends it.
 *
 * Entries live in memory: each one belongs to an agent connection that is
 * waiting on this process, so there is nothing to resume after a restart.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { summarize, type ActionView } from './action-view.js';
import type { StageAnswer, StageQuestion } from './stages.js';

export type DecidedVia = 'cli' | 'dashboard' | 'slack';
export interface Decider {
  via: DecidedVia;
  /** CLI/dashboard user name, or Slack user id. */
  user: string;
}

/** What the control API and the CLI see of an entry. */
export interface PendingApproval {
  id: string;
  approver: string;
  /** `slack`: approved in Slack only. `queue`: decided through the control API. */
  channel: 'queue' | 'slack';
  createdAt: string;
  expiresAt: string;
  onTimeout: 'allow' | 'deny';
  rule: string;
  reason: string;
  summary: string;
  requiredApprovals: number;
  /** `decidedBy` tokens of the approvals recorded so far. */
  approvals: string[];
  /** Agent requests waiting on this entry (identical actions are coalesced). */
  action: ActionView;
}

export type DecideResult =
  | { ok: true; state: 'decided' | 'recorded'; entry: PendingApproval }
  | { ok: false; status: 400 | 403 | 404 | 409; error: string };

interface Entry {
  view: PendingApproval;
  fail: (err: unknown) => void;
  /** Slack user ids allowed to decide (empty: anyone in the channel). */
  allowedSlackUsers: string[];
  reasons: string[];
  settle: (answer: StageAnswer) => void;
  events: EventEmitter;
}

export interface OpenOptions {
  channel: 'queue' | 'slack';
  quorum: number;
  allowedSlackUsers?: string[];
}

export interface OpenedEntry {
  id: string;
  result: Promise<StageAnswer>;
  /** 'progress' (PendingApproval) after each recorded approval; 'settled' (StageAnswer | null) once. */
  events: EventEmitter;
}

/** The reason recorded when a decider gives none (cards leave it out). */
export function defaultReason(verdict: 'allow' | 'deny', decidedBy: string): string {
  return `${verdict === 'allow' ? 'approved' : 'denied'} by ${decidedBy.split(',').join(', ')}`;
}

const USER_PATTERN = /^[A-Za-z0-9._@+-]{1,64}$/;

export class ApprovalQueue {
  private readonly entries = new Map<string, Entry>();
  private readonly changes = new EventEmitter();
  private versionCounter = 0;

  constructor(private readonly now: () => number = Date.now) {
    this.changes.setMaxListeners(0);
  }

  /** Increases on every change (long-polling watchers compare it). */
  get version(): number {
    return this.versionCounter;
  }

  open(question: StageQuestion, opts: OpenOptions, signal: AbortSignal): OpenedEntry {
    const id = randomBytes(8).toString('hex');
    const events = new EventEmitter();
    let settle!: (answer: StageAnswer) => void;
    let fail!: (err: unknown) => void;
    const result = new Promise<StageAnswer>((resolve, reject) => {
      settle = resolve;
      fail = reject;
    });
    const view: PendingApproval = {
      id,
      approver: question.plan.approverId,
      channel: opts.channel,
      createdAt: new Date(this.now()).toISOString(),
      expiresAt: new Date(question.deadline).toISOString(),
      onTimeout: question.plan.onTimeout,
      rule: question.decision.rule,
      reason: question.view.reason,
      summary: summarize(question.view),
      requiredApprovals: Math.max(1, Math.floor(opts.quorum) || 1),
      approvals: [],
      action: question.view,
    };
    const entry: Entry = {
      view,
      allowedSlackUsers: opts.allowedSlackUsers ?? [],
      reasons: [],
      events,
      fail: (err) => {
        if (this.entries.get(id) !== entry) return;
        this.remove(id);
        events.emit('settled', null);
        fail(err);
      },
      settle: (answer) => {
        if (this.entries.get(id) !== entry) return;
        this.remove(id);
        events.emit('settled', answer);
        settle(answer);
      },
    };
    const onAbort = () => entry.fail(signal.reason);
    if (signal.aborted) {
      queueMicrotask(onAbort);
    } else {
      signal.addEventListener('abort', onAbort, { once: true });
      void result.catch(() => {}).finally(() => signal.removeEventListener('abort', onAbort));
    }
    this.entries.set(id, entry);
    this.bump();
    return { id, result, events };
  }

  list(): PendingApproval[] {
    return [...this.entries.values()].map((e) => e.view).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  get(id: string): PendingApproval | undefined {
    return this.entries.get(id)?.view;
  }

  /**
   * Record one decision. A deny settles the entry at once; an approval
   * settles it when `requiredApprovals` distinct deciders have approved.
   */
  decide(id: string, verdict: 'allow' | 'deny', decider: Decider, reason = ''): DecideResult {
    const entry = this.entries.get(id);
    if (!entry) return { ok: false, status: 404, error: `no pending approval ${JSON.stringify(id)}` };
    if (!USER_PATTERN.test(decider.user)) return { ok: false, status: 400, error: 'invalid user name' };
    const view = entry.view;
    if (decider.via === 'slack') {
      if (view.channel !== 'slack') {
        return { ok: false, status: 403, error: 'This approval is decided with `clawpatrol approvals` or the dashboard, not in Slack.' };
      }
      if (entry.allowedSlackUsers.length > 0 && !entry.allowedSlackUsers.includes(decider.user)) {
        return { ok: false, status: 403, error: 'You are not one of the approvers of this request.' };
      }
    } else if (view.channel === 'slack' && verdict === 'allow') {
      return {
        ok: false,
        status: 403,
        error: `approval ${id} is approved in Slack by ${view.approver}'s approvers; here it can only be denied`,
      };
    }
    const token = `${decider.via}:${decider.user}`;
    const cleanReason = reason.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim().slice(0, 500);
    if (verdict === 'deny') {
      entry.settle({ verdict: 'deny', reason: cleanReason || defaultReason('deny', token), decidedBy: token });
      return { ok: true, state: 'decided', entry: view };
    }
    // One person, one vote: `cli:alice` and `dashboard:alice` are the same person through two doors
    // (both behind the admin token), so the quorum compares users, not `<via>:<user>` tokens.
    const earlier = view.approvals.find((t) => t.slice(t.indexOf(':') + 1) === decider.user);
    if (earlier) return { ok: false, status: 409, error: `${earlier} has already approved ${id}` };
    view.approvals = [...view.approvals, token];
    if (cleanReason) entry.reasons.push(`${token}: ${cleanReason}`);
    if (view.approvals.length >= view.requiredApprovals) {
      entry.settle({
        verdict: 'allow',
        reason: entry.reasons.length ? entry.reasons.join('; ') : defaultReason('allow', view.approvals.join(',')),
        decidedBy: view.approvals.join(','),
      });
      return { ok: true, state: 'decided', entry: view };
    }
    this.bump();
    entry.events.emit('progress', view);
    return { ok: true, state: 'recorded', entry: view };
  }

  /** Drop an entry that cannot be asked (e.g. its Slack card could not be posted). */
  cancel(id: string, err: Error): void {
    this.entries.get(id)?.fail(err);
  }

  /** Resolve when the version differs from `since`, or after `timeoutMs`. */
  waitForChange(since: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    if (since !== this.versionCounter) return Promise.resolve(this.versionCounter);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.changes.off('change', done);
        signal?.removeEventListener('abort', done);
        resolve(this.versionCounter);
      };
      const timer = setTimeout(done, timeoutMs);
      this.changes.on('change', done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  private remove(id: string): void {
    if (this.entries.delete(id)) this.bump();
  }

  private bump(): void {
    this.versionCounter += 1;
    this.changes.emit('change');
  }
}
