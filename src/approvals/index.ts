/**
 * The approvals service the gateway composes:
 *
 *   const approvals = createApprovalService({ policy: () => watcher.current().model, secrets });
 *   createEnforcer({ …, approvals: approvals.runner });
 *   control.mount(approvals.route);      // /api/approvals…, /slack/interactivity
 *   …
 *   approvals.close();
 *
 * Stages: `llm_approver` → the LLM judge; `human_approver` with a Slack
 * credential → Slack; `human_approver` without one and `builtin.dashboard`
 * → the approval queue (CLI / dashboard).
 */
import type { PolicyModel } from '../policy/types.js';
import type { ControlRoute, SecretResolver } from '../gateway/contracts.js';
import { buildActionView, type ViewLimits } from './action-view.js';
import { credentialHeaders } from '../audit/redact.js';
import { createChainRunner, type ChainRunner } from './chain.js';
import { createJudge, type Judge, type JudgeOptions } from './judge/judge.js';
import { ApprovalQueue } from './queue.js';
import { createQueueStage } from './queue-stage.js';
import { queueRoute } from './routes.js';
import { SlackApprovals } from './slack/slack.js';
import { scrubberFor } from '../vault/scrub.js';

export interface ApprovalServiceOptions {
  /** The policy in force now (hot reload). */
  policy: () => PolicyModel;
  secrets: SecretResolver;
  /**
   * Removes vault values and their encodings from text shown to approvers
   * (judge prompts, Slack cards, the queue) and from reasons. Default: the
   * vault's scrubber over `secrets.allValues()` at the time of use.
   */
  scrub?: (text: string) => string;
  /** Slack Web API base URL (default https://slack.com/api/). */
  slackApiUrl?: string;
  /** Messages API base URL for judges that set none (default https://api.anthropic.com). */
  anthropicBaseUrl?: string;
  judgeMaxRetries?: number;
  viewLimits?: Partial<ViewLimits>;
  onJudgePrompt?: JudgeOptions['onPrompt'];
  now?: () => number;
  log?: (line: string) => void;
}

export interface ApprovalService {
  runner: ChainRunner;
  queue: ApprovalQueue;
  judge: Judge;
  slack: SlackApprovals;
  /** Mount on the control server: the queue API and Slack's interactivity endpoint. */
  route: ControlRoute;
  /** Withdraw every pending question; disconnect Socket Mode. */
  close(): Promise<void>;
}

export function createApprovalService(options: ApprovalServiceOptions): ApprovalService {
  // One scrubber per unit of work (a view, a card, a prompt): the vault's
  // values are read once for it rather than once per string.
  const scrubSession = (): ((text: string) => string) => {
    if (options.scrub) return options.scrub;
    const scrubber = scrubberFor(options.secrets.allValues());
    return (text) => scrubber.scrubText(text);
  };
  const scrub = (text: string) => scrubSession()(text);
  const opts = { ...options, scrub };
  const queue = new ApprovalQueue(opts.now);
  const judge = createJudge({
    secrets: opts.secrets,
    scrub: opts.scrub,
    ...(opts.anthropicBaseUrl !== undefined ? { defaultBaseUrl: opts.anthropicBaseUrl } : {}),
    ...(opts.judgeMaxRetries !== undefined ? { maxRetries: opts.judgeMaxRetries } : {}),
    ...(opts.onJudgePrompt ? { onPrompt: opts.onJudgePrompt } : {}),
    ...(opts.now ? { now: opts.now } : {}),
  });
  const slack = new SlackApprovals({
    policy: opts.policy,
    secrets: opts.secrets,
    queue,
    scrubSession,
    ...(opts.slackApiUrl !== undefined ? { slackApiUrl: opts.slackApiUrl } : {}),
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  });
  const runner = createChainRunner({
    policy: opts.policy,
    drivers: { llm: judge, slack, queue: createQueueStage(queue) },
    view: (action, decision) =>
      buildActionView(action, decision, {
        scrub: scrubSession(),
        sensitiveHeaders: credentialHeaders(opts.policy()),
        ...(opts.viewLimits ? { limits: opts.viewLimits } : {}),
      }),
    scrub: opts.scrub,
    ...(opts.now ? { now: opts.now } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  });
  const queueApi = queueRoute(queue);
  const route: ControlRoute = async (req, res, ctx) => (await queueApi(req, res, ctx)) || (await slack.route(req, res, ctx));
  return {
    runner,
    queue,
    judge,
    slack,
    route,
    async close() {
      runner.close();
      await slack.close();
    },
  };
}

export type { PendingApproval, Decider } from './queue.js';
export { APPROVALS_PATH } from './routes.js';
export { SLACK_INTERACTIVITY_PATH } from './slack/slack.js';
