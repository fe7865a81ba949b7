/**
 * A real PostgreSQL 15 cluster behind a real Postgres listener of the
 * gateway, for end-to-end tests with psql, pg and raw frames.
 */
import { spawn } from 'node:child_process';
import { startPgCluster, type PgCluster } from '../../support/pg-cluster.js';
import { startPostgresListener, type PostgresListener } from '../../../src/protocols/postgres/listener.js';
import { CancelRegistry } from '../../../src/protocols/postgres/cancel.js';
import { makeHarness, type Harness } from './harness.js';
import { makeTestCa, type TestCa } from './tls.js';

export const PASSWORDS = {
  scram: 'scram-Vault-Pass-7731',
  md5: 'md5-Vault-Pass-8842',
  plain: 'plain-Vault-Pass-9953',
};

export interface GatewayFixture {
  pg: PgCluster;
  h: Harness;
  ca: TestCa;
  listener: PostgresListener;
  port: number;
  cancels: CancelRegistry;
  /** Count rows as the superuser, bypassing the gateway. */
  count(table: string): number;
  stop(): Promise<void>;
}

/**
 * `rules` is HCL appended to the policy (rules on `postgres.db`). The
 * credentials are chosen by placeholder: PH_scram, PH_md5, PH_plain.
 */
export async function startGatewayFixture(rules: string, opts: { bodyBuffer?: string } = {}): Promise<GatewayFixture> {
  const pg = await startPgCluster();
  pg.createUser('app_scram', PASSWORDS.scram, 'scram-sha-256');
  pg.createUser('app_md5', PASSWORDS.md5, 'md5');
  pg.createUser('app_plain', PASSWORDS.plain, 'password');
  pg.sql(`
    CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL);
    INSERT INTO accounts SELECT g, 'owner' || g, g * 10 FROM generate_series(1, 100) g;
    CREATE TABLE items (id int, label text);
    CREATE TABLE secrets (value text);
    GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON accounts, items, secrets TO app_scram, app_md5, app_plain;
    GRANT CREATE ON SCHEMA public TO app_scram, app_md5, app_plain;
  `);
  const hcl = `
schema_version = 1
gateway {
  local_profile = "default"
  limits {
    body_buffer = "${opts.bodyBuffer ?? '64KiB'}"
  }
}
endpoint "postgres" "db" {
  host    = "127.0.0.1:${pg.port}"
  sslmode = "disable"
}
credential "postgres_credential" "scram" {
  endpoint = postgres.db
  user     = "app_scram"
}
credential "postgres_credential" "md5" {
  endpoint = postgres.db
  user     = "app_md5"
}
credential "postgres_credential" "plain" {
  endpoint = postgres.db
  user     = "app_plain"
}
profile "default" {
  credentials = [
    { credential = postgres_credential.scram, placeholder = "PH_scram" },
    { credential = postgres_credential.md5, placeholder = "PH_md5" },
    { credential = postgres_credential.plain, placeholder = "PH_plain" },
  ]
}
${rules}
`;
  const h = await makeHarness(hcl, {
    'postgres_credential.scram': { password: PASSWORDS.scram },
    'postgres_credential.md5': { password: PASSWORDS.md5 },
    'postgres_credential.plain': { password: PASSWORDS.plain },
  });
  const ca = makeTestCa();
  const cancels = new CancelRegistry();
  const listener = await startPostgresListener({
    endpoint: 'postgres.db',
    listen: '127.0.0.1:0',
    enforcer: h.enforcer,
    policy: () => h.policy,
    ca: { leaf: (host) => ca.leaf(host) },
    cancels,
    profile: 'default',
  });
  return {
    pg,
    h,
    ca,
    listener,
    port: listener.address.port,
    cancels,
    count: (table) => Number(pg.sql(`SELECT count(*) FROM ${table}`).trim()),
    async stop() {
      await listener.close();
      await pg.stop();
      ca.cleanup();
      h.cleanup();
    },
  };
}

export interface PsqlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the real psql against the gateway (never prompts for a password). */
export function psql(
  port: number,
  args: string[],
  opts: { user?: string; sslmode?: string; env?: Record<string, string>; input?: string; onSpawn?: (pid: number) => void; timeoutMs?: number } = {},
): Promise<PsqlResult> {
  return new Promise((resolve) => {
    const child = spawn(
      '/usr/bin/psql',
      ['-X', '-w', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', opts.user ?? 'PH_scram', '-d', 'postgres', ...args],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PGSSLMODE: opts.sslmode ?? 'disable', PGCONNECT_TIMEOUT: '10', ...opts.env },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (child.pid && opts.onSpawn) opts.onSpawn(child.pid);
    child.stdin.end(opts.input ?? '');
  });
}
