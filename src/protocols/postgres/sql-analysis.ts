/**
 * The result of inspecting one SQL message, how it is assembled from what
 * the tree walk collected, and how several results are merged.
 */
import { mostDangerous } from './sql-verbs.js';

export interface SqlAnalysis {
  /** false: did not parse (or empty) → verb etc. are unknown. */
  inspected: boolean;
  /** Parser (or inspector) message when !inspected. */
  error?: string;
  /** Most dangerous verb of what the message runs now ('' when !inspected). */
  verb: string;
  /** Every statement kind in the tree, deduplicated, lower-case, sorted. */
  verbs: string[];
  /** Qualified as written ('public.users') and bare ('users'); lower-case unless quoted; sorted. */
  tables: string[];
  /** Lower-case, qualified ('pg_catalog.pg_read_file') and bare ('pg_read_file'); sorted. */
  functions: string[];
  statementCount: number;
  /** COPY … TO/FROM PROGRAM anywhere in the message. */
  copyProgram: boolean;
  /** PREPARE name AS <body>, in message order. */
  prepares: Array<{ name: string; analysis: SqlAnalysis }>;
  /** EXECUTE name (statements that run now), in message order, deduplicated. */
  executes: string[];
  /** FETCH / MOVE cursor (statements that run now), deduplicated: a protocol-level portal runs its statement. */
  fetches: string[];
  /** DEALLOCATE name / DEALLOCATE ALL. */
  deallocates: string[] | 'all';
}

/** Mutable accumulator the tree walk fills. */
export class Collected {
  /** Verbs of statements that run as part of this message. */
  readonly nowVerbs = new Set<string>();
  /** Verbs of statements stored for later (PREPARE bodies, rule actions, function bodies, views). */
  readonly laterVerbs = new Set<string>();
  readonly tables = new Set<string>();
  readonly functions = new Set<string>();
  copyProgram = false;
  readonly prepares: Array<{ name: string; analysis: SqlAnalysis }> = [];
  readonly executes = new Set<string>();
  readonly fetches = new Set<string>();
  deallocates: Set<string> | 'all' = new Set<string>();
}

const sorted = (values: Iterable<string>): string[] => [...values].sort();

export function buildAnalysis(c: Collected, statementCount: number): SqlAnalysis {
  const verbs = new Set([...c.nowVerbs, ...c.laterVerbs]);
  // Every statement contributes a "now" verb; the fallbacks only guard against a walker bug.
  const verb =
    mostDangerous(c.nowVerbs, c.copyProgram) || mostDangerous(c.laterVerbs, c.copyProgram) || 'unknown';
  verbs.add(verb);
  return {
    inspected: true,
    verb,
    verbs: sorted(verbs),
    tables: sorted(c.tables),
    functions: sorted(c.functions),
    statementCount,
    copyProgram: c.copyProgram,
    prepares: c.prepares,
    executes: [...c.executes],
    fetches: [...c.fetches],
    deallocates: c.deallocates === 'all' ? 'all' : [...c.deallocates],
  };
}

export function uninspected(error: string): SqlAnalysis {
  return {
    inspected: false,
    error,
    verb: '',
    verbs: [],
    tables: [],
    functions: [],
    statementCount: 0,
    copyProgram: false,
    prepares: [],
    executes: [],
    fetches: [],
    deallocates: [],
  };
}

/**
 * Merge several analyses into one, e.g. an `EXECUTE p` message with the
 * analysis of what `p` was prepared as. `verb` is the most dangerous of the
 * parts' verbs; lists are unions. If any part was not inspected the merge
 * is not inspected either (fail closed), with the first part's error.
 */
export function mergeAnalyses(parts: SqlAnalysis[]): SqlAnalysis {
  if (parts.length === 0) return uninspected('nothing to merge');
  const failed = parts.find((p) => !p.inspected);
  if (failed) return uninspected(failed.error ?? 'statement not inspected');
  const copyProgram = parts.some((p) => p.copyProgram);
  const verb = mostDangerous(parts.map((p) => p.verb), copyProgram);
  const union = (pick: (p: SqlAnalysis) => string[]): string[] => sorted(new Set(parts.flatMap(pick)));
  const allDeallocated = parts.some((p) => p.deallocates === 'all');
  return {
    inspected: true,
    verb,
    verbs: union((p) => p.verbs),
    tables: union((p) => p.tables),
    functions: union((p) => p.functions),
    statementCount: parts.reduce((n, p) => n + p.statementCount, 0),
    copyProgram,
    prepares: parts.flatMap((p) => p.prepares),
    executes: [...new Set(parts.flatMap((p) => p.executes))],
    fetches: [...new Set(parts.flatMap((p) => p.fetches))],
    deallocates: allDeallocated ? 'all' : [...new Set(parts.flatMap((p) => p.deallocates as string[]))],
  };
}

/**
 * Deep-freeze an analysis: cached results are shared between callers, and a
 * caller that tried to edit one would otherwise change the facts every
 * later identical statement sees.
 */
export function freezeAnalysis(a: SqlAnalysis): SqlAnalysis {
  for (const p of a.prepares) {
    freezeAnalysis(p.analysis);
    Object.freeze(p);
  }
  Object.freeze(a.verbs);
  Object.freeze(a.tables);
  Object.freeze(a.functions);
  Object.freeze(a.prepares);
  Object.freeze(a.executes);
  Object.freeze(a.fetches);
  if (Array.isArray(a.deallocates)) Object.freeze(a.deallocates);
  return Object.freeze(a);
}

/** Rough retained size in bytes (UTF-16 strings plus object overhead), for the cache budget. */
export function analysisBytes(a: SqlAnalysis): number {
  const strings = (xs: readonly string[]): number => xs.reduce((n, s) => n + 16 + 2 * s.length, 0);
  let bytes = 200 + 2 * (a.verb.length + (a.error?.length ?? 0));
  bytes += strings(a.verbs) + strings(a.tables) + strings(a.functions) + strings(a.executes) + strings(a.fetches);
  if (Array.isArray(a.deallocates)) bytes += strings(a.deallocates);
  for (const p of a.prepares) bytes += 48 + 2 * p.name.length + analysisBytes(p.analysis);
  return bytes;
}
