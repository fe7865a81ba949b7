/**
 * Adversarial edges of the policy core: what a hostile agent (or a careless
 * policy author) can make a condition do — regular expressions that would
 * backtrack for ever, RE2 syntax JS does not have — and HCL/reload edges.
 */
import { describe, it, expect } from 'vitest';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPolicy, PolicyWatcher } from '../../src/policy/index.js';
import type { CompiledPolicy } from '../../src/policy/compiled.js';
import { actionsFromFixture, parseFixture } from '../../src/policy/fixtures.js';
import { diagnose, HEADER, httpAction, oneRule, sqlAction, tempDir, writePolicyDir } from './helpers.js';

/** The load errors of a one-rule https policy with this condition (on line 6). */
async function conditionErrors(condition: string) {
  const diags = await diagnose(`${HEADER}
endpoint "https" "api" { hosts = ["api.example.com"] }
rule "r" {
  endpoint  = https.api
  condition = ${JSON.stringify(condition)}
  verdict   = "deny"
}
`);
  return diags.filter((d) => d.severity === 'error');
}

describe('matches(): RE2 syntax in linear time', () => {
  it('a backtracking-prone pattern over an agent-controlled body answers at once (the event loop is not pinned)', async () => {
    const p = await oneRule('http', "http.body.matches('^(a+)+$')");
    // 2^40 paths for a backtracking engine; the linear engine answers immediately.
    const d = p.decide(httpAction('api.example.com', { method: 'POST', body: `${'a'.repeat(40)}!` }));
    expect(d.rule).toBe('');
    expect(p.decide(httpAction('api.example.com', { method: 'POST', body: 'aaaa' })).rule).toBe('r');
  });

  it('a pattern taken from a fact (the agent chooses it) cannot backtrack either', async () => {
    const p = await oneRule('http', "'x-pattern' in http.headers && http.body.matches(http.headers['x-pattern'])");
    const d = p.decide(httpAction('api.example.com', { body: `${'a'.repeat(40)}!`, headers: { 'x-pattern': '^(a|aa)+$' } }));
    expect(d.rule).toBe('');
    expect(d.failClosed).toBe(false);
  });

  it("RE2's leading flag group (?i) works as in CEL rather than failing closed on every action", async () => {
    const p = await oneRule('http', "http.path.matches('(?i)^/admin')");
    expect(p.decide(httpAction('api.example.com', { path: '/ADMIN/users' })).rule).toBe('r');
    const other = p.decide(httpAction('api.example.com', { path: '/public' }));
    expect(other.rule).toBe('');
    expect(other.failClosed).toBe(false);
  });

  it.each([
    ['http.path.matches(\'[\')', 'invalid regular expression'],
    ["http.path.matches('(a)\\\\1')", 'invalid regular expression'],
    ["matches(http.path, '(?<=a)b')", 'invalid regular expression'],
  ])('a literal pattern that cannot run is a load error at the pattern: %s', async (cond, message) => {
    const errors = await conditionErrors(cond);
    expect(errors).toHaveLength(1);
    expect(`${errors[0]!.summary} ${errors[0]!.hint}`).toContain(message);
    expect(errors[0]!.pos.line).toBe(6);
  });

  it('RE2 anchors \\A and \\z mean start and end of text, not the letters A and z', async () => {
    const p = await oneRule('http', "http.path.matches('\\\\A/admin\\\\z')");
    expect(p.decide(httpAction('api.example.com', { path: '/admin' })).rule).toBe('r');
    expect(p.decide(httpAction('api.example.com', { path: '/admin/x' })).rule).toBe('');
  });

  it.each(["http.path.matches('\\\\pL')", "http.path.matches('[[:alpha:]]')", "http.path.matches('\\\\Q.\\\\E')"])(
    'an RE2 construct JS would read as plain letters is a load error: %s',
    async (cond) => {
      expect((await conditionErrors(cond)).map((d) => d.hint)).toEqual([expect.stringContaining('invalid regular expression')]);
    },
  );

  it('a pattern from a fact that does not compile fails closed naming the rule, and is absorbed by || like any error', async () => {
    const p = await oneRule('http', "http.path.matches(http.headers['x-p'])");
    const d = p.decide(httpAction('api.example.com', { headers: { 'x-p': '(' } }));
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true, rule: 'r' });
    expect(d.reason).toContain('invalid regular expression');
    // CEL's global form runs on the same engine.
    const g = await oneRule('http', "matches(http.body, '(?i)^(a+)+$')");
    expect(g.decide(httpAction('api.example.com', { body: `${'A'.repeat(40)}!` })).rule).toBe('');
    expect(g.decide(httpAction('api.example.com', { body: 'aA' })).rule).toBe('r');
    const q = await oneRule('http', "http.path.matches(http.headers['x-p']) || http.method == 'get'", 'allow');
    expect(q.decide(httpAction('api.example.com', { headers: { 'x-p': '(' } }))).toMatchObject({ verdict: 'allow', rule: 'r' });
  });
});

describe('HCL numbers and bytes', () => {
  it('a priority beyond 2^53 is refused: it would be rounded and tie with (or lose to) a lower one', async () => {
    const diags = await diagnose(`${HEADER}
endpoint "https" "api" { hosts = ["api.example.com"] }
rule "catch-all" {
  endpoint = https.api
  priority = 9007199254740992
  verdict  = "allow"
}
rule "block-admin" {
  endpoint = https.api
  priority = 9007199254740993
  verdict  = "deny"
}
`);
    const errors = diags.filter((d) => d.severity === 'error');
    expect(errors.map((d) => [d.pos.line, d.summary])).toEqual([
      [6, 'Invalid value'],
      [11, 'Invalid value'],
    ]);
  });

  it('bytes that are not UTF-8 are an error at their line and column, not silently U+FFFD', async () => {
    const dir = writePolicyDir({});
    const text = Buffer.concat([
      Buffer.from(`${HEADER}endpoint "https" "api" { hosts = ["api.example.com"] }\nrule "r" {\n  endpoint  = https.api\n  condition = "http.path == '/caf`),
      Buffer.from([0xe9]), // Latin-1 é
      Buffer.from(`'"\n  verdict   = "deny"\n}\n`),
    ]);
    writeFileSync(join(dir, 'policy.hcl'), text);
    const r = await loadPolicy(join(dir, 'policy.hcl'));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.diagnostics).toHaveLength(1);
    expect(r.diagnostics[0]).toMatchObject({ summary: 'Invalid UTF-8', pos: { line: 5, col: 34 } });
  });
});

describe('hot reload of a Kubernetes ConfigMap volume (files reached through a swapped `..data` symlink)', () => {
  const policyText = (verdict: 'allow' | 'deny') => `${HEADER}
endpoint "https" "x" { hosts = ["x.example.com"] }
rule "r" {
  endpoint = https.x
  verdict  = "${verdict}"
}
`;

  /** Lays a directory out as the kubelet does: `policy.hcl -> ..data/policy.hcl`, `..data -> ..<version>`. */
  function configMapDir(verdict: 'allow' | 'deny'): string {
    const dir = tempDir();
    mkdirSync(join(dir, '..v1'));
    writeFileSync(join(dir, '..v1', 'policy.hcl'), policyText(verdict));
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync('..data/policy.hcl', join(dir, 'policy.hcl'));
    return dir;
  }

  /** The kubelet's atomic update: a new version directory, a new link renamed over `..data`, the old version removed. */
  function swap(dir: string, verdict: 'allow' | 'deny'): void {
    mkdirSync(join(dir, '..v2'));
    writeFileSync(join(dir, '..v2', 'policy.hcl'), policyText(verdict));
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, '..v1'), { recursive: true });
  }

  it.each(['directory', 'file'] as const)('%s mode: the swapped policy is put in force', async (mode) => {
    const dir = configMapDir('allow');
    const w = await PolicyWatcher.start(mode === 'directory' ? dir : join(dir, 'policy.hcl'), { debounceMs: 50, log: () => {} });
    try {
      expect(w.current().decide(httpAction('x.example.com')).verdict).toBe('allow');
      const reloaded = new Promise<CompiledPolicy>((res, rej) => {
        const t = setTimeout(() => rej(new Error('no reload within 3 s')), 3000);
        w.once('reload', (p: CompiledPolicy) => {
          clearTimeout(t);
          res(p);
        });
      });
      swap(dir, 'deny');
      await reloaded;
      expect(w.current().decide(httpAction('x.example.com')).verdict).toBe('deny');
    } finally {
      await w.close();
    }
  });
});

describe('case-insensitive verbs inside comprehensions (a deny rule written so never matched)', () => {
  it.each([
    ["sql.verbs.exists(v, v == 'DROP')", ['select', 'drop'], true],
    ["sql.verbs.exists(v, v in ['DROP', 'Truncate'])", ['truncate'], true],
    ["sql.verbs.exists(v, v.startsWith('DR'))", ['drop'], true],
    ["sql.verbs.all(v, v != 'SELECT')", ['select'], false],
    ["sql.verbs.exists(v, v == 'DROP')", ['select'], false],
    // The same name bound again to something else is not folded.
    ["sql.verbs.exists(v, sql.tables.exists(v, v == 'Users'))", ['select'], false],
  ] as const)('%s over verbs %j → match %s', async (cond, verbs, matches) => {
    const p = await oneRule('sql', cond);
    expect(p.decide(sqlAction('db.example.com', { verb: verbs[0], verbs: [...verbs], tables: ['users'] })).rule).toBe(matches ? 'r' : '');
  });

  it('a literal list iterated against http.method', async () => {
    const p = await oneRule('http', "['POST', 'Put'].exists(m, http.method == m)");
    expect(p.decide(httpAction('api.example.com', { method: 'PUT' })).rule).toBe('r');
    expect(p.decide(httpAction('api.example.com', { method: 'GET' })).rule).toBe('');
    // A literal list compared with something else keeps its case.
    const q = await oneRule('http', "['/Admin'].exists(x, http.path == x)");
    expect(q.decide(httpAction('api.example.com', { path: '/admin' })).rule).toBe('');
    expect(q.decide(httpAction('api.example.com', { path: '/Admin' })).rule).toBe('r');
  });
});

describe('more places a literal meets a case-insensitive value', () => {
  it("'POST' in [http.method]", async () => {
    const p = await oneRule('http', "'POST' in [http.method]");
    expect(p.decide(httpAction('api.example.com', { method: 'POST' })).rule).toBe('r');
  });

  it('header names met in a comprehension over http.headers', async () => {
    const p = await oneRule('http', "http.headers.exists(k, k == 'X-Debug')");
    expect(p.decide(httpAction('api.example.com', { headers: { 'x-debug': '1' } })).rule).toBe('r');
    expect(p.decide(httpAction('api.example.com', { headers: { 'x-other': '1' } })).rule).toBe('');
  });
});

describe('fixtures that state facts the engine would not produce', () => {
  const fixture = (http: Record<string, unknown>) =>
    parseFixture({ action: { host: 'api.example.com', http: { method: 'POST', path: '/', ...http } }, match: { verdict: 'allow' } }, 'f.json');

  it('a body_json that disagrees with the body is a bad fixture (live, body_json is always the parsed body)', async () => {
    const p = await oneRule('http', 'http.body_json.admin == true');
    const f = fixture({ body: '{"admin": true}', body_json: { admin: false } });
    if ('error' in f) throw new Error(f.error);
    const prepared = await actionsFromFixture(f, p);
    expect(prepared.ok).toBe(false);
    if (!prepared.ok) expect(prepared.error).toContain('body_json disagrees');
  });

  it('body_json alone, or agreeing with the body, is replayed', async () => {
    const p = await oneRule('http', 'http.body_json.admin == true');
    for (const http of [{ body_json: { admin: true } }, { body: '{"admin": true}', body_json: { admin: true } }]) {
      const f = fixture(http);
      if ('error' in f) throw new Error(f.error);
      const prepared = await actionsFromFixture(f, p);
      if (!prepared.ok) throw new Error(prepared.error);
      expect(p.decide(prepared.actions[0]!).rule).toBe('r');
    }
  });
});
