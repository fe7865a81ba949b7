/**
 * Typed client of the approvals queue API (routes.ts) for the CLI and its
 * interactive view; the dashboard calls the same endpoints.
 */
import { ControlClient, ControlError } from '../gateway/control-client.js';
import type { PendingApproval } from './queue.js';
import { APPROVALS_PATH } from './routes.js';

export interface ApprovalList {
  version: number;
  approvals: PendingApproval[];
}

export interface DecideResponse {
  state: 'decided' | 'recorded';
  approval: PendingApproval;
}

export class ApprovalsClient {
  constructor(private readonly control: ControlClient) {}

  get baseUrl(): string {
    return this.control.baseUrl;
  }

  /** With `since` and `waitSec`, waits (long-poll) until the queue differs from that version. */
  list(opts: { since?: number; waitSec?: number } = {}): Promise<ApprovalList> {
    const query = new URLSearchParams();
    if (opts.since !== undefined) query.set('since', String(opts.since));
    if (opts.waitSec !== undefined) query.set('wait', String(opts.waitSec));
    const suffix = query.size ? `?${query}` : '';
    return this.control.request<ApprovalList>('GET', `${APPROVALS_PATH}${suffix}`);
  }

  get(id: string): Promise<PendingApproval> {
    return this.control.request<PendingApproval>('GET', `${APPROVALS_PATH}/${encodeURIComponent(id)}`);
  }

  decide(id: string, verdict: 'approve' | 'deny', user: string, reason?: string): Promise<DecideResponse> {
    return this.control.request<DecideResponse>('POST', `${APPROVALS_PATH}/${encodeURIComponent(id)}/${verdict}`, {
      user,
      via: 'cli',
      ...(reason ? { reason } : {}),
    });
  }

  /**
   * The full id for what the user typed: an exact id, or a unique prefix of
   * one (ids are long; the list shows them whole, people type the start).
   */
  async resolveId(typed: string): Promise<string> {
    const { approvals } = await this.list();
    if (approvals.some((a) => a.id === typed)) return typed;
    const matches = approvals.filter((a) => a.id.startsWith(typed));
    if (typed.length >= 4 && matches.length === 1) return matches[0]!.id;
    if (matches.length > 1) throw new ControlError(`"${typed}" matches ${matches.length} pending approvals; type more of the id`, 400);
    throw new ControlError(`no pending approval "${typed}" (it may have been decided, timed out or withdrawn)`, 404);
  }
}
