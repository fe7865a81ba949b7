/**
 * What a valid document loads into: defaults, resolved references, Claw
 * Patrol compatibility forms, files referenced from the policy.
 */
import { describe, it, expect } from 'vitest';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadPolicy } from '../../src/policy/index.js';
import type { HumanApprover, LlmApprover } from '../../src/policy/types.js';
import { compile, HEADER, writePolicyDir, tempDir } from './helpers.js';

describe('defaults and the gateway block', () => {
  it('an empty document gets the documented defaults', async () => {
    const p = await compile(HEADER);
    expect(p.model.defaults).toEqual({
      unknownHost: 'passthrough',
      llmFailMode: 'closed',
      llmCacheTtlSec: 300,
      humanTimeoutSec: 600,
      humanOnTimeout: 'deny',
      mode: 'enforce',
    });
    expect(p.model.gateway).toEqual({
      dashboardListen: '127.0.0.1:8080',
      stateDir: join(homedir(), '.clawpatrol'),
      limits: { bodyBuffer: 1048576 },
      localProfile: 'default',
    });
    expect(p.model.hasGatewayBlock).toBe(false);
    expect([...p.model.approvers.keys()]).toEqual(['builtin.dashboard']);
  });

  it('every gateway attribute', async () => {
    const dir = writePolicyDir({
      'gw.hcl': `${HEADER}
gateway {
  dashboard_listen = "0.0.0.0:9090"
  public_url       = "https://gw.example.com/"
  state_dir        = "state"
  local_profile    = "agents"
  actions_keep     = "30d"
  limits { body_buffer = "256KiB" }
  wireguard {
    subnet_cidr = "10.77.0.0/24"
    listen_port = 51999
    endpoint    = "gw.example.com:51999"
  }
  proxy { listen = "127.0.0.1:3128" }
  store { postgres = "postgres://cp@db/cp" }
}
defaults {
  unknown_host     = "deny"
  llm_fail_mode    = "open"
  llm_cache_ttl    = "10m"
  human_timeout    = 120
  human_on_timeout = "allow"
  mode             = "observe"
}
profile "agents" { credentials = [] }
`,
    });
    const r = await loadPolicy(dir);
    if (!r.ok) throw new Error(JSON.stringify(r.diagnostics));
    const m = r.policy.model;
    expect(m.gateway).toEqual({
      dashboardListen: '0.0.0.0:9090',
      publicUrl: 'https://gw.example.com',
      stateDir: join(dir, 'state'),
      limits: { bodyBuffer: 256 * 1024 },
      localProfile: 'agents',
      actionsKeep: { maxAgeSec: 30 * 86400 },
      wireguard: { subnetCidr: '10.77.0.0/24', listenPort: 51999, endpoint: 'gw.example.com:51999' },
      proxy: { listen: '127.0.0.1:3128' },
      store: { postgres: 'postgres://cp@db/cp' },
    });
    expect(m.defaults).toEqual({ unknownHost: 'deny', llmFailMode: 'open', llmCacheTtlSec: 600, humanTimeoutSec: 120, humanOnTimeout: 'allow', mode: 'observe' });
    expect(r.warnings).toEqual([]);
  });

  it('actions_keep as a record count; sizes and durations in every unit', async () => {
    const p = await compile(`${HEADER}gateway {\n  actions_keep = 100000\n  audit_backlog = 5000\n  limits { body_buffer = "2MB" }\n}\n`);
    expect(p.model.gateway.actionsKeep).toEqual({ maxRecords: 100000 });
    expect(p.model.gateway.auditBacklog).toBe(5000);
    expect(p.model.gateway.limits.connectionsPerDevice).toBeUndefined();
    expect(p.model.gateway.auditBodyLimit).toBeUndefined();
    expect((await compile(`${HEADER}gateway {\n  audit_body_limit = "4KiB"\n}\n`)).model.gateway.auditBodyLimit).toBe(4096);
    expect((await compile(`${HEADER}gateway {\n  audit_body_limit = 0\n}\n`)).model.gateway.auditBodyLimit).toBe(0);
    const q = await compile(`${HEADER}gateway {\n  limits {\n    connections_per_device    = 64\n    wildcard_names_per_device = 100\n  }\n}\n`);
    expect(q.model.gateway.limits).toEqual({ bodyBuffer: 1024 * 1024, connectionsPerDevice: 64, wildcardNamesPerDevice: 100 });
    expect(p.model.gateway.limits.bodyBuffer).toBe(2_000_000);
    expect(p.model.gateway.limits.bodyIdleTimeoutSec).toBeUndefined();
    expect((await compile(`${HEADER}gateway {\n  limits { body_idle_timeout = "2m" }\n}\n`)).model.gateway.limits.bodyIdleTimeoutSec).toBe(120);
    expect((await compile(`${HEADER}gateway {\n  limits { body_idle_timeout = 15 }\n}\n`)).model.gateway.limits.bodyIdleTimeoutSec).toBe(15);
  });

  it('a rule reading content.* is a warning while no detector produces it; other rules are not', async () => {
    const text = (condition: string) =>
      `${HEADER}gateway {\n  proxy { listen = "127.0.0.1:0" }\n}\nendpoint "https" "a" {\n  hosts = ["a.example.com"]\n}\nrule "r" {\n  endpoint  = https.a\n  condition = "${condition}"\n  verdict   = "deny"\n}\n`;
    const flagged = await loadPolicy(join(writePolicyDir({ 'p.hcl': text("content.verdict == 'block'") }), 'p.hcl'));
    expect(flagged.ok).toBe(true);
    if (flagged.ok) {
      expect(flagged.warnings.filter((w) => w.summary === 'No content detector')).toEqual([
        expect.objectContaining({ summary: 'No content detector', hint: expect.stringContaining('rule "r" reads content.*'), pos: expect.objectContaining({ line: 10 }) }),
      ]);
    }
    const plain = await loadPolicy(join(writePolicyDir({ 'p.hcl': text("http.method == 'delete'") }), 'p.hcl'));
    expect(plain.ok && plain.warnings.filter((w) => w.summary === 'No content detector')).toEqual([]);
  });

  it('a gateway without a way in is a warning, not an error', async () => {
    const dir = writePolicyDir({ 'p.hcl': `${HEADER}gateway {}\n` });
    const r = await loadPolicy(dir);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.warnings.map((w) => w.summary)).toEqual(['No way in']);
  });
});

describe('endpoints', () => {
  it('host patterns, default ports, kubernetes server, clickhouse ports', async () => {
    const p = await compile(`${HEADER}
endpoint "https" "a" {
  hosts       = ["API.Example.com.", "*.svc.example.com", "b.example.com:8443"]
  description = "A"
  listen      = "127.0.0.1:18443"
}
endpoint "postgres" "db" {
  host     = "db.internal"
  database = "app"
}
endpoint "clickhouse_native" "ch" {
  hosts = ["ch1", "ch2:9999"]
  tls   = true
}
endpoint "clickhouse_http" "chh" { hosts = ["chh.internal:8123"] }
endpoint "kubernetes" "k" {
  server       = "https://k8s.internal"
  hosts        = ["k8s-alt.internal:6443"]
  cluster_name = "prod"
  region       = "eu-west-1"
}
`);
    const e = p.model.endpoints;
    expect(e.get('https.a')).toMatchObject({
      family: 'http',
      description: 'A',
      listen: '127.0.0.1:18443',
      hosts: [
        { host: 'api.example.com', wildcard: false },
        { host: '*.svc.example.com', wildcard: true },
        { host: 'b.example.com', port: 8443, wildcard: false },
      ],
    });
    expect(e.get('postgres.db')).toMatchObject({ family: 'sql', sslmode: 'prefer', database: 'app', hosts: [{ host: 'db.internal', port: 5432 }] });
    expect(e.get('clickhouse_native.ch')).toMatchObject({ port: 9440, tls: true, hosts: [{ host: 'ch1', port: 9440 }, { host: 'ch2', port: 9999 }] });
    expect(e.get('kubernetes.k')).toMatchObject({
      family: 'k8s',
      server: 'https://k8s.internal',
      hosts: [{ host: 'k8s.internal', port: 443 }, { host: 'k8s-alt.internal', port: 6443 }],
    });
    expect(p.findEndpoint('chh.internal', 8123)?.id).toBe('clickhouse_http.chh');
  });

  it('ca_cert inline or <<file:path>> relative to the policy file', async () => {
    const dir = tempDir();
    // A real self-signed certificate from openssl (the format the gateway hands to TLS).
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'ca.pem'), '-subj', '/CN=test-ca', '-days', '1'], { stdio: 'ignore' });
    const policyDir = writePolicyDir({
      'sub/p.hcl': `${HEADER}endpoint "https" "a" {\n  hosts   = ["a.example.com"]\n  ca_cert = "<<file:../../${dir.split('/').pop()}/ca.pem>>"\n}\n`,
    });
    // The policy lives in <tmp>/<x>/sub/, the certificate in <tmp>/<dir>/: ../../<dir>/ca.pem from the policy file.
    const r = await loadPolicy(join(policyDir, 'sub', 'p.hcl'));
    if (!r.ok) throw new Error(JSON.stringify(r.diagnostics));
    const pem = r.policy.model.endpoints.get('https.a')!.caCert!;
    expect(new X509Certificate(pem).subject).toBe('CN=test-ca');
  });
});

describe('credentials, approvers, profiles', () => {
  const DOC = `${HEADER}
endpoint "https" "gh" { hosts = ["api.github.com"] }
endpoint "postgres" "db" { host = "db:5432" }
credential "bearer_token" "gh" {
  endpoints = [https.gh]
  env       = "GITHUB_TOKEN"
}
credential "header_token" "h" {
  endpoint = https.gh
  header   = "X-Auth-Token"
  prefix   = "Token "
}
credential "basic_auth" "b" {
  endpoint = https.gh
  username = "bot"
}
credential "postgres_credential" "db" {
  endpoint = postgres.db
  user     = "app"
  database = "app"
}
credential "anthropic_manual_key" "judge" {}
credential "slack_tokens" "slack" {}
credential "mtls_credential" "m" { endpoint = https.gh }
policy "careful" { text = "Only read-only commands." }
approver "llm_approver" "judge" {
  model      = "claude-sonnet-4-5"
  credential = anthropic_manual_key.judge
  policy     = policy.careful
  base_url   = "http://127.0.0.1:9999"
  timeout    = 20
}
approver "llm_approver" "inline" {
  model      = "claude-haiku-4-5"
  credential = anthropic_manual_key.judge
  policy     = <<-EOT
    Inline prose.
  EOT
}
approver "human_approver" "ops" {
  channel           = "#ops"
  credential        = slack_tokens.slack
  timeout           = "5m"
  interactive       = false
  approvers         = ["U1", "U2"]
  require_approvers = 2
  on_timeout        = "allow"
}
approver "human_approver" "plain" {}
profile "p" {
  credentials = [
    bearer_token.gh,
    { credential = header_token.h, placeholder = "PH_h" },
    { credential = basic_auth.b, placeholder = "PH_b" },
    { credential = mtls_credential.m, placeholder = "PH_m" },
    postgres_credential.db,
  ]
}
`;

  it('loads every credential type with its slots and env', async () => {
    const p = await compile(DOC);
    const c = p.model.credentials;
    expect(c.get('bearer_token.gh')).toMatchObject({ endpoints: ['https.gh'], env: 'GITHUB_TOKEN', slots: ['token'] });
    expect(c.get('header_token.h')).toMatchObject({ header: 'x-auth-token', prefix: 'Token ', slots: ['token'] });
    expect(c.get('basic_auth.b')).toMatchObject({ username: 'bot', slots: ['password'] });
    expect(c.get('postgres_credential.db')).toMatchObject({ user: 'app', database: 'app', slots: ['password'] });
    expect(c.get('anthropic_manual_key.judge')).toMatchObject({ endpoints: [], env: 'ANTHROPIC_API_KEY', slots: ['token'] });
    expect(c.get('slack_tokens.slack')).toMatchObject({ slots: ['bot', 'signing_secret', 'app'] });
    expect(c.get('mtls_credential.m')).toMatchObject({ slots: ['cert', 'key', 'ca'] });
    expect(c.get('bearer_token.gh')!.pos).toMatchObject({ line: 5, col: 1 });
  });

  it('resolves approvers, policy blocks and approver defaults', async () => {
    const p = await compile(DOC);
    const judge = p.model.approvers.get('llm_approver.judge') as LlmApprover;
    expect(judge).toMatchObject({ model: 'claude-sonnet-4-5', credential: 'anthropic_manual_key.judge', policy: 'Only read-only commands.', baseUrl: 'http://127.0.0.1:9999', timeoutSec: 20 });
    expect((p.model.approvers.get('llm_approver.inline') as LlmApprover).policy).toBe('Inline prose.\n');
    expect(p.model.approvers.get('human_approver.ops') as HumanApprover).toMatchObject({
      channel: '#ops',
      credential: 'slack_tokens.slack',
      timeoutSec: 300,
      interactive: false,
      approvers: ['U1', 'U2'],
      requireApprovers: 2,
      onTimeout: 'allow',
    });
    expect(p.model.approvers.get('human_approver.plain') as HumanApprover).toMatchObject({ timeoutSec: 600, interactive: true, approvers: [], requireApprovers: 1, onTimeout: 'deny' });
  });

  it('profiles: entries and the endpoints they reach', async () => {
    const p = await compile(DOC);
    const prof = p.model.profiles.get('p')!;
    expect(prof.entries.map((e) => [e.credential, e.placeholder])).toEqual([
      ['bearer_token.gh', undefined],
      ['header_token.h', 'PH_h'],
      ['basic_auth.b', 'PH_b'],
      ['mtls_credential.m', 'PH_m'],
      ['postgres_credential.db', undefined],
    ]);
    expect(prof.endpoints).toEqual(['https.gh', 'postgres.db']);
  });

  it('a header_token placeholder in its configured header selects it (through a fixture-like action)', async () => {
    const p = await compile(DOC);
    const { placeholdersFromHeaders, placeholderHeaders } = await import('../../src/policy/placeholders.js');
    const placeholders = placeholdersFromHeaders({ 'x-auth-token': 'Token PH_h' }, placeholderHeaders(p.model));
    const d = p.decide({
      family: 'http',
      host: 'api.github.com',
      profile: 'p',
      placeholders,
      facts: { http: { method: 'GET', path: '/', raw_path: '/', host: 'api.github.com', query: {}, headers: {}, body: '', body_json: {} } },
    });
    expect(d.credential).toBe('header_token.h');
  });
});

describe('syntax forms', () => {
  it('escaped template sequences are literal; comments of every kind; one-line blocks', async () => {
    const p = await compile(`${HEADER}
/* block comment */
endpoint "https" "x" { hosts = ["x.example.com"] } # trailing
// line comment
rule "r" {
  endpoint = https.x
  verdict  = "deny"
  reason   = "costs $\${5} and 100%%{x}"
}
`);
    expect(p.model.rules[0]!.reason).toBe('costs ${5} and 100%{x}');
  });

  it('rule positions and condition positions are recorded', async () => {
    const p = await compile(`${HEADER}endpoint "https" "x" { hosts = ["x.example.com"] }\n\nrule "r" {\n  endpoint  = https.x\n  condition = "true"\n  verdict   = "deny"\n}\n`);
    expect(p.model.rules[0]).toMatchObject({ pos: { line: 4, col: 1 }, conditionPos: { line: 6, col: 15 } });
  });
});

/** A real self-signed CA certificate (openssl), PEM. */
function testCaPem(): string {
  const dir = tempDir();
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'ca.pem'), '-subj', '/CN=test-ca', '-days', '1'], { stdio: 'ignore' });
  return readFileSync(join(dir, 'ca.pem'), 'utf8');
}

describe('Claw Patrol compatibility', () => {
  it('a Claw Patrol policy using only supported types loads unchanged', async () => {
    const dir = writePolicyDir({
      'clawpatrol.hcl': `schema_version = 1

gateway {
  dashboard_listen = "127.0.0.1:8080"
  public_url       = "https://clawpatrol.example.com"
  state_dir        = "/var/lib/clawpatrol"
  limits {
    body_buffer = "1MiB"
  }
  wireguard {
    subnet_cidr = "10.55.0.0/24"
    listen_port = 51820
    endpoint    = "gw.example.com:51820"
  }
}

defaults {
  unknown_host     = "passthrough"
  llm_fail_mode    = "closed"
  llm_cache_ttl    = 300
  human_timeout    = 600
  human_on_timeout = "deny"
}

endpoint "https" "github" {
  description = "GitHub API"
  hosts       = ["api.github.com", "*.githubusercontent.com"]
}

endpoint "postgres" "pg" {
  description = "primary"
  host        = "pg.internal:5432"
  sslmode     = "require"
  database    = "app"
}

endpoint "kubernetes" "prod" {
  description  = "prod cluster"
  server       = "https://k8s.prod.example.com:6443"
  cluster_name = "prod"
  region       = "us-east-1"
  ca_cert      = <<-EOT
${testCaPem().trim().split('\n').map((l) => `    ${l}`).join('\n')}
  EOT
}

credential "bearer_token" "orb-test" {
  endpoint = https.github
}

credential "bearer_token" "orb-prod" {
  endpoint = https.github
}

credential "postgres_credential" "pg-ro" {
  endpoint = postgres.pg
  user     = "readonly"
  database = "app"
}

credential "bearer_token" "k8s" {
  endpoint = kubernetes.prod
}

credential "anthropic_manual_key" "judge" {}

credential "slack_tokens" "slack" {}

policy "k8s" {
  text = "Allow read-only diagnostics."
}

approver "llm_approver" "judge" {
  model      = "claude-sonnet-4-5"
  credential = anthropic_manual_key.judge
  policy     = policy.k8s
}

approver "human_approver" "ops" {
  channel     = "#ops"
  credential  = slack_tokens.slack
  timeout     = 900
  interactive = true
  on_timeout  = "deny"
}

rule "github-writes" {
  endpoints = [https.github]
  priority  = 10
  condition = <<-EOT
    http.method in ["POST", "PUT", "PATCH", "DELETE"]
  EOT
  approve   = [llm_approver.judge, human_approver.ops]
  reason    = "writes need approval"
}

rule "pg-no-ddl" {
  endpoint  = postgres.pg
  condition = "sql.verb in ['drop', 'alter', 'truncate']"
  verdict   = "deny"
}

rule "k8s-exec" {
  endpoint  = kubernetes.prod
  condition = "k8s.resource == 'pods/exec'"
  approve   = [builtin.dashboard]
}

profile "dev" {
  credentials = [
    { credential = bearer_token.orb-test, placeholder = "PH_orb_test" },
    { credential = bearer_token.orb-prod, placeholder = "PH_orb_prod" },
    postgres_credential.pg-ro,
    bearer_token.k8s,
  ]
}
`,
    });
    const r = await loadPolicy(dir);
    if (!r.ok) throw new Error(r.diagnostics.map((d) => `${d.pos.line}:${d.pos.col} ${d.summary} ${d.hint}`).join('\n'));
    expect(r.warnings).toEqual([]);
    const p = r.policy;
    expect(new X509Certificate(p.model.endpoints.get('kubernetes.prod')!.caCert!).subject).toBe('CN=test-ca');
    expect(p.model.rules.map((x) => x.name)).toEqual(['github-writes', 'pg-no-ddl', 'k8s-exec']);
    const d = p.decide({
      family: 'http',
      host: 'api.github.com',
      profile: 'dev',
      placeholders: ['PH_orb_prod'],
      facts: { http: { method: 'delete', path: '/x', raw_path: '/x', host: 'api.github.com', query: {}, headers: {}, body: '', body_json: {} } },
    });
    expect(d).toMatchObject({ verdict: 'approve', credential: 'bearer_token.orb-prod', approve: ['llm_approver.judge', 'human_approver.ops'] });
  });
});
