/**
 * The state directory holds the database, the vault key and the admin token:
 * it must belong to the gateway's user and be closed to everyone else. We
 * create it 0700 and refuse to run from one that group or others can enter,
 * naming the command that fixes it.
 */
import { mkdirSync, statSync, chmodSync } from 'node:fs';
import { resolve } from 'node:path';
import { StoreError } from './types.js';

/** Create `dir` (0700) when absent; throw a StoreError naming the fix when it is unsafe. */
export function ensurePrivateDir(dir: string): string {
  const abs = resolve(dir);
  let created = false;
  try {
    statSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(abs, { recursive: true, mode: 0o700 });
    // mkdir's mode is filtered through the umask; make sure it is exactly 0700.
    chmodSync(abs, 0o700);
    created = true;
  }
  const st = statSync(abs);
  if (!st.isDirectory()) {
    throw new StoreError(`state_dir ${abs} is not a directory`);
  }
  if (!created) assertPrivate(abs, st.mode, st.uid, 'directory', 0o700);
  return abs;
}

/** Refuse a key or state file that others can read. */
export function assertPrivateFile(path: string): void {
  const st = statSync(path);
  assertPrivate(path, st.mode, st.uid, 'file', 0o600);
}

function assertPrivate(path: string, mode: number, uid: number, what: 'directory' | 'file', want: number): void {
  const perms = mode & 0o777;
  if (perms & 0o077) {
    throw new StoreError(
      `refusing to use ${what} ${path}: it is accessible by group or others (mode ${perms.toString(8).padStart(4, '0')}); ` +
        `fix it with: chmod ${want.toString(8)} ${shellQuote(path)}`,
    );
  }
  const me = process.getuid?.();
  if (me !== undefined && uid !== me) {
    throw new StoreError(
      `refusing to use ${what} ${path}: it belongs to uid ${uid}, not to the user running clawpatrol (uid ${me}); ` +
        `fix it with: chown ${me} ${shellQuote(path)}`,
    );
  }
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
