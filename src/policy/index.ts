/**
 * The policy core's public face. Protocol engines, the gateway and the CLI
 * import from here:
 *
 *   const r = await loadPolicy('policies/');
 *   if (!r.ok) r.diagnostics.map(formatDiagnostic) …
 *   r.policy.decide(action) → Decision
 */
import type { Diagnostic } from './types.js';
import { loadDocument } from './load.js';
import { compilePolicy, type CompiledPolicy } from './compiled.js';

export type { CompiledPolicy } from './compiled.js';
export { generatedPlaceholder } from './compiled.js';
export { formatDiagnostic, sortDiagnostics } from './diagnostics.js';
export { PolicyWatcher, PolicyLoadError, type WatchOptions } from './watcher.js';
export { placeholdersFromHeaders, placeholderHeaders, profilePlaceholders } from './placeholders.js';
export type * from './types.js';

export type LoadResult =
  | { ok: true; policy: CompiledPolicy; warnings: Diagnostic[] }
  | { ok: false; diagnostics: Diagnostic[] };

/** Load a policy file or directory (every `*.hcl` directly inside, sorted). Never throws for policy problems. */
export async function loadPolicy(path: string): Promise<LoadResult> {
  const doc = await loadDocument(path);
  if (!doc.ok) return doc;
  return { ok: true, policy: compilePolicy(doc.document), warnings: doc.warnings };
}
