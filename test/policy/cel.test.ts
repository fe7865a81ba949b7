/**
 * CEL semantics as rules see them: case-insensitive facts, canonical header
 * names, the sets extension, unknown facts absorbed by &&/|| or failing
 * closed, missing keys, bodies over the limit, run-time errors.
 */
import { describe, it, expect } from 'vitest';
import { compile, HEADER, httpAction, sqlAction, k8sFacts, oneRule } from './helpers.js';
import { compileCondition } from '../../src/policy/cel.js';
import type { Action } from '../../src/policy/types.js';

function k8sAction(over: Parameters<typeof k8sFacts>[0] = {}, http = {}): Action {
  return {
    family: 'k8s',
    host: 'k8s.example.com',
    port: 6443,
    facts: { k8s: k8sFacts(over), ...(Object.keys(http).length ? { http: { ...httpAction('k8s.example.com', http).facts.http! } } : {}) },
  };
}

describe('case-insensitive facts', () => {
  it.each([
    ["http.method == 'post'", 'POST', true],
    ["http.method == 'POST'", 'post', true],
    ["http.method in ['Post', 'PUT']", 'POST', true],
    ["http.method != 'get'", 'GET', false],
    ["http.method.startsWith('PO')", 'post', true],
    ["sets.intersects([http.method], ['Post'])", 'POST', true],
    ["http.method == 'GET'", 'POST', false],
  ])('%s with method %s → %s', async (cond, method, matches) => {
    const p = await oneRule('http', cond);
    expect(p.decide(httpAction('api.example.com', { method })).rule).toBe(matches ? 'r' : '');
  });

  it('sql.verb and membership in sql.verbs', async () => {
    const p = await oneRule('sql', "sql.verb == 'DROP' || 'DELETE' in sql.verbs");
    expect(p.decide(sqlAction('db.example.com', { verb: 'drop', verbs: ['drop'] })).rule).toBe('r');
    expect(p.decide(sqlAction('db.example.com', { verb: 'select', verbs: ['select', 'delete'] })).rule).toBe('r');
    expect(p.decide(sqlAction('db.example.com', { verb: 'select', verbs: ['select'] })).rule).toBe('');
  });

  it('k8s.verb', async () => {
    const p = await oneRule('k8s', "k8s.verb in ['LIST', 'Watch']");
    expect(p.decide(k8sAction({ verb: 'list' })).rule).toBe('r');
    expect(p.decide(k8sAction({ verb: 'create' })).rule).toBe('');
  });

  it('only literals compared with those facts are folded, not other strings', async () => {
    const p = await oneRule('http', "http.method == 'POST' && http.path == '/Admin'");
    expect(p.decide(httpAction('api.example.com', { method: 'post', path: '/Admin' })).rule).toBe('r');
    expect(p.decide(httpAction('api.example.com', { method: 'post', path: '/admin' })).rule).toBe('');
  });

  it('canonical header names resolve against the lower-case header map', async () => {
    const p = await oneRule('http', "http.headers['Content-Type'].startsWith('application/json') && 'X-Api-Key' in http.headers");
    const a = httpAction('api.example.com', { headers: { 'content-type': 'application/json; charset=utf-8', 'x-api-key': 'k' } });
    expect(p.decide(a).rule).toBe('r');
  });

  it('k8s rules also see http facts', async () => {
    const p = await oneRule('k8s', "k8s.resource == 'pods' && http.method == 'get'");
    expect(p.decide(k8sAction({ resource: 'pods' }, { method: 'GET' })).rule).toBe('r');
  });
});

describe('the sets extension', () => {
  it.each([
    ["sets.contains(['a', 'b', 'c'], ['a', 'c'])", true],
    ["sets.contains(['a'], ['a', 'b'])", false],
    ["sets.contains(['a'], [])", true],
    ["sets.intersects(['a', 'b'], ['c', 'b'])", true],
    ["sets.intersects(['a'], ['b'])", false],
    ["sets.intersects([], ['b'])", false],
    ["sets.equivalent(['a', 'b', 'b'], ['b', 'a'])", true],
    ["sets.equivalent(['a'], ['a', 'b'])", false],
  ])('%s → %s', async (cond, matches) => {
    const p = await oneRule('http', cond);
    expect(p.decide(httpAction('api.example.com')).rule).toBe(matches ? 'r' : '');
  });

  it('over facts', async () => {
    const p = await oneRule('sql', "sets.intersects(sql.functions, ['pg_read_file', 'lo_export'])");
    expect(p.decide(sqlAction('db.example.com', { functions: ['now', 'pg_catalog.pg_read_file', 'pg_read_file'] })).rule).toBe('r');
    expect(p.decide(sqlAction('db.example.com', { functions: ['now'] })).rule).toBe('');
  });
});

describe('unknown facts: absorbed by && and ||, fail closed otherwise', () => {
  const uninspected = { inspected: false, verb: '', verbs: [], tables: [], functions: [], inspect_error: 'syntax error at end of input' };

  it('cel-js absorbs errors natively (verified here, relied on by decide)', () => {
    const c = compileCondition("sql.verb == 'drop' && false", 'sql');
    expect(c.ok).toBe(true);
    if (!c.ok) return;
    expect(c.condition.evaluate({ sql: { statement: 'x', database: 'd', user: 'u', inspected: false } })).toBe(false);
    const d = compileCondition("sql.verb == 'drop' || true", 'sql');
    if (!d.ok) throw new Error('compile');
    expect(d.condition.evaluate({ sql: { statement: 'x', database: 'd', user: 'u', inspected: false } })).toBe(true);
  });

  it('unknown && false → false: the rule does not match (and the SQL backstop then denies)', async () => {
    const p = await oneRule('sql', "sql.verb == 'drop' && sql.database == 'other'");
    const d = p.decide(sqlAction('db.example.com', { ...uninspected, database: 'app' }));
    expect(d).toMatchObject({ verdict: 'deny', rule: '', failClosed: true });
    expect(d.reason).toContain('could not be inspected (syntax error at end of input)');
  });

  it('unknown || true → true: the rule matches', async () => {
    const p = await oneRule('sql', "sql.verb == 'select' || sql.database == 'app'", 'allow');
    const d = p.decide(sqlAction('db.example.com', { ...uninspected, database: 'app' }));
    expect(d).toMatchObject({ verdict: 'allow', rule: 'r', failClosed: false });
  });

  it('unknown || false → a fail-closed deny by that rule, even for an allow rule', async () => {
    const p = await oneRule('sql', "sql.verb == 'select' || sql.database == 'other'", 'allow');
    const d = p.decide(sqlAction('db.example.com', { ...uninspected, database: 'app' }));
    expect(d).toMatchObject({ verdict: 'deny', effective: 'deny', rule: 'r', failClosed: true });
    expect(d.reason).toMatch(/^rule "r" could not be evaluated \(.*verb.*\); denied \(fail closed\)$/);
  });

  it('!unknown is unknown', async () => {
    const p = await oneRule('sql', "!('drop' in sql.verbs)", 'allow');
    expect(p.decide(sqlAction('db.example.com', uninspected))).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: true });
  });

  it('facts that stay known when the statement is not inspected', async () => {
    const p = await oneRule('sql', 'sql.inspected == false && sql.statement.size() > 0', 'deny');
    expect(p.decide(sqlAction('db.example.com', { ...uninspected, statement: 'SELEC 1' }))).toMatchObject({ rule: 'r', failClosed: false });
  });

  it('no SQL facts at all: the backstop denies', async () => {
    const p = await oneRule('sql', "sql.database == 'x'", 'allow');
    const d = p.decide({ family: 'sql', host: 'db.example.com', facts: {} });
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true });
  });
});

describe('missing keys and run-time errors fail closed, naming the rule', () => {
  it('a missing header', async () => {
    const p = await oneRule('http', "http.headers['x-team'] == 'payments'", 'allow');
    const d = p.decide(httpAction('api.example.com'));
    expect(d).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: true });
    expect(d.reason).toContain('No such key: x-team');
  });

  it('guards with `in` and has() do not fail', async () => {
    const p = await oneRule('http', "('x-team' in http.headers && http.headers['x-team'] == 'payments') || has(http.body_json.admin)", 'deny');
    expect(p.decide(httpAction('api.example.com')).rule).toBe('');
    expect(p.decide(httpAction('api.example.com', { body_json: { admin: true } })).rule).toBe('r');
  });

  it('a missing JSON field', async () => {
    const p = await oneRule('http', 'http.body_json.amount > 100', 'deny');
    expect(p.decide(httpAction('api.example.com', { body_json: { amount: 500 } }))).toMatchObject({ rule: 'r', failClosed: false });
    expect(p.decide(httpAction('api.example.com', { body_json: { amount: 5 } })).rule).toBe('');
    expect(p.decide(httpAction('api.example.com', { body_json: {} }))).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: true });
  });

  it('a conversion error', async () => {
    const p = await oneRule('http', "int(http.query['limit'][0]) > 100", 'deny');
    expect(p.decide(httpAction('api.example.com', { query: { limit: ['1000'] } }))).toMatchObject({ rule: 'r', failClosed: false });
    expect(p.decide(httpAction('api.example.com', { query: { limit: ['lots'] } }))).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: true });
  });

  it('a dyn condition that is not a bool at run time', async () => {
    const p = await oneRule('http', 'http.body_json.flag', 'allow');
    expect(p.decide(httpAction('api.example.com', { body_json: { flag: true } })).verdict).toBe('allow');
    const d = p.decide(httpAction('api.example.com', { body_json: { flag: 'yes' } }));
    expect(d).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: true });
    expect(d.reason).toContain('did not evaluate to a bool');
  });
});

describe('bodies over the limit', () => {
  it('body and body_json are unknown: a rule reading them fails closed', async () => {
    const p = await oneRule('http', "http.body.contains('password')", 'deny');
    const d = p.decide(httpAction('api.example.com', { method: 'POST', body: '', body_truncated: true }));
    expect(d).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: true });
    const j = await oneRule('http', "http.body_json.action == 'delete'", 'deny');
    expect(j.decide(httpAction('api.example.com', { body_truncated: true, body_json: { action: 'read' } }))).toMatchObject({ failClosed: true });
  });

  it('rules that do not read the body are unaffected, and body_truncated is a fact', async () => {
    const p = await oneRule('http', "http.method == 'GET'", 'allow');
    expect(p.decide(httpAction('api.example.com', { body_truncated: true }))).toMatchObject({ verdict: 'allow', rule: 'r', failClosed: false });
    const t = await oneRule('http', 'http.body_truncated', 'deny');
    expect(t.decide(httpAction('api.example.com', { body_truncated: true }))).toMatchObject({ rule: 'r', failClosed: false });
    expect(t.decide(httpAction('api.example.com')).rule).toBe('');
  });

  it('needsFact tells engines which endpoints need the body or statement', async () => {
    const p = await compile(`${HEADER}
endpoint "https" "a" { hosts = ["a.example.com"] }
endpoint "https" "b" { hosts = ["b.example.com"] }
endpoint "postgres" "db" { host = "db:5432" }
endpoint "postgres" "db2" { host = "db2:5432" }
rule "a" {
  endpoint  = https.a
  condition = "has(http.body_json.x)"
  verdict   = "deny"
}
rule "b" {
  endpoint  = https.b
  condition = "http.method == 'GET'"
  verdict   = "deny"
}
rule "db" {
  endpoint  = postgres.db
  condition = "'drop' in sql.verbs"
  verdict   = "deny"
}
rule "db2" {
  endpoint  = postgres.db2
  condition = "sql.database == 'x'"
  verdict   = "deny"
}
rule "off" {
  endpoint  = postgres.db2
  condition = "sql.statement.contains('x')"
  verdict   = "deny"
  disabled  = true
}
`);
    expect(p.needsFact('https.a', 'http.body_json')).toBe(true);
    expect(p.needsFact('https.a', 'http.body')).toBe(true);
    expect(p.needsFact('https.b', 'http.body')).toBe(false);
    expect(p.needsFact('https.b', 'http.body_json')).toBe(false);
    expect(p.needsFact('postgres.db', 'sql.statement')).toBe(true);
    expect(p.needsFact('postgres.db2', 'sql.statement')).toBe(false);
    expect(p.needsFact('https.nope', 'http.body')).toBe(true);
  });
});

describe('content facts (ours)', () => {
  it('a rule reading content fails closed when no detector ran, and decides when one did', async () => {
    const p = await oneRule('http', "sets.intersects(content.findings, ['secret.private_key'])", 'deny');
    expect(p.decide(httpAction('api.example.com'))).toMatchObject({ verdict: 'deny', failClosed: true });
    const clean: Action = { ...httpAction('api.example.com'), facts: { ...httpAction('api.example.com').facts, content: { findings: [], score: 0, verdict: 'allow' } } };
    expect(p.decide(clean)).toMatchObject({ verdict: 'allow', rule: '' });
    const dirty: Action = { ...clean, facts: { ...clean.facts, content: { findings: ['secret.private_key'], score: 0.9, verdict: 'block' } } };
    expect(p.decide(dirty)).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: false });
  });

  it('content.score compares with ints and doubles', async () => {
    const p = await oneRule('http', 'content.score > 0.5 && content.score < 1', 'deny');
    const a: Action = { ...httpAction('api.example.com'), facts: { ...httpAction('api.example.com').facts, content: { findings: [], score: 0.7, verdict: 'review' } } };
    expect(p.decide(a).rule).toBe('r');
  });
});
