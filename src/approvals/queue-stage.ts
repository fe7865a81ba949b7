/**
 * The stage for human approvers without Slack and for `builtin.dashboard`:
 * the action waits in the approval queue until it is decided through the
 * control API (`clawpatrol approvals`, the dashboard) or the stage times out.
 */
import type { ApprovalQueue } from './queue.js';
import type { StageAnswer, StageDriver, StageQuestion } from './stages.js';

export function createQueueStage(queue: ApprovalQueue): StageDriver {
  return {
    ask(question: StageQuestion, signal: AbortSignal): Promise<StageAnswer> {
      return queue.open(question, { channel: 'queue', quorum: quorumOf(question) }, signal).result;
    },
  };
}

export function quorumOf(question: StageQuestion): number {
  const approver = question.plan.approver;
  return approver.type === 'human_approver' ? Math.max(1, approver.requireApprovers || 1) : 1;
}
