/**
 * `clawpatrol validate <file|dir> [--json]` — load a policy the way the
 * gateway does and report what it declares, or every problem in it.
 * Exit 0 valid, 1 invalid, 2 usage (including a path that does not exist).
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { loadPolicy, formatDiagnostic, type PolicyModel } from '../src/policy/index.js';
import { diagnosticJson, plural } from './policy-output.js';

export interface PolicyCounts {
  endpoints: number;
  rules: number;
  profiles: number;
  credentials: number;
  approvers: number;
}

export function countPolicy(model: PolicyModel): PolicyCounts {
  return {
    endpoints: model.endpoints.size,
    rules: model.rules.length,
    profiles: model.profiles.size,
    credentials: model.credentials.size,
    // builtin.dashboard is always there; count what the document declares.
    approvers: [...model.approvers.values()].filter((a) => a.type !== 'builtin').length,
  };
}

export async function runValidate(path: string, opts: { json?: boolean }, out = process.stdout, err = process.stderr): Promise<number> {
  if (!existsSync(path)) {
    if (opts.json) out.write(`${JSON.stringify({ valid: false, path, error: 'no such file or directory' })}\n`);
    else err.write(`clawpatrol validate: ${path}: no such file or directory\n`);
    return 2;
  }
  const r = await loadPolicy(path);
  if (opts.json) {
    const body = r.ok
      ? { valid: true, path, counts: countPolicy(r.policy.model), files: r.policy.model.files, diagnostics: r.warnings.map(diagnosticJson) }
      : { valid: false, path, diagnostics: r.diagnostics.map(diagnosticJson) };
    out.write(`${JSON.stringify(body, null, 2)}\n`);
    return r.ok ? 0 : 1;
  }
  if (!r.ok) {
    for (const d of r.diagnostics) err.write(`${formatDiagnostic(d)}\n`);
    const errors = r.diagnostics.filter((d) => d.severity === 'error').length;
    err.write(`${path}: invalid — ${plural(errors, 'error')}\n`);
    return 1;
  }
  for (const d of r.warnings) err.write(`${formatDiagnostic(d)}\n`);
  const c = countPolicy(r.policy.model);
  out.write(
    `${path}: valid — ${plural(c.endpoints, 'endpoint')}, ${plural(c.rules, 'rule')}, ${plural(c.profiles, 'profile')}, ` +
      `${plural(c.credentials, 'credential')}, ${plural(c.approvers, 'approver')}\n`,
  );
  return 0;
}

export function register(program: Command): void {
  program
    .command('validate')
    .description('check a policy file or directory and print what it declares')
    .argument('<policy>', 'a policy .hcl file, or a directory of them')
    .option('--json', 'print a JSON report on stdout instead of text')
    .addHelpText(
      'after',
      `
Exit status: 0 valid, 1 invalid (diagnostics on stderr), 2 usage error.
Diagnostics look like:
  error: policies/db.hcl:12:3: Unknown variable — there is no endpoint named "pg-prodd"; did you mean "pg-prod"?`,
    )
    .action(async (path: string, opts: { json?: boolean }) => {
      process.exitCode = await runValidate(path, opts);
    });
}
