/**
 * `clawpatrol run [--] <cmd> [args…]`: the command runs inside the device's
 * tunnel namespace (see tunnel.ts), as the invoking user (sudo's
 * SUDO_UID/SUDO_GID), with credentials scrubbed from its environment,
 * placeholders and CA bundles exported (see env.ts). Its exit status and
 * the signals sent to `run` pass through; the tunnel is released when it
 * exits.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { isatty } from 'node:tty';
import { acquireTunnel, emergencyTeardown, type TunnelHandle } from './tunnel.js';
import { buildRunEnv } from './env.js';
import { findConfig, loadClientConfig, saveClientConfig, type ClientConfig } from './config.js';
import { GatewayApi, GatewayApiError } from './gateway-api.js';

export interface RunWrappedOptions {
  configPath?: string;
  command: string[];
  keepEnv?: string[];
  env?: NodeJS.ProcessEnv;
  /** Notices for the human (stderr). */
  notice: (line: string) => void;
}

export interface RunOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class RunError extends Error {
  override name = 'RunError';
}

interface Invoker {
  uid: number;
  gid: number;
  name: string | null;
  home: string | null;
  shell: string | null;
}

function passwdEntry(uid: number): { name: string; home: string; shell: string } | null {
  try {
    const f = execFileSync('getent', ['passwd', String(uid)], { encoding: 'utf8' }).trim().split(':');
    return f[0] ? { name: f[0], home: f[5] ?? '/', shell: f[6] ?? '/bin/sh' } : null;
  } catch {
    return null;
  }
}

/** The user sudo was invoked by, or null when run directly (as root). */
export function invokingUser(env: NodeJS.ProcessEnv): Invoker | null {
  const uid = Number(env.SUDO_UID);
  const gid = Number(env.SUDO_GID);
  if (!env.SUDO_UID || !Number.isInteger(uid) || uid <= 0 || !Number.isInteger(gid) || gid < 0) return null;
  const pw = passwdEntry(uid);
  return { uid, gid, name: pw?.name ?? null, home: pw?.home ?? null, shell: pw?.shell ?? null };
}

/** Refresh placeholders from the gateway; a revoked device does not run. Unreachable: keep the cached ones. */
async function refresh(config: ClientConfig, path: string, notice: (l: string) => void): Promise<ClientConfig> {
  try {
    const status = await new GatewayApi(config.gatewayUrl, config.ca.pem, 4000).self(config.deviceToken);
    if (status.caFingerprint !== config.ca.fingerprint) {
      throw new RunError(
        `the gateway now presents CA ${status.caFingerprint}, not the pinned ${config.ca.fingerprint}; refusing to run (leave and join again if the CA was rotated)`,
      );
    }
    if (JSON.stringify(status.placeholders) !== JSON.stringify(config.placeholders) || status.device.profile !== config.device.profile) {
      const next = { ...config, placeholders: status.placeholders, device: { ...config.device, profile: status.device.profile } };
      saveClientConfig(path, next);
      return next;
    }
    return config;
  } catch (err) {
    if (err instanceof RunError) throw err;
    if (err instanceof GatewayApiError && err.status === 401) {
      throw new RunError(`device ${config.device.id} is no longer enrolled at ${config.gatewayUrl} (revoked?): run clawpatrol leave, then clawpatrol join`);
    }
    notice(`clawpatrol: warning: ${err instanceof Error ? err.message : String(err)} — the command will have no network until the gateway is back`);
    return config;
  }
}

const TERMINAL_SIGNALS = new Set<NodeJS.Signals>(['SIGINT', 'SIGQUIT', 'SIGWINCH']);
const FORWARDED: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGCONT'];

export async function runWrapped(opts: RunWrappedOptions): Promise<RunOutcome> {
  if (opts.command.length === 0) throw new RunError('nothing to run: clawpatrol run [--] <command> [args…]');
  if (process.getuid?.() !== 0) {
    throw new RunError('clawpatrol run needs root to create the network namespace: sudo clawpatrol run -- <command> (the command itself runs as you)');
  }
  const env = opts.env ?? process.env;
  const path = findConfig(opts.configPath, env);
  let config = loadClientConfig(path);
  config = await refresh(config, path, opts.notice);

  const user = invokingUser(env);
  if (!user) {
    opts.notice('clawpatrol: warning: running the command as root (not started through sudo); root inside the namespace can leave it');
  }

  // Signals are ours from here on: forwarded to the command once it runs, and
  // remembered before that, so `run` never dies with a tunnel left behind.
  const onTty = isatty(0);
  let child: ChildProcess | null = null;
  let early: NodeJS.Signals | null = null;
  const handlers = new Map<NodeJS.Signals, () => void>();
  for (const sig of FORWARDED) {
    const h = () => {
      // From a terminal these reach the whole foreground process group, the command included.
      if (onTty && TERMINAL_SIGNALS.has(sig)) return;
      if (!child) {
        if (sig !== 'SIGWINCH' && sig !== 'SIGCONT') early ??= sig;
        return;
      }
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    };
    handlers.set(sig, h);
    process.on(sig, h);
  }

  let tunnel: TunnelHandle | null = null;
  const onExit = () => {
    // Only reached when we die without running the normal release (an exception): leave nothing behind.
    if (tunnel) emergencyTeardown(config.device.id);
  };
  process.once('exit', onExit);

  try {
    tunnel = await acquireTunnel(config);
    if (early) return { code: null, signal: early };
    const built = buildRunEnv({
      env,
      placeholders: config.placeholders,
      caBundlePath: tunnel.caBundlePath,
      device: { id: config.device.id, profile: config.device.profile },
      keep: opts.keepEnv ?? [],
      ...(user?.name && user.home ? { user: { name: user.name, home: user.home, ...(user.shell ? { shell: user.shell } : {}) } } : {}),
    });
    if (built.removed.length) {
      opts.notice(`clawpatrol: removed credentials from the environment (the gateway injects them on the wire): ${built.removed.join(', ')}`);
    }
    if (built.proxiesRemoved.length) opts.notice(`clawpatrol: removed proxy settings (the tunnel is the only way out): ${built.proxiesRemoved.join(', ')}`);
    if (built.exported.length) opts.notice(`clawpatrol: placeholders: ${built.exported.join(', ')}`);

    const inner = user
      ? ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, user.name ? '--init-groups' : '--clear-groups', '--', ...opts.command]
      : opts.command;
    const spawned = spawn('ip', ['netns', 'exec', tunnel.netns, ...inner], { env: built.env, stdio: 'inherit' });
    child = spawned;
    return await new Promise<RunOutcome>((resolve, reject) => {
      spawned.once('error', (err) => reject(new RunError(`cannot start ${opts.command[0]}: ${err.message}`)));
      spawned.once('exit', (code, signal) => resolve({ code, signal }));
    });
  } finally {
    const t = tunnel as TunnelHandle | null;
    tunnel = null;
    process.off('exit', onExit);
    try {
      if (t) await t.release();
    } finally {
      // Only now: a signal during the teardown must not kill us half-way.
      for (const [sig, h] of handlers) process.off(sig, h);
    }
  }
}
