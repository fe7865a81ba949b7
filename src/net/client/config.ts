/**
 * The joined machine's configuration (`clawpatrol join` writes it, `run`,
 * `status` and `leave` read it). It holds the device's WireGuard private key
 * and device token, so it is written 0600 and refused when others can read
 * it.
 *
 * Where: `--config`, else `$CLAWPATROL_CLIENT_CONFIG`, else
 * `/etc/clawpatrol/client.json` for root and
 * `$XDG_CONFIG_HOME/clawpatrol/client.json` (`~/.config/…`) for other users.
 * Root also finds the invoking user's file when started through sudo and
 * there is no system-wide one.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { homedir } from 'node:os';
import { execFileSync } from 'node:child_process';
import type { RunPlaceholder } from '../types.js';

export const CLIENT_CONFIG_ENV = 'CLAWPATROL_CLIENT_CONFIG';
export const SYSTEM_CONFIG_PATH = '/etc/clawpatrol/client.json';

export interface ClientConfig {
  version: 1;
  /** Control API of the gateway, as given to `join`. */
  gatewayUrl: string;
  device: { id: string; name: string; profile: string; address4: string; address6: string | null };
  privateKey: string;
  publicKey: string;
  /** Presented to the gateway for `status` and `leave`. */
  deviceToken: string;
  wireguard: {
    gatewayPublicKey: string;
    /** `host:port` the tunnel's UDP goes to. */
    endpoint: string;
    dns: string[];
    mtu: number;
    persistentKeepalive: number;
  };
  ca: {
    pem: string;
    /** SHA-256, upper-case hex pairs joined by `:` — pinned at join. */
    fingerprint: string;
    /** Where join installed it into the system trust store, or null (`--no-trust`). */
    trustedPath: string | null;
  };
  placeholders: RunPlaceholder[];
  joinedAt: string;
}

export class ClientConfigError extends Error {
  override name = 'ClientConfigError';
}

function userHome(uid: number): string | null {
  try {
    const line = execFileSync('getent', ['passwd', String(uid)], { encoding: 'utf8' }).trim();
    return line.split(':')[5] || null;
  } catch {
    return null;
  }
}

function userConfigPath(home: string, env: NodeJS.ProcessEnv): string {
  const xdg = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith('/') ? env.XDG_CONFIG_HOME : join(home, '.config');
  return join(xdg, 'clawpatrol', 'client.json');
}

/** The path `join` writes to. */
export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): string {
  if (env[CLIENT_CONFIG_ENV]) return env[CLIENT_CONFIG_ENV]!;
  if (uid === 0) return SYSTEM_CONFIG_PATH;
  return userConfigPath(env.HOME || homedir(), env);
}

/** Candidate paths `run` / `status` / `leave` read, in order. */
export function configCandidates(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): string[] {
  if (env[CLIENT_CONFIG_ENV]) return [env[CLIENT_CONFIG_ENV]!];
  const out = [defaultConfigPath(env, uid)];
  const sudoUid = Number(env.SUDO_UID);
  if (uid === 0 && Number.isInteger(sudoUid) && sudoUid > 0) {
    const home = userHome(sudoUid);
    if (home) out.push(userConfigPath(home, {}));
  }
  return out;
}

export function findConfig(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return explicit;
  const candidates = configCandidates(env);
  const hit = candidates.find((p) => existsSync(p));
  if (!hit) throw new ClientConfigError(`this machine has not joined a gateway (no ${candidates.join(' or ')}); run: clawpatrol join <gateway-url>`);
  return hit;
}

export function loadClientConfig(path: string): ClientConfig {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new ClientConfigError(`no client configuration at ${path}; run: clawpatrol join <gateway-url>`);
  }
  if (st.mode & 0o077) {
    throw new ClientConfigError(`refusing to use ${path}: it holds the device key and is readable by others (mode ${(st.mode & 0o777).toString(8)}); fix it with: chmod 600 ${path}`);
  }
  const me = process.getuid?.();
  if (me !== undefined && me !== 0 && st.uid !== me) {
    throw new ClientConfigError(`refusing to use ${path}: it belongs to uid ${st.uid}, not to you`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ClientConfigError(`${path} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  const c = parsed as ClientConfig;
  if (!c || c.version !== 1 || !c.device?.id || !c.privateKey || !c.wireguard?.gatewayPublicKey || !c.ca?.fingerprint) {
    throw new ClientConfigError(`${path} is not a clawpatrol client configuration (version 1)`);
  }
  return c;
}

/** Write atomically, 0600, creating the directory 0700. */
export function saveClientConfig(path: string, config: ClientConfig): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

export function removeClientConfig(path: string): void {
  rmSync(path, { force: true });
}
