/**
 * Running the system tools net/ drives (`ip`, `nft`): argv only, never a
 * shell, and errors that name the command and carry its stderr so an
 * operator can see what the kernel refused.
 */
import { execFile, spawnSync } from 'node:child_process';

export class SystemCommandError extends Error {
  override name = 'SystemCommandError';
  constructor(
    readonly command: string,
    readonly stderr: string,
    readonly code: number | null,
  ) {
    super(`${command} failed${code === null ? '' : ` (exit ${code})`}: ${stderr.trim() || 'no output'}`);
  }
}

export interface RunOptions {
  /** Text for stdin (nft rulesets). Never secrets. */
  input?: string;
  /** Do not throw; resolve with the exit code. */
  allowFailure?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : (child.exitCode ?? 1)) : 0;
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new SystemCommandError(cmd, `${cmd} is not installed (run ./install.sh)`, null));
        return;
      }
      if (code !== 0 && !opts.allowFailure) {
        reject(new SystemCommandError(`${cmd} ${args.join(' ')}`, stderr || stdout, code));
        return;
      }
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Synchronous variant for teardown paths that run from `process.on('exit')`. */
export function runSync(cmd: string, args: string[], opts: RunOptions = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(opts.input !== undefined ? { input: opts.input } : {}) });
  const code = r.status ?? 1;
  if (r.error && !opts.allowFailure) throw new SystemCommandError(cmd, r.error.message, null);
  if (code !== 0 && !opts.allowFailure) throw new SystemCommandError(`${cmd} ${args.join(' ')}`, r.stderr || r.stdout, code);
  return { code, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export const ip = (args: string[], opts?: RunOptions) => run('ip', args, opts);
export const nft = (args: string[], opts?: RunOptions) => run('nft', args, opts);
