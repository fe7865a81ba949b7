/**
 * Secrets from the environment, the vault's fallback:
 *
 *   CLAWPATROL_SECRET_<NAME>_<SLOT>   any slot
 *   CLAWPATROL_SECRET_<NAME>          the type's primary slot (its first)
 *
 * NAME is the credential's name upper-cased with every non-alphanumeric
 * character turned into `_` (`github-ci` → `GITHUB_CI`). A value starting
 * with `@` names a file whose content is the secret (`@@` escapes a literal
 * `@`). When two credential slots map to the same variable the variable is
 * ambiguous and ignored for all of them — guessing could inject one
 * credential's secret into another's upstream.
 */
import { readFileSync } from 'node:fs';
import type { Credential } from '../policy/types.js';
import { slotSpec, normaliseSecretInput } from './slots.js';

export const SECRET_ENV_PREFIX = 'CLAWPATROL_SECRET_';

export function envToken(s: string): string {
  return s.toUpperCase().replace(/[^A-Z0-9]/g, '_');
}

/** Candidate variables for one slot, most specific first. */
export function envNamesFor(cred: Pick<Credential, 'name' | 'type'>, slot: string): string[] {
  const base = SECRET_ENV_PREFIX + envToken(cred.name);
  const names = [`${base}_${envToken(slot)}`];
  if (slotSpec(cred.type).slots[0] === slot) names.push(base);
  return names;
}

export interface EnvSlotBinding {
  /** Variables this slot may read, ambiguous ones removed. */
  names: string[];
  /** Variables that would apply but are claimed by another credential slot too. */
  ambiguous: string[];
}

/** Map every credential slot of a policy to its unambiguous environment variables. */
export function bindEnvNames(credentials: Iterable<Credential>): Map<string, EnvSlotBinding> {
  const claims = new Map<string, string[]>();
  const wanted: Array<[string, string[]]> = [];
  for (const cred of credentials) {
    for (const slot of slotSpec(cred.type).slots) {
      const names = envNamesFor(cred, slot);
      wanted.push([slotKey(cred.id, slot), names]);
      for (const n of names) claims.set(n, [...(claims.get(n) ?? []), slotKey(cred.id, slot)]);
    }
  }
  const out = new Map<string, EnvSlotBinding>();
  for (const [key, names] of wanted) {
    const ambiguous = names.filter((n) => (claims.get(n)?.length ?? 0) > 1);
    out.set(key, { names: names.filter((n) => !ambiguous.includes(n)), ambiguous });
  }
  return out;
}

export function slotKey(owner: string, slot: string): string {
  return `${owner}\0${slot}`;
}

export type EnvLookup =
  | { found: false }
  | { found: true; variable: string; value: string }
  | { found: true; variable: string; error: string };

/** Read a slot's value from the environment (and the file an `@path` value names). */
export function readEnvSecret(binding: EnvSlotBinding | undefined, env: NodeJS.ProcessEnv): EnvLookup {
  if (!binding) return { found: false };
  for (const variable of binding.names) {
    const raw = env[variable];
    if (raw === undefined || raw === '') continue;
    if (raw.startsWith('@@')) return { found: true, variable, value: raw.slice(1) };
    if (raw.startsWith('@')) {
      const path = raw.slice(1);
      try {
        return { found: true, variable, value: normaliseSecretInput(readFileSync(path, 'utf8')) };
      } catch (err) {
        return { found: true, variable, error: `${variable} names file ${path}, which cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
      }
    }
    return { found: true, variable, value: raw };
  }
  return { found: false };
}

/** Whether a variable is present, without reading the file it may name (for `secret list`). */
export function envPresence(binding: EnvSlotBinding | undefined, env: NodeJS.ProcessEnv): string | null {
  if (!binding) return null;
  for (const variable of binding.names) {
    const raw = env[variable];
    if (raw !== undefined && raw !== '') return variable;
  }
  return null;
}
