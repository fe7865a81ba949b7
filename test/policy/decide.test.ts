import { describe, it, expect, beforeAll } from 'vitest';
import type { CompiledPolicy } from '../../src/policy/index.js';
import { compile, HEADER, httpAction, sqlAction } from './helpers.js';

const POLICY = `${HEADER}
endpoint "https" "github" { hosts = ["api.github.com"] }
endpoint "postgres" "pg" { host = "db.internal:5432" }
credential "bearer_token" "github" { endpoint = https.github }
credential "postgres_credential" "ro" {
  endpoint = postgres.pg
  user     = "reader"
}
approver "human_approver" "ops" { channel = "#ops" }
rule "github-writes" {
  endpoint  = https.github
  condition = "http.method in ['POST', 'PUT', 'PATCH', 'DELETE']"
  approve   = [human_approver.ops, builtin.dashboard]
}
rule "pg-no-drop" {
  endpoint  = postgres.pg
  priority  = 10
  condition = "sql.verb == 'DROP'"
  verdict   = "deny"
  reason    = "no drops"
}
rule "pg-read" {
  endpoint  = postgres.pg
  condition = "sql.verb == 'select'"
  verdict   = "allow"
}
`;

describe('decide: the basic paths', () => {
  let p: CompiledPolicy;
  beforeAll(async () => {
    p = await compile(POLICY);
  });

  it('approves a write through the chain, naming rule, endpoint and credential', () => {
    const d = p.decide(httpAction('api.github.com', { method: 'delete' }));
    expect(d).toMatchObject({
      verdict: 'approve',
      effective: 'approve',
      rule: 'github-writes',
      endpoint: 'https.github',
      credential: 'bearer_token.github',
      approve: ['human_approver.ops', 'builtin.dashboard'],
      failClosed: false,
      passthrough: false,
      mode: 'enforce',
    });
  });

  it('allows a read when no rule matches', () => {
    const d = p.decide(httpAction('api.github.com', { method: 'GET' }));
    expect(d).toMatchObject({ verdict: 'allow', rule: '', endpoint: 'https.github', reason: 'no rule matched' });
  });

  it('denies by the highest-priority matching rule with its reason', () => {
    const d = p.decide(sqlAction('db.internal', { verb: 'drop', verbs: ['drop'] }, { port: 5432 }));
    expect(d).toMatchObject({ verdict: 'deny', rule: 'pg-no-drop', reason: 'no drops', credential: 'postgres_credential.ro' });
  });

  it('backstops an uninspectable statement no rule allowed', () => {
    const d = p.decide(sqlAction('db.internal', { inspected: false, inspect_error: 'syntax error' }, { port: 5432 }));
    expect(d.verdict).toBe('deny');
    expect(d.failClosed).toBe(true);
  });
});
