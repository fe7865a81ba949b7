/**
 * `clawpatrol approvals` — the approval queue of a running gateway.
 *
 *   clawpatrol approvals [--watch]             interactive view (ink)
 *   clawpatrol approvals list [--json]         what is waiting
 *   clawpatrol approvals approve <id> [--reason <text>] [--as <user>]
 *   clawpatrol approvals deny <id> [--reason <text>] [--as <user>]
 *
 * Connection: `--gateway <url>`, else the policy's `gateway.dashboard_listen`
 * (`--config <policy>`), else http://127.0.0.1:8080. Admin token: `--token`,
 * else `<state_dir>/admin.token` (`CLAWPATROL_STATE_DIR` overrides the
 * policy's `state_dir`; default ~/.clawpatrol).
 *
 * Exit codes: 0 done, 1 the gateway refused or cannot be reached, 2 usage or
 * config error.
 */
import type { Command } from 'commander';
import { userInfo } from 'node:os';
import { ApprovalsClient } from '../src/approvals/client.js';
import type { PendingApproval } from '../src/approvals/queue.js';
import { ControlError } from '../src/gateway/control-client.js';
import {
  connectAdmin,
  CliUsageError as UsageError,
  withAdminConnectionOptions as withConnectionOptions,
  type AdminConnectionOptions,
} from './admin-connection.js';

export { listenToUrl } from './admin-connection.js';

export async function connect(opts: AdminConnectionOptions): Promise<ApprovalsClient> {
  return new ApprovalsClient((await connectAdmin(opts)).client);
}

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatTable(approvals: PendingApproval[], now = Date.now()): string {
  if (approvals.length === 0) return 'No actions are waiting for approval.\n';
  const rows = approvals.map((a) => [
    a.id,
    formatDuration(now - Date.parse(a.createdAt)),
    `${formatDuration(Date.parse(a.expiresAt) - now)}→${a.onTimeout}`,
    `${a.approver}${a.channel === 'slack' ? ' (slack)' : ''}`,
    a.requiredApprovals > 1 ? `${a.approvals.length}/${a.requiredApprovals}` : '-',
    a.rule,
    a.summary,
  ]);
  const header = ['ID', 'AGE', 'EXPIRES', 'APPROVER', 'VOTES', 'RULE', 'ACTION'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

async function guarded(fn: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await fn();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`clawpatrol approvals: ${message}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}

async function decide(verdict: 'approve' | 'deny', typedId: string, opts: AdminConnectionOptions & { reason?: string; as?: string }): Promise<number> {
  const client = await connect(opts);
  const id = await client.resolveId(typedId);
  const user = opts.as ?? currentUser();
  const { state, approval } = await client.decide(id, verdict, user, opts.reason);
  if (verdict === 'deny') {
    process.stdout.write(`Denied ${id}: ${approval.summary}\n`);
  } else if (state === 'recorded') {
    process.stdout.write(
      `Approval by cli:${user} recorded for ${id} (${approval.approvals.length} of ${approval.requiredApprovals}); waiting for more approvers\n`,
    );
  } else {
    process.stdout.write(`Approved ${id}: ${approval.summary}\n`);
  }
  return 0;
}

export function register(program: Command): void {
  const approvals = withConnectionOptions(
    program
      .command('approvals')
      .description('list and decide actions waiting for approval on a running gateway (no subcommand: interactive view)'),
  )
    .option('--watch', 'interactive view (the default without a subcommand)')
    .option('--as <user>', 'who decides, recorded as cli:<user> (default: your login name)')
    .action(async (opts: AdminConnectionOptions & { as?: string }) => {
      await guarded(async () => {
        const client = await connect(opts);
        if (!process.stdin.isTTY) throw new UsageError('the interactive view needs a terminal; use `clawpatrol approvals list`');
        const { runApprovalsView } = await import('./approvals-view.js');
        await runApprovalsView(client, opts.as ?? currentUser());
        return 0;
      });
    });

  withConnectionOptions(approvals.command('list').description('print the actions waiting for approval'))
    .option('--json', 'print the queue as JSON')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<AdminConnectionOptions & { json?: boolean }>();
      await guarded(async () => {
        const client = await connect(opts);
        const { approvals: pending } = await client.list();
        process.stdout.write(opts.json ? `${JSON.stringify(pending, null, 2)}\n` : formatTable(pending));
        return 0;
      });
    });

  for (const verdict of ['approve', 'deny'] as const) {
    withConnectionOptions(
      approvals
        .command(`${verdict} <id>`)
        .description(verdict === 'approve' ? 'approve a pending action (an id or a unique prefix of one)' : 'deny a pending action'),
    )
      .option('--reason <text>', verdict === 'deny' ? 'told to the agent and recorded' : 'recorded with the approval')
      .option('--as <user>', 'who decides, recorded as cli:<user> (default: your login name)')
      .action(async (id: string, _opts: unknown, cmd: Command) => {
        const opts = cmd.optsWithGlobals<AdminConnectionOptions & { reason?: string; as?: string }>();
        await guarded(() => decide(verdict, id, opts));
      });
  }
}

export { ControlError };
