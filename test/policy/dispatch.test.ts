/**
 * Host matching, endpoint lookup and credential dispatch — the edges that
 * decide which endpoint's rules and which secret apply to an action.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { HostIndex, parseHostPattern } from '../../src/policy/hosts.js';
import { compile, HEADER, httpAction, sqlAction, writePolicyDir } from './helpers.js';
import { loadPolicy, type CompiledPolicy } from '../../src/policy/index.js';
import { placeholdersFromHeaders, profilePlaceholders } from '../../src/policy/placeholders.js';

function index(patterns: Array<[string, string]>): HostIndex<string> {
  const idx = new HostIndex<string>();
  for (const [pattern, value] of patterns) {
    const p = parseHostPattern(pattern);
    if (!p.ok) throw new Error(p.message);
    idx.add(p.pattern, value);
  }
  return idx;
}

describe('host matching', () => {
  const idx = index([
    ['*.example.com', 'wild'],
    ['*.api.example.com', 'longer-wild'],
    ['api.example.com', 'exact'],
    ['db.example.com:5432', 'db-5432'],
    ['db.example.com:6432', 'db-6432'],
    ['[2001:db8::1]:443', 'v6'],
    ['10.0.0.7', 'ip'],
  ]);

  it.each([
    ['api.example.com', undefined, 'exact'],
    ['API.Example.COM', undefined, 'exact'],
    ['api.example.com.', undefined, 'exact'],
    ['api.example.com:443', undefined, 'exact'],
    ['a.example.com', undefined, 'wild'],
    ['a.b.example.com', undefined, 'wild'],
    ['v1.api.example.com', undefined, 'longer-wild'],
    ['x.v1.api.example.com', undefined, 'longer-wild'],
    ['example.com', undefined, null],
    ['notexample.com', undefined, null],
    ['example.com.evil.net', undefined, null],
    ['db.example.com', 5432, 'db-5432'],
    ['db.example.com', 6432, 'db-6432'],
    ['db.example.com:6432', undefined, 'db-6432'],
    ['db.example.com', 5433, 'wild'],
    ['[2001:DB8::1]:443', undefined, 'v6'],
    ['2001:db8::1', 443, 'v6'],
    ['10.0.0.7', 9999, 'ip'],
  ] as Array<[string, number | undefined, string | null]>)('%s port %s → %s', (host, port, want) => {
    expect(idx.lookup(host, port)).toBe(want);
  });

  it('an unknown port still finds a host:port endpoint (inspect rather than pass through)', () => {
    const only = index([['db.internal:5432', 'db']]);
    expect(only.lookup('db.internal')).toBe('db');
    expect(only.lookup('db.internal', 5433)).toBeNull();
  });

  it.each(['*.com', '*', 'a.*.example.com', 'a*.example.com', '*.*.example.com', 'bad host', 'x..example.com', 'a.example.com:99999'])(
    'rejects %s',
    (pattern) => {
      expect(parseHostPattern(pattern).ok).toBe(false);
    },
  );
});

const DISPATCH = `${HEADER}
endpoint "https" "github" { hosts = ["api.github.com"] }
endpoint "https" "github-mirror" { hosts = ["api.github.com", "mirror.example.com"] }
endpoint "https" "public" { hosts = ["*.public.example.com"] }
endpoint "postgres" "db" { host = "db.internal:5432" }

credential "bearer_token" "bot" { endpoint = https.github }
credential "bearer_token" "release" { endpoint = https.github }
credential "bearer_token" "mirror" { endpoint = https.github-mirror }
credential "passthrough" "public" { endpoint = https.public }
credential "postgres_credential" "ro" {
  endpoint = postgres.db
  user     = "app_ro"
}
credential "postgres_credential" "rw" {
  endpoint = postgres.db
  user     = "app_rw"
}
credential "postgres_credential" "rw-audit" {
  endpoint = postgres.db
  user     = "app_rw"
  database = "audit"
}

profile "dev" {
  credentials = [
    bearer_token.bot,
    { credential = bearer_token.release, placeholder = "PH_release" },
    passthrough.public,
    postgres_credential.ro,
    postgres_credential.rw,
    postgres_credential.rw-audit,
  ]
}
profile "mirror" { credentials = [bearer_token.mirror] }
profile "two-placeholders" {
  credentials = [
    { credential = bearer_token.bot, placeholder = "PH_bot" },
    { credential = bearer_token.release, placeholder = "PH_rel" },
  ]
}

rule "release-only" {
  endpoint   = https.github
  credential = bearer_token.release
  condition  = "http.path.startsWith('/repos/acme/app/releases')"
  verdict    = "allow"
}
rule "no-releases" {
  endpoint  = https.github
  condition = "http.path.startsWith('/repos/acme/app/releases')"
  verdict   = "deny"
}
rule "off" {
  endpoint = https.github
  priority = 1000
  verdict  = "deny"
  disabled = true
}
`;

describe('endpoint lookup and credential dispatch', () => {
  let p: CompiledPolicy;
  beforeAll(async () => {
    p = await compile(DISPATCH);
  });

  it('without a profile, the first declared endpoint wins a shared host', () => {
    expect(p.findEndpoint('api.github.com', 443)?.id).toBe('https.github');
    expect(p.findEndpoint('mirror.example.com', 443)?.id).toBe('https.github-mirror');
  });

  it('a profile only sees its own endpoints', () => {
    expect(p.findEndpoint('api.github.com', 443, 'mirror')?.id).toBe('https.github-mirror');
    expect(p.findEndpoint('db.internal', 5432, 'mirror')).toBeNull();
    expect(p.findEndpoint('api.github.com', 443, 'nope')).toBeNull();
  });

  it('the single entry without placeholder is the default; a placeholder picks the other', () => {
    expect(p.decide(httpAction('api.github.com', {}, { profile: 'dev' })).credential).toBe('bearer_token.bot');
    expect(p.decide(httpAction('api.github.com', {}, { profile: 'dev', placeholders: ['PH_release'] })).credential).toBe('bearer_token.release');
  });

  it('the generated cp_ph_<name> placeholder selects its credential too', () => {
    expect(p.decide(httpAction('api.github.com', {}, { profile: 'dev', placeholders: ['cp_ph_release'] })).credential).toBe('bearer_token.release');
    expect(p.decide(httpAction('api.github.com', {}, { profile: 'two-placeholders', placeholders: ['cp_ph_bot'] })).credential).toBe('bearer_token.bot');
  });

  it('placeholders come from Authorization (Bearer and Basic), x-api-key and header_token headers', () => {
    const basic = Buffer.from('PH_user:PH_pass').toString('base64');
    expect(placeholdersFromHeaders({ authorization: 'Bearer PH_a' })).toEqual(['PH_a']);
    expect(placeholdersFromHeaders({ Authorization: `Basic ${basic}` })).toEqual(['PH_user', 'PH_pass']);
    expect(placeholdersFromHeaders({ 'x-api-key': ['PH_k'] })).toEqual(['PH_k']);
    expect(placeholdersFromHeaders({ 'X-Auth-Token': 'Token PH_t', cookie: 'PH_c' }, [{ header: 'x-auth-token', prefix: 'Token ' }])).toEqual(['PH_t']);
  });

  it('a forced credential must be a candidate', () => {
    expect(p.decide(httpAction('api.github.com', {}, { profile: 'dev', credential: 'release' })).credential).toBe('bearer_token.release');
    const d = p.decide(httpAction('api.github.com', {}, { profile: 'dev', credential: 'bearer_token.mirror' }));
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true, endpoint: 'https.github' });
    expect(d.reason).toContain('credential "bearer_token.mirror" is not available for https.github');
  });

  it('several candidates and nothing to pick one: a fail-closed deny naming the endpoint', () => {
    const d = p.decide(httpAction('api.github.com', {}, { profile: 'two-placeholders' }));
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true, credential: null, endpoint: 'https.github' });
    expect(d.reason).toContain('several credentials can authenticate https.github');
    // Without a profile every credential bound to the endpoint is a candidate.
    expect(p.decide(httpAction('api.github.com')).failClosed).toBe(true);
  });

  it('two placeholders selecting different credentials are ambiguous too', () => {
    const d = p.decide(httpAction('api.github.com', {}, { profile: 'two-placeholders', placeholders: ['PH_bot', 'PH_rel'] }));
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true });
  });

  it('SQL: the startup user (and database) picks the credential', () => {
    const at = (user: string, database?: string) =>
      p.decide(sqlAction('db.internal', { user }, { port: 5432, profile: 'dev', user, ...(database ? { database } : {}) })).credential;
    expect(at('app_ro')).toBe('postgres_credential.ro');
    expect(at('app_rw', 'app')).toBe('postgres_credential.rw');
    expect(at('app_rw', 'audit')).toBe('postgres_credential.rw-audit');
    const d = p.decide(sqlAction('db.internal', {}, { port: 5432, profile: 'dev', user: 'someone_else' }));
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true });
  });

  it('a passthrough credential claims the endpoint but injects nothing', () => {
    const d = p.decide(httpAction('docs.public.example.com', {}, { profile: 'dev' }));
    expect(d).toMatchObject({ verdict: 'allow', endpoint: 'https.public', credential: null, passthrough: false });
  });

  it('credential pins: a rule applies only when its credential resolved', () => {
    const path = { path: '/repos/acme/app/releases' };
    expect(p.decide(httpAction('api.github.com', path, { profile: 'dev', placeholders: ['PH_release'] })).rule).toBe('release-only');
    expect(p.decide(httpAction('api.github.com', path, { profile: 'dev' }))).toMatchObject({ rule: 'no-releases', verdict: 'deny' });
  });

  it('disabled rules are skipped', () => {
    expect(p.decide(httpAction('api.github.com', { path: '/user' }, { profile: 'dev' })).rule).toBe('');
  });

  it('a known endpoint id is used as given, but must be reachable in the profile', () => {
    expect(p.decide(httpAction('whatever', {}, { endpoint: 'https.github', profile: 'dev' })).endpoint).toBe('https.github');
    const d = p.decide(httpAction('api.github.com', {}, { endpoint: 'https.github-mirror', profile: 'dev' }));
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true });
    expect(d.reason).toContain('not available to profile "dev"');
    expect(p.decide(httpAction('x', {}, { endpoint: 'https.nope' })).failClosed).toBe(true);
  });

  it('an undeclared profile is denied', () => {
    const d = p.decide(httpAction('api.github.com', {}, { profile: 'ghost' }));
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true, endpoint: null });
  });

  it('facts of the wrong family are denied', () => {
    const d = p.decide(sqlAction('api.github.com'));
    expect(d).toMatchObject({ verdict: 'deny', failClosed: true, endpoint: 'https.github' });
  });

  it('decide is total: a malformed action is a fail-closed deny, never a throw', () => {
    const d = p.decide({ family: 'http', host: 'api.github.com', profile: 'dev' } as never);
    expect(d.verdict).toBe('deny');
    const e = p.decide(null as never);
    expect(e).toMatchObject({ verdict: 'deny', failClosed: true });
  });

  it('profilePlaceholders lists what `run` exports', async () => {
    expect(profilePlaceholders(p.model, 'dev')).toEqual([
      { credential: 'bearer_token.bot', placeholder: 'cp_ph_bot' },
      { credential: 'bearer_token.release', placeholder: 'PH_release' },
      { credential: 'postgres_credential.ro', placeholder: 'cp_ph_ro' },
      { credential: 'postgres_credential.rw', placeholder: 'cp_ph_rw' },
      { credential: 'postgres_credential.rw-audit', placeholder: 'cp_ph_rw-audit' },
    ]);
  });
});

describe('rule order, unknown hosts, observe mode', () => {
  it('priority first, then declaration order across files', async () => {
    const dir = writePolicyDir({
      'a.hcl': `${HEADER}endpoint "https" "x" { hosts = ["x.example.com"] }
rule "a-low" {
  endpoint = https.x
  verdict  = "allow"
}`,
      'b.hcl': `rule "b-first" {
  endpoint = https.x
  priority = 5
  verdict  = "deny"
}
rule "b-second" {
  endpoint = https.x
  priority = 5
  verdict  = "allow"
}`,
    });
    const r = await loadPolicy(dir);
    if (!r.ok) throw new Error('load');
    expect(r.policy.decide(httpAction('x.example.com')).rule).toBe('b-first');
    expect(r.policy.model.rules.map((x) => x.name)).toEqual(['a-low', 'b-first', 'b-second']);
  });

  it('unknown_host = "passthrough" (the default): allowed, marked passthrough, no endpoint, no rule', async () => {
    const p = await compile(`${HEADER}endpoint "https" "x" { hosts = ["x.example.com"] }`);
    expect(p.decide(httpAction('elsewhere.net'))).toMatchObject({
      verdict: 'allow',
      effective: 'allow',
      passthrough: true,
      endpoint: null,
      rule: '',
      credential: null,
    });
  });

  it('unknown_host = "deny"', async () => {
    const p = await compile(`${HEADER}defaults { unknown_host = "deny" }\nendpoint "https" "x" { hosts = ["x.example.com"] }`);
    expect(p.decide(httpAction('elsewhere.net'))).toMatchObject({ verdict: 'deny', passthrough: false, endpoint: null });
  });

  it('observe mode: the verdict is recorded, the effect is allow', async () => {
    const p = await compile(`${HEADER}defaults { mode = "observe" }
endpoint "https" "x" { hosts = ["x.example.com"] }
rule "deny-posts" {
  endpoint  = https.x
  condition = "http.method == 'POST'"
  verdict   = "deny"
}
rule "approve-puts" {
  endpoint  = https.x
  condition = "http.method == 'PUT'"
  approve   = [builtin.dashboard]
}`);
    expect(p.decide(httpAction('x.example.com', { method: 'POST' }))).toMatchObject({ verdict: 'deny', effective: 'allow', mode: 'observe', rule: 'deny-posts' });
    expect(p.decide(httpAction('x.example.com', { method: 'PUT' }))).toMatchObject({ verdict: 'approve', effective: 'allow', approve: ['builtin.dashboard'] });
  });
});
