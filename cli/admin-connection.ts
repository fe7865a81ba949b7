/**
 * How gateway-host CLIs (`approvals`, `devices`) reach the running gateway's
 * control API: `--gateway <url>`, else the policy's `gateway.dashboard_listen`
 * (`--config <policy>`), else http://127.0.0.1:8080; the admin token from
 * `--token`, else `<state_dir>/admin.token` (the policy's state dir,
 * `CLAWPATROL_STATE_DIR` overriding it, default ~/.clawpatrol). A remote
 * gateway is reached over TLS (`--gateway https://…`, the control port
 * speaks both) with the gateway CA given by `--ca-file`.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ControlClient } from '../src/gateway/control-client.js';
import { parseListen, readAdminToken } from '../src/gateway/control-server.js';
import { formatDiagnostic, loadPolicy } from '../src/policy/index.js';
import { stateDirFor } from '../src/store/index.js';

export interface AdminConnectionOptions {
  config?: string;
  gateway?: string;
  token?: string;
  caFile?: string;
}

/** A mistake of the user's (exit 2), as opposed to a gateway that refused or is down (exit 1). */
export class CliUsageError extends Error {}

export interface AdminConnection {
  client: ControlClient;
  baseUrl: string;
  /** `gateway.public_url` when the policy sets one. */
  publicUrl?: string;
}

const DEFAULT_LISTEN = '127.0.0.1:8080';

export function withAdminConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--config <path>', 'policy file or directory (gateway.dashboard_listen, gateway.state_dir, gateway.public_url)')
    .option('--gateway <url>', 'control API of the gateway (default: from the policy, else http://127.0.0.1:8080)')
    .option('--token <token>', 'admin token (default: read from <state_dir>/admin.token)')
    .option('--ca-file <pem>', 'CA to trust for an https --gateway (the gateway CA: curl <gateway>/api/enrol/ca, check its fingerprint)');
}

/** `host:port` as the gateway listens → the URL a local client dials. */
export function listenToUrl(listen: string): string {
  const { host, port } = parseListen(listen);
  const local = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${local.includes(':') ? `[${local}]` : local}:${port}`;
}

export async function connectAdmin(opts: AdminConnectionOptions): Promise<AdminConnection> {
  let listen = DEFAULT_LISTEN;
  let gateway: Parameters<typeof stateDirFor>[0];
  let publicUrl: string | undefined;
  if (opts.config) {
    const loaded = await loadPolicy(opts.config);
    if (!loaded.ok) {
      throw new CliUsageError(`${opts.config} is not a valid policy:\n${loaded.diagnostics.map(formatDiagnostic).join('\n')}`);
    }
    gateway = loaded.policy.model.gateway;
    listen = loaded.policy.model.gateway.dashboardListen;
    publicUrl = loaded.policy.model.gateway.publicUrl;
  }
  let baseUrl: string;
  try {
    baseUrl = opts.gateway ? new URL(opts.gateway).toString() : listenToUrl(listen);
  } catch (err) {
    throw new CliUsageError(err instanceof Error ? err.message : String(err));
  }
  let caPem: string | undefined;
  if (opts.caFile !== undefined) {
    if (!baseUrl.startsWith('https:')) throw new CliUsageError(`--ca-file only applies to an https --gateway, not ${baseUrl}`);
    try {
      caPem = readFileSync(opts.caFile, 'utf8');
    } catch (err) {
      throw new CliUsageError(`cannot read --ca-file ${opts.caFile}: ${(err as Error).message}`);
    }
    if (!caPem.includes('-----BEGIN CERTIFICATE-----')) throw new CliUsageError(`--ca-file ${opts.caFile} holds no PEM certificate`);
  }
  const token = opts.token ?? readAdminToken(stateDirFor(gateway));
  const client = new ControlClient({ baseUrl, token, ...(caPem !== undefined ? { caPem } : {}) });
  return { client, baseUrl, ...(publicUrl !== undefined ? { publicUrl } : {}) };
}
