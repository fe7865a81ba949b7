/**
 * `clawpatrol validate` and `clawpatrol test` as a user runs them: the built
 * binary (`npm run build` first), real files, exit codes and output.
 */
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HEADER, writePolicyDir, tempDir } from './helpers.js';

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['dist/cli/main.js', ...args], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const POLICY = `${HEADER}
endpoint "https" "github" { hosts = ["api.github.com"] }
credential "bearer_token" "github" { endpoint = https.github }
rule "github-writes" {
  endpoint  = https.github
  condition = "http.method in ['POST', 'DELETE']"
  verdict   = "deny"
  reason    = "read-only"
}
`;

function fixture(method: string, want: Record<string, unknown>): string {
  return JSON.stringify({
    action: { host: 'api.github.com', credential: 'github', http: { method, path: '/repos/acme/app/issues/1', query: {}, headers: { Authorization: ['***'] }, body: '' } },
    match: want,
  });
}

describe('clawpatrol validate', () => {
  it('a valid directory: counts on stdout, exit 0', () => {
    const r = run('validate', 'policies/');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('policies/: valid — 6 endpoints, 16 rules, 2 profiles, 8 credentials, 4 approvers\n');
    expect(r.stderr).toBe('');
  });

  it('an invalid file: diagnostics on stderr in the exact format, exit 1', () => {
    const dir = writePolicyDir({ 'db.hcl': POLICY.replace('endpoint  = https.github', 'endpoint  = https.githb') });
    const file = join(dir, 'db.hcl');
    const r = run('validate', file);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`error: ${file}:6:15: Unknown variable — there is no endpoint named "githb"; did you mean "github"?\n`);
    expect(r.stderr).toContain(`${file}: invalid — 1 error\n`);
  });

  it('--json', () => {
    const r = run('validate', 'policies/', '--json');
    expect(r.status).toBe(0);
    const body = JSON.parse(r.stdout) as { valid: boolean; counts: Record<string, number>; files: string[] };
    expect(body.valid).toBe(true);
    expect(body.counts).toEqual({ endpoints: 6, rules: 16, profiles: 2, credentials: 8, approvers: 4 });
    expect(body.files).toEqual(readdirSync('policies').filter((f) => f.endsWith('.hcl')).sort().map((f) => join('policies', f)));

    const dir = writePolicyDir({ 'p.hcl': `${HEADER}rule "r" {}\n` });
    const bad = run('validate', dir, '--json');
    expect(bad.status).toBe(1);
    const report = JSON.parse(bad.stdout) as { valid: boolean; diagnostics: Array<Record<string, unknown>> };
    expect(report.valid).toBe(false);
    expect(report.diagnostics.find((d) => d['severity'] === 'error')).toMatchObject({ severity: 'error', file: join(dir, 'p.hcl'), line: 2, col: 1, summary: 'Missing required argument' });
  });

  it('usage errors exit 2', () => {
    expect(run('validate').status).toBe(2);
    const missing = run('validate', '/nonexistent/policy.hcl');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('no such file or directory');
    expect(run('validate', 'policies/', '--frobnicate').status).toBe(2);
  });

  it('--help', () => {
    const r = run('validate', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: clawpatrol validate [options] <policy>');
  });
});

describe('clawpatrol test', () => {
  it('replays the bundled fixtures against the bundled policies', () => {
    const r = run('test', 'policies/', 'fixtures/');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    const summary = lines.pop()!;
    expect(summary).toMatch(/^(\d+) passed, 0 failed$/);
    expect(lines.every((l) => l.startsWith('ok    fixtures/'))).toBe(true);
    expect(Number(/^(\d+)/.exec(summary)![1])).toBe(lines.length);
  });

  it('all passing: ok lines, summary, exit 0', () => {
    const dir = writePolicyDir({
      'policy.hcl': POLICY,
      'fx/read.json': fixture('GET', { verdict: 'allow', rule: '', endpoint: 'https.github' }),
      'fx/delete.json': fixture('DELETE', { verdict: 'deny', rule: 'github-writes', endpoint: 'https.github', credential: 'github' }),
    });
    const r = run('test', join(dir, 'policy.hcl'), join(dir, 'fx'));
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`ok    ${join(dir, 'fx/delete.json')}\nok    ${join(dir, 'fx/read.json')}\n2 passed, 0 failed\n`);
  });

  it('a mismatch: FAIL with want and got, exit 1', () => {
    const dir = writePolicyDir({
      'policy.hcl': POLICY,
      'fx/delete.json': fixture('DELETE', { verdict: 'allow', rule: '' }),
      'fx/read.json': fixture('GET', { verdict: 'allow' }),
    });
    const r = run('test', join(dir, 'policy.hcl'), join(dir, 'fx'));
    expect(r.status).toBe(1);
    expect(r.stdout).toBe(
      [
        `FAIL  ${join(dir, 'fx/delete.json')}`,
        '      want: verdict=allow rule=""',
        '      got:  verdict=deny rule=github-writes (read-only)',
        `ok    ${join(dir, 'fx/read.json')}`,
        '1 passed, 1 failed',
        '',
      ].join('\n'),
    );
  });

  it('malformed fixtures: FAIL with the reason, exit 1', () => {
    const dir = writePolicyDir({
      'policy.hcl': POLICY,
      'fx/a-typo.json': JSON.stringify({ acton: {}, match: { verdict: 'allow' } }),
      'fx/b-not-json.json': '{ "action": ',
      'fx/c-two-families.json': JSON.stringify({
        action: { host: 'x', http: { method: 'GET', path: '/' }, sql: { statement: 'select 1' } },
        match: { verdict: 'allow' },
      }),
      'fx/d-bad-verdict.json': JSON.stringify({ action: { host: 'x', http: { method: 'GET', path: '/' } }, match: { verdict: 'ok' } }),
      'fx/e-unknown-http-key.json': JSON.stringify({ action: { host: 'x', http: { method: 'GET', path: '/', header: {} } }, match: { verdict: 'allow' } }),
    });
    const r = run('test', join(dir, 'policy.hcl'), join(dir, 'fx'));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(`FAIL  ${join(dir, 'fx/a-typo.json')}\n      bad fixture: unknown key "acton" in fixture; did you mean "action"?\n`);
    expect(r.stdout).toContain(`FAIL  ${join(dir, 'fx/b-not-json.json')}\n      bad fixture: not valid JSON:`);
    expect(r.stdout).toContain('bad fixture: fixture.action needs exactly one of "http", "sql", "k8s" or "raw" (found http, sql)');
    expect(r.stdout).toContain('bad fixture: fixture.match.verdict must be "allow", "deny" or "approve"');
    expect(r.stdout).toContain('bad fixture: unknown key "header" in fixture.action.http; did you mean "headers"?');
    expect(r.stdout.trim().split('\n').pop()).toBe('0 passed, 5 failed');
  });

  it('SQL fixtures go through the real parser; stated facts that disagree with it fail the fixture', () => {
    const dir = writePolicyDir({
      'policy.hcl': `${HEADER}
endpoint "postgres" "db" { host = "db.internal:5432" }
rule "no-deletes" {
  endpoint  = postgres.db
  condition = "'delete' in sql.verbs"
  verdict   = "deny"
}
`,
      'fx/cte.json': JSON.stringify({
        action: { host: 'db.internal', port: 5432, sql: { statement: 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', verbs: ['select'] } },
        match: { verdict: 'deny' },
      }),
      'fx/hidden.json': JSON.stringify({
        action: { host: 'db.internal', port: 5432, sql: { statement: 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', verb: 'DELETE', tables: ['t'] } },
        match: { verdict: 'deny', rule: 'no-deletes' },
      }),
      'fx/garbage.json': JSON.stringify({
        action: { host: 'db.internal', port: 5432, sql: { statement: 'SELECT 1 /* unterminated' } },
        match: { verdict: 'deny', rule: 'no-deletes', failClosed: true },
      }),
    });
    const r = run('test', join(dir, 'policy.hcl'), join(dir, 'fx'));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(
      `FAIL  ${join(dir, 'fx/cte.json')}\n      bad fixture: the fixture's SQL facts disagree with the parser:\n        sql.verbs: the fixture says ["select"], the parser says ["delete", "select"]\n`,
    );
    expect(r.stdout).toContain(`ok    ${join(dir, 'fx/garbage.json')}\n`);
    expect(r.stdout).toContain(`ok    ${join(dir, 'fx/hidden.json')}\n`);
  });

  it('raw fixtures need a protocol parser for the endpoint', () => {
    const dir = writePolicyDir({
      'policy.hcl': `${HEADER}endpoint "clickhouse_http" "ch" { hosts = ["ch.internal:8123"] }\n`,
      'fx/raw.json': JSON.stringify({ action: { host: 'ch.internal', port: 8123, raw: Buffer.from('GET / HTTP/1.1\r\n\r\n').toString('base64') }, match: { verdict: 'allow' } }),
      'fx/nowhere.json': JSON.stringify({ action: { host: 'elsewhere', raw: 'AAAA' }, match: { verdict: 'allow' } }),
    });
    const r = run('test', join(dir, 'policy.hcl'), join(dir, 'fx'));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('bad fixture: raw fixture: clickhouse_http endpoints have no raw fixture parser yet');
    expect(r.stdout).toContain('bad fixture: raw fixture: no endpoint for host "elsewhere", so no protocol parser to replay it');
  });

  it('an invalid policy or a missing path exits 2', () => {
    const dir = writePolicyDir({ 'policy.hcl': `${HEADER}rule "r" {}\n`, 'fx/a.json': fixture('GET', { verdict: 'allow' }) });
    const r = run('test', join(dir, 'policy.hcl'), join(dir, 'fx'));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`error: ${join(dir, 'policy.hcl')}:2:1: Missing required argument`);
    expect(run('test', 'policies/').status).toBe(2);
    expect(run('test', 'policies/', '/nonexistent').status).toBe(2);
    const empty = tempDir();
    mkdirSync(join(empty, 'none'));
    const none = run('test', 'policies/', join(empty, 'none'));
    expect(none.status).toBe(2);
    expect(none.stderr).toContain('no *.json fixtures found');
  });

  it('--json', () => {
    const dir = writePolicyDir({ 'policy.hcl': POLICY });
    writeFileSync(join(dir, 'one.json'), fixture('DELETE', { verdict: 'deny', rule: 'github-writes' }));
    const r = run('test', join(dir, 'policy.hcl'), join(dir, 'one.json'), '--json');
    expect(r.status).toBe(0);
    const body = JSON.parse(r.stdout) as { passed: number; failed: number; results: Array<{ ok: boolean; got: { verdict: string; credential: string } }> };
    expect(body).toMatchObject({ passed: 1, failed: 0 });
    expect(body.results[0]).toMatchObject({ ok: true, got: { verdict: 'deny', credential: 'bearer_token.github' } });
  });

  it('--help', () => {
    const r = run('test', '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: clawpatrol test [options] <config> <fixtures>');
  });
});
