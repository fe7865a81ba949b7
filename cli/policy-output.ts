/** Output helpers shared by `validate` and `test`. */
import type { Decision, Diagnostic } from '../src/policy/index.js';
import type { FixtureMatch } from '../src/policy/fixtures.js';

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function diagnosticJson(d: Diagnostic): Record<string, unknown> {
  const out: Record<string, unknown> = {
    severity: d.severity,
    file: d.pos.file,
    line: d.pos.line,
    col: d.pos.col,
    summary: d.summary,
    hint: d.hint,
  };
  if (d.detail) out['detail'] = d.detail;
  return out;
}

/** The fields a fixture's `match` names, in a fixed order. */
const MATCH_KEYS = ['verdict', 'rule', 'endpoint', 'credential', 'approve', 'failClosed', 'passthrough', 'effective', 'reason'] as const;

function fmtValue(v: unknown): string {
  if (typeof v === 'string') return v === '' || /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  if (Array.isArray(v)) return `[${v.join(', ')}]`;
  return String(v);
}

/** `verdict=deny rule=github-writes` — only the keys the fixture asked about. */
export function formatWant(want: FixtureMatch): string {
  return MATCH_KEYS.filter((k) => want[k] !== undefined)
    .map((k) => `${k}=${fmtValue(want[k])}`)
    .join(' ');
}

/** The same keys as `want`, read from the decision, then its reason. */
export function formatGot(want: FixtureMatch, got: Decision): string {
  const keys = MATCH_KEYS.filter((k) => want[k] !== undefined && k !== 'reason');
  const parts = keys.map((k) => `${k}=${fmtValue(got[k])}`);
  return `${parts.join(' ')} (${got.reason})`;
}
