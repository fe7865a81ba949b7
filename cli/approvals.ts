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
import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { ApprovalsClient } from '../src/approvals/client.js';
import type { PendingApproval } from '../src/approvals/queue.js';
import { ControlClient, ControlError } from '../src/gateway/control-client.js';
import { parseListen, readAdminToken } from '../src/gateway/control-server.js';
import { formatDiagnostic, loadPolicy } from '../src/policy/index.js';

interface ConnectionOptions {
  config?: string;
  gateway?: string;
  token?: string;
}

class UsageError extends Error {}

const DEFAULT_LISTEN = '127.0.0.1:8080';

function withConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--config <path>', 'policy file or directory (gateway.dashboard_listen, gateway.state_dir)')
    .option('--gateway <url>', 'control API of the gateway (default: from the policy, else http://127.0.0.1:8080)')
    .option('--token <token>', 'admin token (default: read from <state_dir>/admin.token)');
}

/** `host:port` as the gateway listens → the URL a local client dials. */
export function listenToUrl(listen: string): string {
  const { host, port } = parseListen(listen);
  const local = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${local.includes(':') ? `[${local}]` : local}:${port}`;
}

export async function connect(opts: ConnectionOptions): Promise<ApprovalsClient> {
  let listen = DEFAULT_LISTEN;
  let stateDir = join(homedir(), '.clawpatrol');
  if (opts.config) {
    const loaded = await loadPolicy(opts.config);
    if (!loaded.ok) {
      throw new UsageError(`${opts.config} is not a valid policy:\n${loaded.diagnostics.map(formatDiagnostic).join('\n')}`);
    }
    listen = loaded.policy.model.gateway.dashboardListen;
    stateDir = loaded.policy.model.gateway.stateDir;
  }
  if (process.env.CLAWPATROL_STATE_DIR) stateDir = process.env.CLAWPATROL_STATE_DIR;
  let baseUrl: string;
  try {
    baseUrl = opts.gateway ? new URL(opts.gateway).toString() : listenToUrl(listen);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const token = opts.token ?? readAdminToken(stateDir);
  return new ApprovalsClient(new ControlClient({ baseUrl, token }));
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

async function decide(verdict: 'approve' | 'deny', typedId: string, opts: ConnectionOptions & { reason?: string; as?: string }): Promise<number> {
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
    .action(async (opts: ConnectionOptions & { as?: string }) => {
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
      const opts = cmd.optsWithGlobals<ConnectionOptions & { json?: boolean }>();
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
        const opts = cmd.optsWithGlobals<ConnectionOptions & { reason?: string; as?: string }>();
        await guarded(() => decide(verdict, id, opts));
      });
  }
}

export { ControlError };
