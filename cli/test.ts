/**
 * `clawpatrol test <config> <fixture|dir> [--json]` — replay recorded
 * actions through the policy's `decide()` (the live code path) and compare
 * with what each fixture expects. Prints `ok`/`FAIL` per fixture, want/got
 * for failures, and `N passed, M failed`.
 * Exit 0 all match, 1 a mismatch or a bad fixture, 2 usage or config error.
 */
import type { Command } from 'commander';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadPolicy, formatDiagnostic } from '../src/policy/index.js';
import { loadFixture, runFixture, type FixtureResult } from '../src/policy/fixtures.js';
import { diagnosticJson, formatGot, formatWant } from './policy-output.js';

/** Fixture files: the file itself, or every `*.json` under the directory (recursive, sorted, no dotfiles). */
export function fixtureFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      if (name.startsWith('.')) continue;
      const full = join(dir, name);
      const st = statSync(full);
      if (st.isDirectory()) walk(full);
      else if (name.endsWith('.json')) out.push(full);
    }
  };
  walk(path);
  return out;
}

function resultJson(r: FixtureResult): Record<string, unknown> {
  const out: Record<string, unknown> = { file: r.file, ok: r.ok };
  if (r.description !== undefined) out['description'] = r.description;
  if (r.error !== undefined) out['error'] = r.error;
  if (r.want !== undefined) out['want'] = r.want;
  if (r.got !== undefined) out['got'] = r.got;
  if (r.mismatched && r.mismatched.length > 0) out['mismatched'] = r.mismatched;
  return out;
}

export async function runTest(config: string, fixtures: string, opts: { json?: boolean }, out = process.stdout, err = process.stderr): Promise<number> {
  for (const p of [config, fixtures]) {
    if (!existsSync(p)) {
      err.write(`clawpatrol test: ${p}: no such file or directory\n`);
      return 2;
    }
  }
  const loaded = await loadPolicy(config);
  if (!loaded.ok) {
    if (opts.json) out.write(`${JSON.stringify({ config, valid: false, diagnostics: loaded.diagnostics.map(diagnosticJson) }, null, 2)}\n`);
    for (const d of loaded.diagnostics) err.write(`${formatDiagnostic(d)}\n`);
    err.write(`clawpatrol test: ${config} is not a valid policy\n`);
    return 2;
  }
  const files = fixtureFiles(fixtures);
  if (files.length === 0) {
    err.write(`clawpatrol test: ${fixtures}: no *.json fixtures found\n`);
    return 2;
  }
  const results: FixtureResult[] = [];
  for (const file of files) {
    let r: FixtureResult;
    try {
      r = await runFixture(loaded.policy, loadFixture(file));
    } catch (e) {
      r = { file, ok: false, error: `could not be replayed: ${e instanceof Error ? e.message : String(e)}` };
    }
    results.push(r);
    if (opts.json) continue;
    if (r.ok) {
      out.write(`ok    ${r.file}\n`);
      continue;
    }
    out.write(`FAIL  ${r.file}\n`);
    if (r.error !== undefined) {
      out.write(`      bad fixture: ${r.error.replace(/\n/g, '\n      ')}\n`);
    } else if (r.want && r.got) {
      out.write(`      want: ${formatWant(r.want)}\n`);
      out.write(`      got:  ${formatGot(r.want, r.got)}\n`);
    }
  }
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  if (opts.json) {
    out.write(`${JSON.stringify({ config, passed, failed, results: results.map(resultJson) }, null, 2)}\n`);
  } else {
    for (const d of loaded.warnings) err.write(`${formatDiagnostic(d)}\n`);
    out.write(`${passed} passed, ${failed} failed\n`);
  }
  return failed === 0 ? 0 : 1;
}

export function register(program: Command): void {
  program
    .command('test')
    .description('replay recorded actions (JSON fixtures) through the policy and check the decisions')
    .argument('<config>', 'a policy .hcl file, or a directory of them')
    .argument('<fixtures>', 'a fixture .json file, or a directory (searched recursively)')
    .option('--json', 'print a JSON report on stdout instead of text')
    .addHelpText(
      'after',
      `
Exit status: 0 every fixture matched, 1 a mismatch or a bad fixture, 2 usage or policy error.
Fixture format: see docs/clawpatrol-test.md.`,
    )
    .action(async (config: string, fixtures: string, opts: { json?: boolean }) => {
      process.exitCode = await runTest(config, fixtures, opts);
    });
}
