/**
 * A throwaway PostgreSQL 15 cluster for tests: real server binaries, a temp
 * data directory, a free TCP port on 127.0.0.1, SCRAM for most users and an
 * MD5 user, torn down by `stop()`.
 *
 * initdb refuses to run as root, so as root the cluster runs as the
 * `postgres` system user (created by Debian's postgresql package).
 */
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, chownSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';

const PG_BIN = process.env.CLAWPATROL_PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PgCluster {
  host: string;
  port: number;
  socketDir: string;
  dataDir: string;
  /** Superuser `postgres`, password auth over TCP with this password (SCRAM). */
  superuser: string;
  superPassword: string;
  /** Run SQL as the superuser over the Unix socket (trust); returns psql's stdout (unaligned, tuples only). */
  sql(statement: string, database?: string): string;
  /** Create a login role. `auth` picks how its password is stored and checked. */
  createUser(name: string, password: string, auth?: 'scram-sha-256' | 'md5' | 'password'): void;
  url(user: string, password: string, database?: string): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function postgresUid(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

function runAsOwner(owner: { uid: number; gid: number } | null, cmd: string, args: string[]): string {
  const r = owner
    ? spawnSync('runuser', ['-u', 'postgres', '--', cmd, ...args], { encoding: 'utf8' })
    : spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  }
  return r.stdout;
}

export async function startPgCluster(): Promise<PgCluster> {
  if (!existsSync(join(PG_BIN, 'initdb'))) {
    throw new Error(`PostgreSQL 15 server binaries not found in ${PG_BIN}; run ./install.sh`);
  }
  const owner = postgresUid();
  const root = mkdtempSync(join(tmpdir(), 'clawpatrol-pg-'));
  const dataDir = join(root, 'data');
  const socketDir = join(root, 'sock');
  const superPassword = 'super-' + Math.random().toString(36).slice(2);
  const pwfile = join(root, 'pw');
  writeFileSync(pwfile, superPassword + '\n', { mode: 0o600 });
  execFileSync('mkdir', ['-p', socketDir]);
  if (owner) {
    for (const p of [root, socketDir, pwfile]) chownSync(p, owner.uid, owner.gid);
  }
  runAsOwner(owner, join(PG_BIN, 'initdb'), [
    '-D', dataDir, '-U', 'postgres', '--pwfile', pwfile,
    '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '-N',
  ]);
  // Per-user overrides first: pg_hba.conf is first-match.
  const hbaPath = join(dataDir, 'pg_hba.conf');
  const hba = readFileSync(hbaPath, 'utf8');
  writeFileSync(
    hbaPath,
    '# clawpatrol test cluster: roles in these files use md5 / cleartext\n' +
      'host all +md5_users 127.0.0.1/32 md5\n' +
      'host all +password_users 127.0.0.1/32 password\n' +
      hba,
  );
  const port = await freePort();
  runAsOwner(owner, join(PG_BIN, 'pg_ctl'), [
    '-D', dataDir, '-l', join(root, 'server.log'), '-w', '-t', '60',
    '-o', `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
    'start',
  ]);

  const sql = (statement: string, database = 'postgres'): string =>
    runAsOwner(owner, '/usr/bin/psql', [
      '-h', socketDir, '-p', String(port), '-U', 'postgres', '-d', database,
      '-v', 'ON_ERROR_STOP=1', '-X', '-A', '-t', '-c', statement,
    ]);

  sql("CREATE ROLE md5_users NOLOGIN; CREATE ROLE password_users NOLOGIN;");

  const cluster: PgCluster = {
    host: '127.0.0.1',
    port,
    socketDir,
    dataDir,
    superuser: 'postgres',
    superPassword,
    sql,
    createUser(name, password, auth = 'scram-sha-256') {
      const enc = auth === 'md5' ? 'md5' : 'scram-sha-256';
      const quotedPw = password.replace(/'/g, "''");
      sql(`SET password_encryption = '${enc}'; CREATE ROLE "${name}" LOGIN PASSWORD '${quotedPw}';`);
      if (auth === 'md5') sql(`GRANT md5_users TO "${name}"`);
      if (auth === 'password') sql(`GRANT password_users TO "${name}"`);
    },
    url(user, password, database = 'postgres') {
      return `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
    },
    async stop() {
      try {
        runAsOwner(owner, join(PG_BIN, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
  return cluster;
}
