/**
 * `clawpatrol audit …` through the built binary (run `npm run build` first),
 * against a log written by the real AuditLog with the vault-derived key.
 */
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, type Store } from '../../src/store/index.js';
import { openVault } from '../../src/vault/index.js';
import { AuditLog, AUDIT_KEY_PURPOSE } from '../../src/audit/index.js';
import { record } from './records.js';
import { editStoredRows, storedRows, writeStoredRows } from './support/stored-log.js';

// Every test spawns the CLI a few times; on a loaded 2-core box one spawn can take seconds.
vi.setConfig({ testTimeout: 120_000 });

let root: string;
let stateDir: string;
let policy: string;
let store: Store;
let log: AuditLog;

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['dist/cli/main.js', ...args], {
    encoding: 'utf8',
    env: { ...process.env, CLAWPATROL_STATE_DIR: '', CLAWPATROL_VAULT_KEY: '', ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'clawpatrol-audit-cli-'));
  stateDir = join(root, 'state');
  policy = join(root, 'gateway.hcl');
  writeFileSync(policy, `gateway {\n  state_dir = "${stateDir}"\n  proxy { listen = "127.0.0.1:3128" }\n}\n`);
  store = await openStore({ stateDir });
  const vault = await openVault({ store, stateDir, model: () => ({ credentials: new Map() }), env: {}, refreshMs: 0 });
  log = new AuditLog({ store, key: vault.subkey(AUDIT_KEY_PURPOSE) });
  const base = Date.now() - 100 * 60_000; // record i written i minutes after base
  for (let i = 1; i <= 100; i++) log.append(record(i, { time: new Date(base + i * 60_000).toISOString() }));
  await log.flush();
});
afterAll(async () => {
  await log.close();
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

describe('clawpatrol audit', () => {
  it('verify: exit 0 with the count on an intact log', () => {
    const r = cli(['audit', 'verify', '--config', policy]);
    expect(r.stdout).toBe('audit log intact: 100 records verified (records 1–100)\n');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const j = cli(['audit', 'verify', '--config', policy, '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: true, count: 100, log: `sqlite:${join(stateDir, 'state.db')}` });
  });

  it('export --format jsonl round-trips through verify --input; --since filters', () => {
    const r = cli(['audit', 'export', '--config', policy, '--format', 'jsonl']);
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(100);
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(first).toMatchObject({ seq: 1, prev_hash: '0'.repeat(64), host: 'api.github.com' });
    expect(first.hash).toMatch(/^[0-9a-f]{64}$/);
    const file = join(root, 'export.jsonl');
    expect(cli(['audit', 'export', '--config', policy, '--output', file]).stderr).toBe(`exported 100 records to ${file}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toBe(r.stdout);
    const v = cli(['audit', 'verify', '--config', policy, '--input', file]);
    expect(v.status).toBe(0);
    expect(v.stdout).toBe('audit log intact: 100 records verified (records 1–100)\n');
    expect(v.stderr).toContain('note: no head to compare with');
    const recent = cli(['audit', 'export', '--config', policy, '--since', '30m']);
    const seqs = recent.stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seqs[0]).toBeGreaterThanOrEqual(70);
    expect(seqs[0]).toBeLessThanOrEqual(76); // the clock moves on while the suite runs
    expect(seqs[seqs.length - 1]).toBe(100);
    const iso = cli(['audit', 'export', '--config', policy, '--since', new Date(Date.now() + 60_000).toISOString()]);
    expect(iso.stdout).toBe('');
  });

  it('usage errors exit 2', () => {
    expect(cli(['audit', 'export', '--config', policy, '--format', 'csv'])).toMatchObject({ status: 2, stderr: 'clawpatrol audit export: --format csv: only jsonl is supported\n' });
    expect(cli(['audit', 'export', '--config', policy, '--since', 'yesterday']).status).toBe(2);
    expect(cli(['audit', 'verify']).status).toBe(2);
    expect(cli(['audit', 'verify', '--config', policy, '--input', join(root, 'missing.jsonl')]).status).toBe(2);
    expect(cli(['audit', 'tail', '--config', policy, '-n', 'x']).status).toBe(2);
  });

  it('tail prints the latest records; --json prints export lines', () => {
    const r = cli(['audit', 'tail', '--config', policy, '-n', '3']);
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatch(/^\S+Z  #100  allow  peer-2  https\.github  GET \/repos\/acme\/app\/issues\/100  status=200$/);
    expect(lines[1]).toMatch(/#99  deny   peer-1  https\.github  GET \/repos\/acme\/app\/issues\/99  status=200  rule=github-writes  "writes need approval"$/);
    const j = cli(['audit', 'tail', '--config', policy, '-n', '2', '--json']);
    expect(j.stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([99, 100]);
  });

  it('tail -f prints new records as they are written and exits 0 on SIGINT', async () => {
    const child = spawn(process.execPath, ['dist/cli/main.js', 'audit', 'tail', '--config', policy, '-n', '1', '-f'], {
      env: { ...process.env, CLAWPATROL_STATE_DIR: '' },
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (out += d));
    await expect.poll(() => out, { timeout: 60_000 }).toContain('#100');
    log.append(record(101, { time: new Date().toISOString(), facts: { sql: { verb: 'drop', statement: 'DROP TABLE users' } }, endpoint: 'postgres.pg' }));
    await log.flush();
    await expect.poll(() => out, { timeout: 60_000 }).toContain('#101');
    expect(out).toMatch(/#101  \w+\s+peer-3  postgres\.pg  drop DROP TABLE users/);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    expect(code).toBe(0);
  });

  // Runs last: it tampers with the log.
  it('verify: exit 1 naming the first tampered record', () => {
    const db = new Database(join(stateDir, 'state.db'));
    const original = storedRows(db);
    editStoredRows(db, (rows) => rows.map((r) => (r.seq === 42 ? { ...r, record: r.record.replace('"outcome":"deny"', '"outcome":"allow"') } : r)));
    let r = cli(['audit', 'verify', '--config', policy]);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe(
      'audit log FAILED verification at record 42: record 42 was edited: its content does not match its hash\n' +
        `41 records verified before it (sqlite:${join(stateDir, 'state.db')})\n`,
    );
    // A segment damaged in the database: tail shows the rest and says which record it cannot read; export stops there.
    writeStoredRows(db, original);
    db.prepare("UPDATE audit_segments SET codec = 'deflate-raw', body = x'00ff00ff' WHERE first_seq = 50").run();
    const tail = cli(['audit', 'tail', '--config', policy, '-n', '52']);
    expect(tail.status).toBe(0);
    const tailLines = tail.stdout.trimEnd().split('\n');
    expect(tailLines).toHaveLength(52);
    expect(tailLines[0]).toMatch(/^-  #50  UNREADABLE  record 50 cannot be read: the stored segment of records 50–50 cannot be decoded/);
    expect(tailLines[1]).toMatch(/  #51  /);
    const exported = cli(['audit', 'export', '--config', policy]);
    expect(exported.status).toBe(1);
    expect(exported.stderr).toMatch(/^clawpatrol audit export: record 50 cannot be read: the stored segment of records 50–50 cannot be decoded .*\(run clawpatrol audit verify\)\n$/);
    writeStoredRows(db, original.filter((row) => row.seq <= 98));
    r = cli(['audit', 'verify', '--config', policy, '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, seq: 99, problem: 'truncated', count: 98 });
    db.close();
  });
});
