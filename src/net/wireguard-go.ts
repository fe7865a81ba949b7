/**
 * One `wireguard-go` process per WireGuard interface. It runs in a private
 * mount namespace whose `/run` is our own directory, so its UAPI socket is
 * `<runDir>/wireguard/<iface>.sock` and several instances (gateways in test
 * namespaces, one per `clawpatrol run`) never see each other's sockets.
 * Keys never appear on its command line: everything is configured through
 * the socket afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const WIREGUARD_GO_ENV = 'CLAWPATROL_WIREGUARD_GO';
const IFNAME = /^[A-Za-z0-9_-]{1,15}$/;

export interface WireguardGoOptions {
  interfaceName: string;
  /** Private directory bind-mounted over `/run` for the process. */
  runDir: string;
  /** Terminate wireguard-go when the spawning process dies (gateway). */
  dieWithParent?: boolean;
  /** Outlive the spawning process (a tunnel shared by several `clawpatrol run`); output goes to `<runDir>/wireguard-go.log`. */
  detached?: boolean;
  log?: (line: string) => void;
  readyTimeoutMs?: number;
  /** Start it inside this named network namespace (its TUN is created there); default: ours. */
  netns?: string;
}

export interface WireguardGoProcess {
  pid: number;
  socketPath: string;
  /** Resolves when the process exits (with its exit code or signal name). */
  exited: Promise<string>;
  stop(): Promise<void>;
}

export function uapiSocketPath(runDir: string, iface: string): string {
  return join(runDir, 'wireguard', `${iface}.sock`);
}

export function checkInterfaceName(name: string): string {
  if (!IFNAME.test(name)) throw new Error(`invalid interface name "${name}" (1–15 letters, digits, "_" or "-")`);
  return name;
}

function pidFile(runDir: string): string {
  return join(runDir, 'wireguard-go.pid');
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function cmdlineOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/** Stop a wireguard-go left behind by a crashed predecessor using the same run directory. */
export async function killStale(runDir: string, iface: string): Promise<void> {
  const file = pidFile(runDir);
  if (!existsSync(file)) return;
  const pid = Number(readFileSync(file, 'utf8').trim());
  if (Number.isInteger(pid) && pid > 1 && isAlive(pid) && cmdlineOf(pid).includes(`-f ${iface}`)) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(20);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  rmSync(file, { force: true });
  rmSync(uapiSocketPath(runDir, iface), { force: true });
}

function accepts(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

export async function startWireguardGo(opts: WireguardGoOptions): Promise<WireguardGoProcess> {
  const iface = checkInterfaceName(opts.interfaceName);
  const log = opts.log ?? (() => {});
  mkdirSync(join(opts.runDir, 'wireguard'), { recursive: true, mode: 0o700 });
  await killStale(opts.runDir, iface);
  const socketPath = uapiSocketPath(opts.runDir, iface);
  rmSync(socketPath, { force: true });

  const binary = process.env[WIREGUARD_GO_ENV] || 'wireguard-go';
  const inner = opts.dieWithParent ? ['setpriv', '--pdeathsig', 'TERM', binary, '-f', iface] : [binary, '-f', iface];
  // unshare → sh → (setpriv →) wireguard-go all exec in place: one pid, whose parent is us.
  const unshare = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', 'dir=$1; shift; mount --bind "$dir" /run && exec "$@"', 'sh', opts.runDir, ...inner];
  // nsenter also execs in place, so the pid is still wireguard-go's.
  const [cmd, ...args] = opts.netns ? ['nsenter', `--net=/run/netns/${opts.netns}`, '--', ...unshare] : unshare;
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LOG_LEVEL: 'error', WG_PROCESS_FOREGROUND: '1' };

  let child: ChildProcess;
  let logFd: number | null = null;
  if (opts.detached) {
    logFd = openSync(join(opts.runDir, 'wireguard-go.log'), 'a', 0o600);
    child = spawn(cmd!, args, { env, detached: true, stdio: ['ignore', logFd, logFd] });
    child.unref();
  } else {
    child = spawn(cmd!, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  }
  if (logFd !== null) closeSync(logFd);

  let output = '';
  const onOutput = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    output = (output + text).slice(-4000);
    for (const line of text.split('\n')) {
      // wireguard-go prints a banner recommending the kernel module; only real messages matter.
      if (line.trim() && !/[│┌└─]/.test(line)) log(`wireguard-go[${iface}]: ${line.trim()}`);
    }
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);

  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => resolve(signal ?? String(code)));
    child.once('error', (err) => resolve(`spawn error: ${err.message}`));
  });
  let exitReason: string | null = null;
  void exited.then((r) => {
    exitReason = r;
  });

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  // The socket file appears at bind(), a moment before listen(): ready means a connect succeeds.
  while (!(existsSync(socketPath) && (await accepts(socketPath)))) {
    if (exitReason !== null) {
      throw new Error(`wireguard-go for ${iface} exited (${exitReason}) before it was ready: ${output.trim() || 'no output'}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`wireguard-go for ${iface} did not create ${socketPath} in time: ${output.trim() || 'no output'}`);
    }
    await sleep(15);
  }
  const pid = child.pid!;
  writeFileSync(pidFile(opts.runDir), `${pid}\n`, { mode: 0o600 });

  return {
    pid,
    socketPath,
    exited,
    async stop() {
      if (exitReason === null && isAlive(pid)) {
        child.kill('SIGTERM');
        const done = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
        if (!done) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      rmSync(pidFile(opts.runDir), { force: true });
      rmSync(socketPath, { force: true });
    },
  };
}

/** Stop a detached wireguard-go by pid (a later `clawpatrol run` tearing down a shared tunnel). */
export async function stopByPid(pid: number, iface: string): Promise<void> {
  if (!isAlive(pid) || !cmdlineOf(pid).includes(`-f ${iface}`)) return;
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 150 && isAlive(pid); i++) await sleep(20);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}
