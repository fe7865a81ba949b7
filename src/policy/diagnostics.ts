/**
 * Diagnostics: every problem in a policy is reported as
 * `error: <file>:<line>:<col>: <summary> — <hint>` plus optional detail lines
 * (a CEL excerpt with a caret). Loaders collect them instead of throwing, so
 * one run shows every problem of a document.
 */
import type { Diagnostic, SourcePos } from './types.js';

export function error(pos: SourcePos, summary: string, hint: string, detail?: string): Diagnostic {
  return detail === undefined
    ? { severity: 'error', pos, summary, hint }
    : { severity: 'error', pos, summary, hint, detail };
}

export function warning(pos: SourcePos, summary: string, hint: string, detail?: string): Diagnostic {
  return detail === undefined
    ? { severity: 'warning', pos, summary, hint }
    : { severity: 'warning', pos, summary, hint, detail };
}

export function formatDiagnostic(d: Diagnostic): string {
  const head = `${d.severity}: ${d.pos.file}:${d.pos.line}:${d.pos.col}: ${d.summary}${d.hint ? ` — ${d.hint}` : ''}`;
  return d.detail ? `${head}\n${d.detail}` : head;
}

/** Stable order for output: file, line, column, then the order found. */
export function sortDiagnostics(ds: Diagnostic[]): Diagnostic[] {
  return ds
    .map((d, i) => ({ d, i }))
    .sort(
      (a, b) =>
        a.d.pos.file.localeCompare(b.d.pos.file) ||
        a.d.pos.line - b.d.pos.line ||
        a.d.pos.col - b.d.pos.col ||
        a.i - b.i,
    )
    .map((x) => x.d);
}

/** Edit distance (insert, delete, substitute, adjacent transpose) for "did you mean". */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  const d: number[][] = Array.from({ length: m + 1 }, () => new Array<number>(n + 1).fill(0));
  for (let i = 0; i <= m; i++) d[i]![0] = i;
  for (let j = 0; j <= n; j++) d[0]![j] = j;
  for (let i = 1; i <= m; i++) {
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[m]![n]!;
}

/**
 * The closest candidate, when it is close enough to be a plausible typo
 * (distance at most a third of the longer name, minimum 2). Ties go to the
 * first candidate in the order given, so suggestions are deterministic.
 */
export function nearest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const lower = word.toLowerCase();
  for (const c of candidates) {
    const dist = editDistance(lower, c.toLowerCase());
    if (dist < bestDistance) {
      best = c;
      bestDistance = dist;
    }
  }
  if (best === undefined) return undefined;
  const limit = Math.max(2, Math.floor(Math.max(word.length, best.length) / 3));
  return bestDistance <= limit ? best : undefined;
}

/** `; did you mean "x"?` or '' — appended to hints. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const n = nearest(word, candidates);
  return n === undefined ? '' : `; did you mean "${n}"?`;
}

/** The excerpt + caret block CEL diagnostics carry, using file line numbers. */
export function caretExcerpt(lineText: string, line: number, col: number): string {
  const gutter = `${line} | `;
  return `${gutter}${lineText}\n${' '.repeat(gutter.length + Math.max(0, col - 1))}^`;
}
