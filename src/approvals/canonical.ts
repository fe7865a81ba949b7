/**
 * Stable identities for actions. Coalescing ("is this the same question?")
 * and the judge's verdict cache ("did the judge already see exactly this?")
 * both need a key that is equal for equal content and different for any
 * difference, however small — so it is computed over the *full* facts, never
 * over the truncated view shown to humans or the model.
 */
import { createHash } from 'node:crypto';
import type { Action, Decision } from '../policy/types.js';

/** JSON with object keys sorted at every level, so equal values serialise equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    // No prototype: a key `__proto__` (an agent's header, query or JSON body member) must stay a member.
    // On `{}` it set the prototype instead and vanished, so actions differing only there shared a
    // fingerprint — one judge verdict (cached) or one human answer (coalesced) for both.
    const out = Object.create(null) as Record<string, unknown>;
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Everything an approver is asked about: who sent the action, where it goes,
 * with which credential, under which rule, and the complete facts. Two
 * actions with the same subject get the same answer.
 */
export function subjectOf(action: Action, decision: Decision): unknown {
  return {
    family: action.family,
    host: action.host,
    port: action.port,
    endpoint: decision.endpoint,
    credential: decision.credential,
    profile: action.profile,
    peer: action.peer?.id,
    rule: decision.rule,
    reason: decision.reason,
    facts: action.facts,
  };
}

export function subjectFingerprint(action: Action, decision: Decision): string {
  return sha256Hex(canonicalJson(subjectOf(action, decision)));
}
