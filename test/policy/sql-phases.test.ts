/**
 * The parts of a SQL connection that are not ordinary statements, and what
 * "no rule matched" may not allow on a sql endpoint:
 *   - the session start resolves endpoint and credential only (rules are
 *     never evaluated for it, so a catch-all deny does not refuse logins);
 *   - a wire FunctionCall and startup options need a rule that allows them;
 *   - a statement over the inspection limit has an unknown `sql.statement`.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import type { CompiledPolicy } from '../../src/policy/index.js';
import type { Action } from '../../src/policy/types.js';
import { compile, HEADER, oneRule, sqlAction } from './helpers.js';

const POLICY = `${HEADER}
defaults { unknown_host = "deny" }
endpoint "postgres" "pg" { host = "db.internal:5432" }
endpoint "https" "web" { hosts = ["web.internal"] }
credential "postgres_credential" "ro" {
  endpoint = postgres.pg
  user     = "reader"
}
credential "postgres_credential" "rw" {
  endpoint = postgres.pg
  user     = "writer"
}
profile "agents" {
  credentials = [
    { credential = postgres_credential.ro, placeholder = "PH_ro" },
    { credential = postgres_credential.rw, placeholder = "PH_rw" },
  ]
}
rule "pg-loader-set" {
  endpoint  = postgres.pg
  priority  = 20
  condition = "sql.verb == 'set' && sql.user == 'PH_rw'"
  verdict   = "allow"
}
rule "pg-fastpath" {
  endpoint  = postgres.pg
  priority  = 10
  condition = "sql.verb == 'function_call' && sql.user == 'PH_rw'"
  verdict   = "allow"
}
rule "pg-reads" {
  endpoint  = postgres.pg
  condition = "sets.contains(['select'], sql.verbs)"
  verdict   = "allow"
}
rule "pg-default" {
  endpoint = postgres.pg
  priority = -100
  verdict  = "deny"
  reason   = "read-only"
}
`;

function start(user: string, extra: Partial<Action> = {}): Action {
  return sqlAction('db.internal', { verb: '', verbs: [], statement: '', user, inspected: false, inspect_error: 'no statement' }, {
    port: 5432,
    profile: 'agents',
    user,
    placeholders: [user],
    phase: 'session_start',
    ...extra,
  });
}

describe('the session start', () => {
  let p: CompiledPolicy;
  beforeAll(async () => {
    p = await compile(POLICY);
  });

  it('is allowed under a catch-all deny rule: no rule is evaluated, the credential is resolved', () => {
    const d = p.decide(start('PH_ro'));
    expect(d).toMatchObject({ verdict: 'allow', rule: '', endpoint: 'postgres.pg', credential: 'postgres_credential.ro', failClosed: false });
    expect(d.reason).toMatch(/^session start on postgres\.pg as postgres_credential\.ro/);
    // The same facts as a statement are decided by the rules (and the catch-all denies them).
    const { phase: _phase, ...asStatement } = start('PH_ro');
    expect(p.decide(asStatement)).toMatchObject({ verdict: 'deny' });
  });

  it('resolves by placeholder, then by the upstream user name', () => {
    expect(p.decide(start('PH_rw')).credential).toBe('postgres_credential.rw');
    expect(p.decide(start('writer')).credential).toBe('postgres_credential.rw');
  });

  it('denies, fail closed, what login cannot resolve: ambiguity, an undeclared profile, an endpoint outside the profile', () => {
    const ambiguous = p.decide(start('someone'));
    expect(ambiguous).toMatchObject({ verdict: 'deny', rule: '', failClosed: true });
    expect(ambiguous.reason).toMatch(/several credentials can authenticate postgres\.pg/);
    expect(p.decide(start('PH_ro', { profile: 'nope' }))).toMatchObject({ verdict: 'deny', failClosed: true });
    expect(p.decide(start('PH_ro', { endpoint: 'https.web' }))).toMatchObject({ verdict: 'deny', failClosed: true });
  });

  it('an unknown host follows defaults.unknown_host', () => {
    const d = p.decide(start('PH_ro', { host: 'other.internal' }));
    expect(d).toMatchObject({ verdict: 'deny', rule: '', endpoint: null });
    expect(d.reason).toMatch(/unknown hosts are denied/);
  });

  it('a pinned credential the profile does not offer is refused', () => {
    expect(p.decide(start('PH_ro', { credential: 'postgres_credential.ro' })).credential).toBe('postgres_credential.ro');
    expect(p.decide(start('PH_ro', { credential: 'postgres_credential.gone' }))).toMatchObject({ verdict: 'deny', failClosed: true });
  });
});

describe('the SQL backstop', () => {
  let p: CompiledPolicy;
  beforeAll(async () => {
    p = await compile(`${HEADER}
endpoint "postgres" "pg" { host = "db.internal:5432" }
rule "fastpath" {
  endpoint  = postgres.pg
  condition = "sql.verb == 'function_call' && sql.user == 'fast'"
  verdict   = "allow"
}
rule "search-path" {
  endpoint  = postgres.pg
  condition = "sql.verb == 'set' && sql.statement.startsWith('SET search_path TO ')"
  verdict   = "allow"
}
`);
  });

  const fc = (user: string): Action =>
    sqlAction('db.internal', { verb: 'function_call', verbs: ['function_call'], statement: '', user }, { port: 5432 });

  it('denies a FunctionCall no rule allows, and lets a rule allow it', () => {
    const d = p.decide(fc('slow'));
    expect(d).toMatchObject({ verdict: 'deny', rule: '', failClosed: true });
    expect(d.reason).toMatch(/FunctionCall \(verb function_call\).*denied unless a rule allows it/);
    expect(p.decide(fc('fast'))).toMatchObject({ verdict: 'allow', rule: 'fastpath' });
  });

  it('denies startup options no rule allows; the same SET as a statement is allowed when no rule matches', () => {
    const set = (statement: string, phase?: Action['phase']): Action =>
      sqlAction('db.internal', { verb: 'set', verbs: ['set'], statement }, { port: 5432, ...(phase ? { phase } : {}) });
    expect(p.decide(set("SET work_mem TO '1GB'", 'startup_options'))).toMatchObject({
      verdict: 'deny',
      rule: '',
      reason: 'no rule allows startup options',
      failClosed: false,
    });
    expect(p.decide(set("SET search_path TO 'x'", 'startup_options'))).toMatchObject({ verdict: 'allow', rule: 'search-path' });
    expect(p.decide(set("SET work_mem TO '1GB'"))).toMatchObject({ verdict: 'allow', rule: '' });
  });

  it('observe mode records the backstop verdict and lets it through', async () => {
    const o = await compile(`${HEADER}
defaults { mode = "observe" }
endpoint "postgres" "pg" { host = "db.internal:5432" }
`);
    expect(o.decide(fc('slow'))).toMatchObject({ verdict: 'deny', effective: 'allow' });
  });
});

describe('statements over the inspection limit (sql.statement_truncated)', () => {
  const over = (extra: Partial<Action> = {}): Action =>
    sqlAction(
      'db.example.com',
      {
        verb: '',
        verbs: [],
        statement: '',
        user: 'loader',
        inspected: false,
        inspect_error: 'statement of 2000000 bytes is over limits.body_buffer (1048576 bytes)',
        statement_truncated: true,
      },
      { port: 5432, ...extra },
    );
  const policyWith = (condition: string, verdict: 'allow' | 'deny') => oneRule('sql', condition, verdict);

  it('sql.statement is unknown: a rule that reads it fails closed, even an allow rule', async () => {
    const p = await policyWith("sql.statement.startsWith('COPY ')", 'allow');
    expect(p.decide(over())).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: true });
    // The same empty statement, read in full, is simply not matched (then the backstop decides).
    const known = over();
    known.facts.sql!.statement_truncated = false;
    known.facts.sql!.inspected = true;
    expect(p.decide(known)).toMatchObject({ verdict: 'allow', rule: '' });
  });

  it("a rule that decides without the text still decides; `sql.statement_truncated` is a fact", async () => {
    const p = await policyWith("sql.user == 'loader'", 'allow');
    expect(p.decide(over())).toMatchObject({ verdict: 'allow', rule: 'r', failClosed: false });
    const t = await policyWith('sql.statement_truncated', 'deny');
    expect(t.decide(over())).toMatchObject({ verdict: 'deny', rule: 'r', failClosed: false });
    // An unknown side of || is absorbed when the other side decides.
    const absorbed = await policyWith("sql.user == 'loader' || sql.statement.contains('x')", 'allow');
    expect(absorbed.decide(over())).toMatchObject({ verdict: 'allow', rule: 'r' });
  });

  it('no rule matching: the backstop denies, naming the limit', async () => {
    const p = await policyWith("sql.user == 'someone-else'", 'allow');
    const d = p.decide(over());
    expect(d).toMatchObject({ verdict: 'deny', rule: '', failClosed: true });
    expect(d.reason).toMatch(/over limits\.body_buffer/);
  });
});
