/**
 * Test helpers: write policy text into a temp dir and load it through the
 * real loader (hcl2json, schema checks, CEL compile).
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPolicy, formatDiagnostic, type CompiledPolicy } from '../../src/policy/index.js';
import type { Action, Diagnostic, HttpFacts, SqlFacts, K8sFacts } from '../../src/policy/types.js';

export function tempDir(prefix = 'cp-policy-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Write files (name → text) into a fresh directory; returns the directory. */
export function writePolicyDir(files: Record<string, string>): string {
  const dir = tempDir();
  for (const [name, text] of Object.entries(files)) {
    const full = join(dir, name);
    mkdirSync(join(full, '..'), { recursive: true });
    writeFileSync(full, text);
  }
  return dir;
}

export const HEADER = 'schema_version = 1\n';

/** Load text as one file (`policy.hcl`); throws with formatted diagnostics when invalid. */
export async function compile(text: string): Promise<CompiledPolicy> {
  const dir = writePolicyDir({ 'policy.hcl': text });
  const r = await loadPolicy(join(dir, 'policy.hcl'));
  if (!r.ok) throw new Error(r.diagnostics.map(formatDiagnostic).join('\n'));
  return r.policy;
}

/** A policy with one rule on an https endpoint (and one on postgres, one on kubernetes). */
export async function oneRule(family: 'http' | 'sql' | 'k8s', condition: string, verdict: 'allow' | 'deny' = 'deny') {
  const endpoint = { http: 'https.api', sql: 'postgres.db', k8s: 'kubernetes.k8s' }[family];
  return compile(`${HEADER}
endpoint "https" "api" { hosts = ["api.example.com"] }
endpoint "postgres" "db" { host = "db.example.com:5432" }
endpoint "kubernetes" "k8s" { server = "https://k8s.example.com:6443" }
rule "r" {
  endpoint  = ${endpoint}
  condition = ${JSON.stringify(condition)}
  verdict   = "${verdict}"
}
`);
}

/** Load text expected to be invalid; returns the diagnostics with file paths relative to the temp dir. */
export async function diagnose(files: Record<string, string> | string): Promise<Diagnostic[]> {
  const dir = writePolicyDir(typeof files === 'string' ? { 'policy.hcl': files } : files);
  const r = await loadPolicy(typeof files === 'string' ? join(dir, 'policy.hcl') : dir);
  if (r.ok) throw new Error('expected the policy to be invalid, but it loaded');
  return r.diagnostics.map((d) => ({ ...d, pos: { ...d.pos, file: d.pos.file.slice(dir.length + 1) } }));
}

export function httpFacts(over: Partial<HttpFacts> = {}): HttpFacts {
  const path = over.path ?? '/';
  return {
    method: 'GET',
    path,
    raw_path: path,
    host: 'api.example.com',
    query: {},
    headers: {},
    body: '',
    body_json: {},
    ...over,
  };
}

export function sqlFacts(over: Partial<SqlFacts> = {}): SqlFacts {
  return {
    verb: 'select',
    verbs: ['select'],
    tables: [],
    functions: [],
    statement: 'SELECT 1',
    database: 'app',
    user: 'reader',
    inspected: true,
    ...over,
  };
}

export function k8sFacts(over: Partial<K8sFacts> = {}): K8sFacts {
  return {
    verb: 'get',
    resource: 'pods',
    namespace: 'default',
    name: '',
    params: {},
    subresource: '',
    api_group: '',
    api_version: 'v1',
    command: [],
    ...over,
  };
}

export function httpAction(host: string, facts: Partial<HttpFacts> = {}, extra: Partial<Action> = {}): Action {
  return { family: 'http', host, facts: { http: httpFacts({ host, ...facts }) }, ...extra };
}

export function sqlAction(host: string, facts: Partial<SqlFacts> = {}, extra: Partial<Action> = {}): Action {
  return { family: 'sql', host, facts: { sql: sqlFacts(facts) }, ...extra };
}
