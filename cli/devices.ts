/**
 * `clawpatrol devices` — enrolled devices of a running gateway.
 *
 *   clawpatrol devices [list] [--json]                   enrolled devices and pending enrolments
 *   clawpatrol devices add --profile <p> [--ttl 1h] [--name <n>]   a one-time join token
 *   clawpatrol devices approve <code> --profile <p> [--name <n>]   approve a device-code enrolment
 *   clawpatrol devices deny <code>
 *   clawpatrol devices revoke <id>                       cut the device's tunnel and connections now
 *
 * Connection: `--gateway <url>`, else the policy's `gateway.dashboard_listen`
 * (`--config <policy>`), else http://127.0.0.1:8080; admin token `--token`,
 * else `<state_dir>/admin.token`.
 *
 * Exit codes: 0 done, 1 the gateway refused or cannot be reached, 2 usage.
 */
import type { Command } from 'commander';
import type { ControlClient } from '../src/gateway/control-client.js';
import type { DeviceInfo } from '../src/net/enrol-routes.js';
import {
  connectAdmin,
  CliUsageError as UsageError,
  withAdminConnectionOptions as withConnectionOptions,
  type AdminConnectionOptions,
} from './admin-connection.js';

interface Connected {
  client: ControlClient;
  /** What agents pass to `clawpatrol join`: `gateway.public_url`, else the control URL. */
  joinUrl: string;
}

async function connect(opts: AdminConnectionOptions): Promise<Connected> {
  const c = await connectAdmin(opts);
  return { client: c.client, joinUrl: (c.publicUrl ?? c.baseUrl).replace(/\/$/, '') };
}

async function guarded(fn: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await fn();
  } catch (err) {
    process.stderr.write(`clawpatrol devices: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}

/** `3600`, `90s`, `30m`, `12h`, `7d` → seconds. */
export function parseTtl(text: string): number {
  const m = /^(\d+)\s*([smhd]?)$/.exec(text.trim());
  if (!m) throw new UsageError(`invalid --ttl "${text}" (e.g. 900, 30m, 12h, 7d)`);
  const n = Number(m[1]);
  return n * ({ '': 1, s: 1, m: 60, h: 3600, d: 86400 } as Record<string, number>)[m[2]!]!;
}

export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

interface ListReply {
  devices: DeviceInfo[];
  pending: Array<{ userCode: string; name: string; publicKey: string; createdAt: string; expiresAt: string }>;
}

async function list(opts: AdminConnectionOptions & { json?: boolean }): Promise<number> {
  const { client } = await connect(opts);
  const reply = await client.request<ListReply>('GET', '/api/devices');
  if (opts.json) {
    process.stdout.write(JSON.stringify(reply, null, 2) + '\n');
    return 0;
  }
  if (reply.devices.length === 0) process.stdout.write('No enrolled devices.\n');
  else {
    process.stdout.write(
      table(
        ['ID', 'NAME', 'PROFILE', 'ADDRESS', 'HANDSHAKE', 'CONNS', 'ENROLLED'],
        reply.devices.map((d) => [d.id, d.name, d.profile, d.address4, ago(d.lastHandshake), String(d.connections), d.createdAt.slice(0, 10)]),
      ),
    );
  }
  if (reply.pending.length) {
    process.stdout.write('\nWaiting for approval (clawpatrol devices approve <code> --profile <profile>):\n');
    process.stdout.write(
      table(
        ['CODE', 'NAME', 'KEY', 'EXPIRES'],
        reply.pending.map((p) => [p.userCode, p.name, `${p.publicKey.slice(0, 12)}…`, new Date(p.expiresAt).toLocaleTimeString()]),
      ),
    );
  }
  return 0;
}

export function register(program: Command): void {
  const devices = withConnectionOptions(program.command('devices').description('list, enrol, approve and revoke the devices of a running gateway'))
    .option('--json', 'print JSON')
    .action(async (opts: AdminConnectionOptions & { json?: boolean }) => guarded(() => list(opts)));

  withConnectionOptions(devices.command('list').description('enrolled devices and pending enrolments'))
    .option('--json', 'print JSON')
    .action(async (_o: unknown, cmd: Command) => guarded(() => list(cmd.optsWithGlobals())));

  withConnectionOptions(devices.command('add').description('mint a single-use, expiring join token for an unattended machine'))
    .requiredOption('--profile <name>', 'the profile the device gets')
    .option('--ttl <duration>', 'how long the token stays valid (e.g. 30m, 12h, 7d)', '1h')
    .option('--name <name>', 'device name (default: the joining machine says)')
    .action(async (_o: unknown, cmd: Command) =>
      guarded(async () => {
        const opts = cmd.optsWithGlobals<AdminConnectionOptions & { profile: string; ttl: string; name?: string }>();
        const ttlSec = parseTtl(opts.ttl);
        const { client, joinUrl } = await connect(opts);
        const r = await client.request<{ token: string; expiresAt: string; profile: string; caFingerprint: string }>('POST', '/api/devices/tokens', {
          profile: opts.profile,
          ttlSec,
          ...(opts.name ? { name: opts.name } : {}),
        });
        process.stdout.write(
          `Join token for profile ${r.profile} (single use, valid until ${r.expiresAt}):\n\n  ${r.token}\n\n` +
            `On the machine to enrol:\n\n  sudo clawpatrol join ${joinUrl} --token ${r.token} --ca-fingerprint ${r.caFingerprint}\n`,
        );
        return 0;
      }),
    );

  withConnectionOptions(devices.command('approve <code>').description('approve a device-code enrolment (the code both sides show)'))
    .requiredOption('--profile <name>', 'the profile the device gets')
    .option('--name <name>', 'rename the device')
    .action(async (code: string, _o: unknown, cmd: Command) =>
      guarded(async () => {
        const opts = cmd.optsWithGlobals<AdminConnectionOptions & { profile: string; name?: string }>();
        const { client } = await connect(opts);
        const r = await client.request<{ device: DeviceInfo }>('POST', '/api/devices/approve', {
          userCode: code,
          profile: opts.profile,
          ...(opts.name ? { name: opts.name } : {}),
        });
        process.stdout.write(`Approved ${code}: device ${r.device.id} (${r.device.name}), profile ${r.device.profile}, tunnel address ${r.device.address4}\n`);
        return 0;
      }),
    );

  withConnectionOptions(devices.command('deny <code>').description('refuse a device-code enrolment'))
    .action(async (code: string, _o: unknown, cmd: Command) =>
      guarded(async () => {
        const { client } = await connect(cmd.optsWithGlobals());
        await client.request('POST', '/api/devices/deny', { userCode: code });
        process.stdout.write(`Denied ${code}\n`);
        return 0;
      }),
    );

  withConnectionOptions(devices.command('revoke <id>').description("remove a device: its tunnel and every open connection are cut at once"))
    .action(async (id: string, _o: unknown, cmd: Command) =>
      guarded(async () => {
        const { client } = await connect(cmd.optsWithGlobals());
        const r = await client.request<{ revoked: boolean; connectionsClosed: number }>('POST', `/api/devices/${encodeURIComponent(id)}/revoke`);
        process.stdout.write(`Revoked ${id}; ${r.connectionsClosed} open connection(s) closed\n`);
        return 0;
      }),
    );
}
