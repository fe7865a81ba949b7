/**
 * A real policy + real enforcer for Postgres engine tests: the HCL goes
 * through `loadPolicy`, decisions through `createEnforcer`; only the vault
 * (an in-test secret map), the approval chain (scripted) and the audit sink
 * (records kept in memory) are test doubles, because the engine only ever
 * sees them through the enforcer.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPolicy, formatDiagnostic, type CompiledPolicy } from '../../../src/policy/index.js';
import type { Action, Decision } from '../../../src/policy/types.js';
import { createEnforcer } from '../../../src/gateway/enforcer.js';
import type { ApprovalOutcome, AuditRecordInput, AuditSink, Enforcer, SecretResolver } from '../../../src/gateway/contracts.js';

export interface Harness {
  policy: CompiledPolicy;
  enforcer: Enforcer;
  audit: AuditRecordInput[];
  /** Actions the enforcer saw, in order. */
  actions: Action[];
  /** Answer approvals: default allow. Receives the abort signal. */
  approve: (action: Action, decision: Decision, signal?: AbortSignal) => Promise<ApprovalOutcome>;
  cleanup(): void;
}

export async function makeHarness(hcl: string, secrets: Record<string, Record<string, string>>): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'cp-pg-policy-'));
  writeFileSync(join(dir, 'policy.hcl'), hcl);
  const loaded = await loadPolicy(join(dir, 'policy.hcl'));
  if (!loaded.ok) throw new Error(loaded.diagnostics.map(formatDiagnostic).join('\n'));
  const policy = loaded.policy;
  const audit: AuditRecordInput[] = [];
  const actions: Action[] = [];
  const sink: AuditSink = {
    append: (r) => {
      audit.push(r);
    },
    flush: async () => {},
    close: async () => {},
  };
  const resolver: SecretResolver = {
    resolve(id) {
      const cred = policy.model.credentials.get(id);
      const slots = secrets[id];
      if (!cred || !slots) return { missing: `credential ${id} has no secret` };
      return { credential: cred, slots };
    },
    allValues: () => Object.values(secrets).flatMap((s) => Object.values(s)),
  };
  const h: Harness = {
    policy,
    audit,
    actions,
    approve: async () => ({ verdict: 'allow', reason: 'approved in test', stages: [] }),
    enforcer: undefined as unknown as Enforcer,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  const inner = createEnforcer({
    policy: () => policy,
    secrets: resolver,
    approvals: { run: (a, d, signal) => h.approve(a, d, signal) },
    audit: sink,
    redactFacts: (a) => a.facts,
  });
  h.enforcer = {
    enforce(action, signal) {
      actions.push(action);
      return inner.enforce(action, signal);
    },
    // Engines take this path when no approval is needed; an approval falls back to `enforce`.
    enforceNow(action) {
      const now = inner.enforceNow!(action);
      if (now) actions.push(action);
      return now;
    },
  };
  return h;
}

/** Wait until queued promise callbacks and I/O callbacks have run. */
export function settle(ms = 0): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * HCL for the usual engine-test policy: one postgres endpoint `postgres.db`,
 * one credential in the "default" profile, and `rules` appended.
 */
export function oneCredentialPolicy(opts: {
  host: string;
  credential: string;
  user: string;
  sslmode?: string;
  bodyBuffer?: string;
  rules?: string;
}): string {
  return `
schema_version = 1
${opts.bodyBuffer ? `gateway {\n  limits {\n    body_buffer = "${opts.bodyBuffer}"\n  }\n}` : ''}
endpoint "postgres" "db" {
  host = "${opts.host}"
${opts.sslmode ? `  sslmode = "${opts.sslmode}"` : ''}
}
credential "postgres_credential" "${opts.credential}" {
  endpoint = postgres.db
  user     = "${opts.user}"
}
profile "default" {
  credentials = [postgres_credential.${opts.credential}]
}
${opts.rules ?? ''}
`;
}
