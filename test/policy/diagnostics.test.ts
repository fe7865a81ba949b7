/**
 * Invalid policies: each case asserts the complete list of errors — file,
 * line, column, summary and (part of) the hint — so a diagnostic that moves,
 * changes wording or appears twice fails the test.
 */
import { describe, it, expect } from 'vitest';
import { diagnose, writePolicyDir } from './helpers.js';
import { formatDiagnostic, loadPolicy } from '../../src/policy/index.js';
import type { Diagnostic } from '../../src/policy/types.js';
import { join } from 'node:path';

interface Want {
  file?: string;
  line: number;
  col: number;
  summary: string;
  /** Substring of the hint. */
  hint?: string;
}

const V = 'schema_version = 1\n';
const GH = 'endpoint "https" "github" {\n  hosts = ["api.github.com"]\n}\n'; // lines 2–4 after V

function errors(ds: Diagnostic[]): Diagnostic[] {
  return ds.filter((d) => d.severity === 'error');
}

function expectErrors(ds: Diagnostic[], wants: Want[]): void {
  const got = errors(ds);
  const view = got.map(formatDiagnostic).join('\n');
  expect(got.length, view).toBe(wants.length);
  wants.forEach((w, i) => {
    const d = got[i]!;
    expect({ file: d.pos.file, line: d.pos.line, col: d.pos.col, summary: d.summary }, view).toEqual({
      file: w.file ?? 'policy.hcl',
      line: w.line,
      col: w.col,
      summary: w.summary,
    });
    if (w.hint !== undefined) expect(d.hint, view).toContain(w.hint);
  });
}

const cases: Array<{ name: string; files: string | Record<string, string>; want: Want[] }> = [
  {
    name: 'HCL syntax error (from hcl2json, with its position)',
    files: `${V}rule "r" {\n  verdict = \n}\n`,
    want: [{ line: 3, col: 13, summary: 'Invalid expression', hint: 'Expected the start of an expression' }],
  },
  {
    name: 'unknown top-level block type suggests the nearest',
    files: `${V}endpont "https" "x" {\n  hosts = ["a.example.com"]\n}\n`,
    want: [{ line: 2, col: 1, summary: 'Unsupported block type', hint: 'did you mean "endpoint"?' }],
  },
  {
    name: 'unknown top-level attribute',
    files: `${V}version = 2\n`,
    want: [{ line: 2, col: 1, summary: 'Unsupported argument', hint: '"version" is not a top-level attribute' }],
  },
  {
    name: 'unknown attribute in an endpoint suggests the nearest',
    files: `${V}endpoint "https" "github" {\n  hosts = ["api.github.com"]\n  hostz = ["x"]\n}\n`,
    want: [{ line: 4, col: 3, summary: 'Unsupported argument', hint: 'an https endpoint has no attribute "hostz"; did you mean "hosts"?' }],
  },
  {
    name: 'wrong label count on an endpoint',
    files: `${V}endpoint "github" {\n  hosts = ["api.github.com"]\n}\n`,
    want: [{ line: 2, col: 1, summary: 'Wrong number of labels', hint: 'write endpoint "<type>" "<name>"' }],
  },
  {
    name: 'extra label on a rule',
    files: `${GH.replace(/^/, V)}rule "a" "b" {\n  endpoint = https.github\n  verdict = "allow"\n}\n`,
    want: [{ line: 5, col: 10, summary: 'Wrong number of labels', hint: 'a rule block takes 1 label' }],
  },
  {
    name: 'unsupported endpoint type lists the supported ones',
    files: `${V}endpoint "ssh" "bastion" {\n  host = "bastion:22"\n}\n`,
    want: [
      {
        line: 2,
        col: 10,
        summary: 'Unsupported endpoint type',
        hint: 'supported endpoint types: https, postgres, clickhouse_native, clickhouse_http, kubernetes',
      },
    ],
  },
  {
    name: 'unsupported credential type lists the supported ones',
    files: `${V}${GH}credential "cookie_token" "c" {\n  endpoint = https.github\n}\n`,
    want: [{ line: 5, col: 12, summary: 'Unsupported credential type', hint: 'supported credential types: bearer_token, header_token' }],
  },
  {
    name: 'misspelt reference: Unknown variable with did-you-mean, at the reference',
    files: `${V}endpoint "postgres" "pg-prod" {\n  host = "db:5432"\n}\nrule "r" {\n  endpoint = postgres.pg-prodd\n  verdict  = "deny"\n}\n`,
    want: [{ line: 6, col: 14, summary: 'Unknown variable', hint: 'there is no endpoint named "pg-prodd"; did you mean "pg-prod"?' }],
  },
  {
    name: 'reference with the right name but the wrong type',
    files: `${V}${GH}rule "r" {\n  endpoint = postgres.github\n  verdict  = "deny"\n}\n`,
    want: [{ line: 6, col: 14, summary: 'Unknown variable', hint: '"github" is https.github — write https.github' }],
  },
  {
    name: 'misspelt reference type',
    files: `${V}${GH}rule "r" {\n  endpoint = htps.github\n  verdict  = "deny"\n}\n`,
    want: [{ line: 6, col: 14, summary: 'Unknown variable', hint: 'there is no block type "htps"; did you mean "https"?' }],
  },
  {
    name: 'reference to the wrong kind',
    files: `${V}${GH}credential "bearer_token" "gh" {\n  endpoint = https.github\n}\nrule "r" {\n  endpoints = [https.github, bearer_token.gh]\n  verdict   = "deny"\n}\n`,
    want: [{ line: 9, col: 30, summary: 'Wrong kind of reference', hint: 'bearer_token.gh is a credential' }],
  },
  {
    name: 'quoted reference',
    files: `${V}${GH}rule "r" {\n  endpoint = "https.github"\n  verdict  = "deny"\n}\n`,
    want: [{ line: 6, col: 14, summary: 'Expected a reference', hint: 'must be a bare reference https.github (no quotes)' }],
  },
  {
    name: 'duplicate endpoint name across files',
    files: { 'a.hcl': `${V}${GH}`, 'b.hcl': 'endpoint "postgres" "github" {\n  host = "db:5432"\n}\n' },
    want: [{ file: 'b.hcl', line: 1, col: 21, summary: 'Duplicate endpoint', hint: 'already declared as https.github at' }],
  },
  {
    name: 'gateway block twice across files',
    files: { 'a.hcl': `${V}gateway {\n}\n`, 'b.hcl': 'gateway {\n}\n' },
    want: [{ file: 'b.hcl', line: 1, col: 1, summary: 'Duplicate block', hint: 'only one gateway block is allowed in a document' }],
  },
  {
    name: 'verdict and approve together',
    files: `${V}${GH}rule "r" {\n  endpoint = https.github\n  verdict  = "deny"\n  approve  = [builtin.dashboard]\n}\n`,
    want: [{ line: 8, col: 3, summary: 'Conflicting arguments', hint: 'exactly one of "verdict" and "approve"' }],
  },
  {
    name: 'neither verdict nor approve',
    files: `${V}${GH}rule "r" {\n  endpoint = https.github\n}\n`,
    want: [{ line: 5, col: 1, summary: 'Missing required argument', hint: 'a rule needs "verdict"' }],
  },
  {
    name: 'verdict with a bad value',
    files: `${V}${GH}rule "r" {\n  endpoint = https.github\n  verdict  = "block"\n}\n`,
    want: [{ line: 7, col: 14, summary: 'Invalid value', hint: '"verdict" must be "allow" or "deny", not "block"' }],
  },
  {
    name: 'mixed-family rule',
    files: `${V}${GH}endpoint "postgres" "pg" {\n  host = "db:5432"\n}\nrule "r" {\n  endpoints = [https.github, postgres.pg]\n  verdict   = "deny"\n}\n`,
    want: [{ line: 9, col: 30, summary: 'Mixed-family rule', hint: 'https.github is http but postgres.pg is sql' }],
  },
  {
    name: 'two credentials without placeholder for one endpoint in a profile',
    files: `${V}${GH}credential "bearer_token" "a" {\n  endpoint = https.github\n}\ncredential "bearer_token" "b" {\n  endpoint = https.github\n}\nprofile "p" {\n  credentials = [bearer_token.a, bearer_token.b]\n}\n`,
    want: [{ line: 12, col: 34, summary: 'Ambiguous profile credentials', hint: 'bearer_token.a and bearer_token.b both reach https.github' }],
  },
  {
    name: 'one placeholder for two credentials in a profile',
    files: `${V}${GH}credential "bearer_token" "a" {\n  endpoint = https.github\n}\ncredential "bearer_token" "b" {\n  endpoint = https.github\n}\nprofile "p" {\n  credentials = [\n    { credential = bearer_token.a, placeholder = "PH" },\n    { credential = bearer_token.b, placeholder = "PH" },\n  ]\n}\n`,
    want: [{ line: 14, col: 20, summary: 'Ambiguous profile credentials', hint: 'placeholder "PH" is used for both bearer_token.a and bearer_token.b' }],
  },
  {
    name: 'bad duration',
    files: `${V}defaults {\n  human_timeout = "5 minutes"\n}\n`,
    want: [{ line: 3, col: 19, summary: 'Invalid duration', hint: '"5 minutes" is not a duration' }],
  },
  {
    name: 'an audit backlog of no records',
    files: `${V}gateway {\n  audit_backlog = 0\n}\n`,
    want: [{ line: 3, col: 19, summary: 'Invalid value', hint: '"audit_backlog" must be at least 1, not 0' }],
  },
  {
    name: 'a body idle timeout of zero',
    files: `${V}gateway {\n  limits {\n    body_idle_timeout = "0s"\n  }\n}\n`,
    want: [{ line: 4, col: 25, summary: 'Invalid duration', hint: '"body_idle_timeout" must be at least 1s' }],
  },
  {
    name: 'a body idle timeout that is not a duration',
    files: `${V}gateway {\n  limits {\n    body_idle_timeout = "1 minute"\n  }\n}\n`,
    want: [{ line: 4, col: 25, summary: 'Invalid duration', hint: '"1 minute" is not a duration' }],
  },
  {
    name: 'a per-device connection limit of none',
    files: `${V}gateway {\n  limits {\n    connections_per_device = 0\n  }\n}\n`,
    want: [{ line: 4, col: 30, summary: 'Invalid value', hint: '"connections_per_device" must be at least 1, not 0' }],
  },
  {
    name: 'an audit body limit that is not a size',
    files: `${V}gateway {\n  audit_body_limit = "a lot"\n}\n`,
    want: [{ line: 3, col: 22, summary: 'Invalid size', hint: '"a lot" is not a size' }],
  },
  {
    name: 'bad size',
    files: `${V}gateway {\n  limits {\n    body_buffer = "1TB"\n  }\n}\n`,
    want: [{ line: 4, col: 19, summary: 'Invalid size', hint: 'B, KB, MB, GB, KiB, MiB or GiB' }],
  },
  {
    name: 'a wildcard over a top-level domain',
    files: `${V}endpoint "https" "all" {\n  hosts = ["api.example.com", "*.com"]\n}\n`,
    want: [{ line: 3, col: 31, summary: 'Wildcard too broad: "*.com"', hint: 'at least two labels after "*."' }],
  },
  {
    name: 'an inner wildcard',
    files: `${V}endpoint "https" "x" {\n  hosts = ["api.*.example.com"]\n}\n`,
    want: [{ line: 3, col: 12, summary: 'Invalid wildcard in "api.*.example.com"', hint: 'whole first label' }],
  },
  {
    name: 'CEL: a variable of another family, caret inside the heredoc',
    files: `${V}${GH}rule "r" {\n  endpoint  = https.github\n  condition = <<-EOT\n    http.method == 'GET' &&\n      sql.verb == 'x'\n  EOT\n  verdict   = "deny"\n}\n`,
    want: [{ line: 9, col: 7, summary: 'Invalid condition', hint: 'Unknown variable: sql; rule "r" is on http endpoints, whose conditions see http, content' }],
  },
  {
    name: 'CEL: a condition that is not a bool',
    files: `${V}${GH}rule "r" {\n  endpoint  = https.github\n  condition = "http.path"\n  verdict   = "deny"\n}\n`,
    want: [{ line: 7, col: 16, summary: 'Invalid condition', hint: 'condition must be a bool, but this expression is string' }],
  },
  {
    name: 'CEL: a syntax error points at the offending column',
    files: `${V}${GH}rule "r" {\n  endpoint  = https.github\n  condition = "http.method == 'GET' &&"\n  verdict   = "deny"\n}\n`,
    want: [{ line: 7, col: 39, summary: 'Invalid condition', hint: 'Unexpected token: EOF' }],
  },
  {
    name: 'CEL: a type error',
    files: `${V}${GH}rule "r" {\n  endpoint  = https.github\n  condition = "http.path + 1 == 'x'"\n  verdict   = "deny"\n}\n`,
    want: [{ line: 7, col: 16, summary: 'Invalid condition', hint: 'no such overload: string + int' }],
  },
  {
    name: 'missing required attribute',
    files: `${V}endpoint "https" "x" {\n  description = "no hosts"\n}\n`,
    want: [{ line: 2, col: 1, summary: 'Missing required argument', hint: 'an https endpoint needs "hosts"' }],
  },
  {
    name: 'template interpolation in a plain string',
    files: `${V}${GH}rule "r" {\n  endpoint = https.github\n  verdict  = "deny"\n  reason   = "denied for \${var.user}"\n}\n`,
    want: [{ line: 8, col: 14, summary: 'Template interpolation is not supported', hint: 'write $${ for a literal ${' }],
  },
  {
    name: 'a credential bound to an endpoint it cannot authenticate',
    files: `${V}${GH}credential "postgres_credential" "db" {\n  endpoint = https.github\n  user     = "app"\n}\n`,
    want: [{ line: 6, col: 14, summary: 'Credential cannot authenticate this endpoint', hint: 'postgres_credential, which works with postgres endpoints' }],
  },
  {
    name: 'endpoint and endpoints together',
    files: `${V}${GH}rule "r" {\n  endpoint  = https.github\n  endpoints = [https.github]\n  verdict   = "deny"\n}\n`,
    want: [{ line: 7, col: 3, summary: 'Conflicting arguments', hint: 'either "endpoint" or "endpoints"' }],
  },
  {
    name: 'priority that is not a whole number',
    files: `${V}${GH}rule "r" {\n  endpoint = https.github\n  priority = 1.5\n  verdict  = "deny"\n}\n`,
    want: [{ line: 7, col: 14, summary: 'Incorrect attribute value type', hint: '"priority" must be a whole number, not a number' }],
  },
  {
    name: 'one host claimed by two endpoints of a profile',
    files: `${V}${GH}endpoint "https" "gh2" {\n  hosts = ["API.github.com."]\n}\ncredential "bearer_token" "a" {\n  endpoint = https.github\n}\ncredential "bearer_token" "b" {\n  endpoint = https.gh2\n}\nprofile "p" {\n  credentials = [bearer_token.a, bearer_token.b]\n}\n`,
    want: [{ line: 14, col: 9, summary: 'Host claimed twice', hint: '"api.github.com" belongs to both https.github and https.gh2' }],
  },
  {
    name: 'unknown key in a profile entry',
    files: `${V}${GH}credential "bearer_token" "a" {\n  endpoint = https.github\n}\nprofile "p" {\n  credentials = [{ credential = bearer_token.a, placeholdr = "PH" }]\n}\n`,
    want: [{ line: 9, col: 49, summary: 'Unsupported argument', hint: 'did you mean "placeholder"?' }],
  },
  {
    name: 'an LLM approver with a credential of the wrong type',
    files: `${V}${GH}credential "bearer_token" "a" {\n  endpoint = https.github\n}\napprover "llm_approver" "judge" {\n  model      = "claude-sonnet-4-5"\n  credential = bearer_token.a\n  policy     = "be careful"\n}\n`,
    want: [{ line: 10, col: 16, summary: 'Wrong credential type', hint: 'needs an anthropic_manual_key credential' }],
  },
  {
    name: 'a quorum larger than the approver list',
    files: `${V}approver "human_approver" "ops" {\n  approvers         = ["U1", "U2"]\n  require_approvers = 3\n}\n`,
    want: [{ line: 4, col: 23, summary: 'Invalid value', hint: '"require_approvers" is 3 but only 2 approvers are listed' }],
  },
  {
    name: 'an attribute written as a block',
    files: `${V}gateway {\n  limits = { body_buffer = "1MiB" }\n}\n`,
    want: [{ line: 3, col: 3, summary: 'Unsupported argument', hint: '"limits" is a block: write limits { … } without "="' }],
  },
  {
    name: 'ca_cert naming a file that does not exist',
    files: `${V}endpoint "https" "x" {\n  hosts   = ["x.example.com"]\n  ca_cert = "<<file:certs/missing.pem>>"\n}\n`,
    want: [{ line: 4, col: 13, summary: 'Cannot read file', hint: 'no such file' }],
  },
  {
    name: 'a rule pinned to a credential of another endpoint',
    files: `${V}${GH}endpoint "https" "x" {\n  hosts = ["x.example.com"]\n}\ncredential "bearer_token" "x" {\n  endpoint = https.x\n}\nrule "r" {\n  endpoint   = https.github\n  credential = bearer_token.x\n  verdict    = "deny"\n}\n`,
    want: [{ line: 13, col: 16, summary: 'Credential never applies', hint: 'bearer_token.x is not bound to any endpoint of rule "r"' }],
  },
  {
    name: 'an explicit local_profile that does not exist',
    files: `${V}gateway {\n  local_profile = "agents"\n  proxy {\n    listen = "127.0.0.1:3128"\n  }\n}\n`,
    want: [{ line: 3, col: 19, summary: 'Unknown profile', hint: 'local listeners use profile "agents", which is not declared' }],
  },
  {
    name: 'a rule declared twice',
    files: `${V}${GH}rule "r" {\n  endpoint = https.github\n  verdict  = "deny"\n}\nrule "r" {\n  endpoint = https.github\n  verdict  = "allow"\n}\n`,
    want: [{ line: 9, col: 6, summary: 'Duplicate rule', hint: 'rule "r" is already declared at' }],
  },
];

describe('invalid policies: exact diagnostics', () => {
  it('has at least 25 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25);
  });
  for (const c of cases) {
    it(c.name, async () => {
      expectErrors(await diagnose(c.files), c.want);
    });
  }
});

describe('schema_version', () => {
  it('greater than supported: one "upgrade" error and nothing else', async () => {
    const ds = await diagnose(`schema_version = 2\nendpoint "ssh" "x" {}\nrule "r" {}\n`);
    expect(ds).toHaveLength(1);
    expectErrors(ds, [{ line: 1, col: 18, summary: 'Unsupported schema version', hint: 'upgrade clawpatrol' }]);
  });

  it('absent: a warning, and the policy loads', async () => {
    const dir = writePolicyDir({ 'p.hcl': GH });
    const r = await loadPolicy(join(dir, 'p.hcl'));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.warnings.map((w) => w.summary)).toContain('Missing schema_version');
  });
});

describe('diagnostic format', () => {
  it('is `error: <file>:<line>:<col>: <summary> — <hint>` with a caret excerpt for CEL', async () => {
    const dir = writePolicyDir({ 'db.hcl': `${V}${GH}rule "r" {\n  endpoint  = https.github\n  condition = "http.method == 1 + "\n  verdict   = "deny"\n}\n` });
    const r = await loadPolicy(dir);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const text = formatDiagnostic(errors(r.diagnostics)[0]!);
    const [head, excerpt, caret] = text.split('\n');
    expect(head).toBe(`error: ${join(dir, 'db.hcl')}:7:35: Invalid condition — Unexpected token: EOF; rule "r" is on http endpoints, whose conditions see http, content`);
    expect(excerpt).toBe(`7 |   condition = "http.method == 1 + "`);
    expect(caret!.indexOf('^')).toBe('7 | '.length + 34);
  });

  it('reports every problem of a document in one run, sorted by position', async () => {
    const ds = await diagnose({
      'a.hcl': `${V}endpoint "https" "x" {\n  hostz = 1\n}\n`,
      'b.hcl': `rule "r" {\n  endpoint = https.y\n  verdict = "maybe"\n}\n`,
    });
    expect(errors(ds).map((d) => `${d.pos.file}:${d.pos.line}`)).toEqual(['a.hcl:2', 'a.hcl:3', 'b.hcl:2', 'b.hcl:3']);
  });
});

describe('SQL credentials without placeholders', () => {
  const base = `${V}endpoint "postgres" "db" {\n  host = "db:5432"\n}\n`;
  const cred = (name: string, user: string, db?: string) =>
    `credential "postgres_credential" "${name}" {\n  endpoint = postgres.db\n  user = "${user}"\n${db ? `  database = "${db}"\n` : ''}}\n`;

  it('are told apart by user and database', async () => {
    const dir = writePolicyDir({
      'p.hcl': `${base}${cred('ro', 'app_ro')}${cred('rw', 'app_rw')}${cred('rw-audit', 'app_rw', 'audit')}profile "p" {\n  credentials = [postgres_credential.ro, postgres_credential.rw, postgres_credential.rw-audit]\n}\n`,
    });
    expect((await loadPolicy(dir)).ok).toBe(true);
  });

  it('with the same user and database are ambiguous, whichever pair it is', async () => {
    const ds = await diagnose(
      `${base}${cred('ro', 'app_ro')}${cred('rw', 'app_rw')}${cred('rw2', 'app_rw')}profile "p" {\n  credentials = [postgres_credential.ro, postgres_credential.rw, postgres_credential.rw2]\n}\n`,
    );
    expectErrors(ds, [{ line: 18, col: 66, summary: 'Ambiguous profile credentials', hint: 'postgres_credential.rw and postgres_credential.rw2 both reach postgres.db' }]);
  });
});

describe('certificates', () => {
  it('a ca_cert that is PEM-shaped but not a certificate', async () => {
    const ds = await diagnose(`${V}endpoint "https" "x" {\n  hosts   = ["x.example.com"]\n  ca_cert = "-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----"\n}\n`);
    expectErrors(ds, [{ line: 4, col: 13, summary: 'Invalid certificate', hint: 'certificate 1 does not parse' }]);
  });
});
