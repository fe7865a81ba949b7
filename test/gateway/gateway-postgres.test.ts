/**
 * The composition root with the Postgres engine: an endpoint `listen`
 * address served with `gateway.local_profile`, real psql in front, a real
 * PostgreSQL 15 behind, the password only in the vault.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.js';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';

const PASSWORD = 'pg-canary-5be1a7c3';

describe('clawpatrol gateway with a Postgres endpoint', () => {
  let dir: string;
  let pg: PgCluster;
  let gw: RunningGateway;
  let port: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cp-gwpg-'));
    pg = await startPgCluster();
    pg.createUser('agent_ro', PASSWORD);
    pg.sql('CREATE TABLE orders (id int primary key, status text); INSERT INTO orders VALUES (1, \'new\'), (2, \'paid\'); GRANT SELECT, DELETE ON orders TO agent_ro;');
    writeFileSync(
      join(dir, 'policy.hcl'),
      `schema_version = 1
gateway {
  state_dir        = "${join(dir, 'state')}"
  dashboard_listen = "127.0.0.1:0"
}
endpoint "postgres" "db" {
  host    = "127.0.0.1:${pg.port}"
  sslmode = "disable"
  listen  = "127.0.0.1:0"
}
credential "postgres_credential" "ro" {
  endpoint = postgres.db
  user     = "agent_ro"
}
profile "default" {
  credentials = [postgres_credential.ro]
}
rule "reads" {
  endpoint  = postgres.db
  condition = "sets.contains(['connect', 'select'], sql.verbs)"
  verdict   = "allow"
}
rule "default-deny" {
  endpoint = postgres.db
  priority = -100
  verdict  = "deny"
  reason   = "read-only for agents"
}
`,
    );
    gw = await startGateway({
      configPath: join(dir, 'policy.hcl'),
      env: { ...process.env, CLAWPATROL_SECRET_RO_PASSWORD: PASSWORD, CLAWPATROL_STATE_DIR: '' },
      log: () => {},
    });
    const ingress = gw.ingress.find((i) => i.endpointId === 'postgres.db');
    port = Number(ingress!.address.split(':').pop());
  });

  afterAll(async () => {
    await gw?.close();
    await pg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function psql(sql: string): Promise<{ code: number | null; out: string; err: string }> {
    return new Promise((resolve) => {
      const child = spawn('psql', ['-X', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'agent_ro', '-d', 'postgres', '-c', sql], {
        env: { ...process.env, PGPASSWORD: '', PGCONNECT_TIMEOUT: '10', PGSSLMODE: 'disable' },
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('close', (code) => resolve({ code, out, err }));
    });
  }

  it('lets reads through with the vault password, which the agent never holds', async () => {
    const r = await psql('SELECT status FROM orders ORDER BY id');
    expect(r.err).toBe('');
    expect(r.out.trim().split('\n')).toEqual(['new', 'paid']);
    expect(r.out + r.err).not.toContain(PASSWORD);
  });

  it('denies a write with 42501 and the rule reason; the table is unchanged', async () => {
    const r = await psql('DELETE FROM orders');
    expect(r.code).not.toBe(0);
    expect(r.err).toContain('read-only for agents');
    expect(pg.sql('SELECT count(*) FROM orders').trim()).toBe('2');
  });

  it('denies a write hidden in a CTE', async () => {
    const r = await psql('WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d');
    expect(r.code).not.toBe(0);
    expect(pg.sql('SELECT count(*) FROM orders').trim()).toBe('2');
  });

  it('audits every statement with its decision', async () => {
    await gw.audit.flush();
    const rows: Array<{ outcome: string; rule: string }> = [];
    const { auditRows } = await import('../../src/audit/index.js');
    for await (const row of auditRows(gw.store)) rows.push(JSON.parse(row.record) as { outcome: string; rule: string });
    expect(rows.some((r) => r.outcome === 'allow' && r.rule === 'reads')).toBe(true);
    expect(rows.filter((r) => r.outcome === 'deny' && r.rule === 'default-deny').length).toBeGreaterThanOrEqual(2);
    expect(JSON.stringify(rows)).not.toContain(PASSWORD);
  });
});
