/**
 * SQL facts for Postgres: what a policy sees as `sql.*`.
 *
 *   await initSqlParser();                 // once, at startup
 *   const a = analyzeSql(text);            // sync, on every statement
 *   const facts = toSqlFacts(a, { statement: text, database, user });
 *
 * Statements are parsed by the real PostgreSQL grammar (libpg-query), so
 * comments, quoting, dollar quotes and Unicode escapes come out exactly as
 * the server will read them; anything it cannot parse is `inspected: false`
 * and policies fail closed. See docs/sql-facts.md for every fact.
 */
import type { SqlFacts } from '../../policy/types.js';
import { ByteBoundedLru, type CacheStats } from './sql-cache.js';
import {
  Collected,
  analysisBytes,
  buildAnalysis,
  freezeAnalysis,
  uninspected,
  type SqlAnalysis,
} from './sql-analysis.js';
import {
  SqlParserFault,
  SqlParserUnavailable,
  sqlParser,
  sqlParserFaults,
  sqlParserInitialised,
} from './sql-parser.js';
import { SqlWalker } from './sql-walk.js';

export type { SqlAnalysis } from './sql-analysis.js';
export { mergeAnalyses } from './sql-analysis.js';
export { SQL_VERBS, verbDanger } from './sql-verbs.js';
export { initSqlParser } from './sql-parser.js';

/** Default parse-cache budget. Typical entries are well under 1 KiB, so this holds tens of thousands. */
export const DEFAULT_SQL_CACHE_BYTES = 16 * 1024 * 1024;

const cache = new ByteBoundedLru<SqlAnalysis>(DEFAULT_SQL_CACHE_BYTES);

/** Change the parse-cache budget (0 disables caching). */
export function configureSqlCache(options: { maxBytes: number }): void {
  cache.resize(Math.max(0, options.maxBytes));
}

export function clearSqlCache(): void {
  cache.clear();
}

export function sqlCacheStats(): CacheStats & { parserFaults: number } {
  return { ...cache.stats(), parserFaults: sqlParserFaults() };
}

/** Lone UTF-16 surrogates cannot be encoded as UTF-8; the wasm parser would see something else. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Inspect one SQL message (one simple-protocol Query, or one Parse). Pure
 * and synchronous; results are cached by exact text and frozen (shared
 * between callers — copy before changing). Throws only when
 * `initSqlParser()` has never completed.
 */
export function analyzeSql(text: string): SqlAnalysis {
  if (!sqlParserInitialised()) {
    throw new Error('SQL parser not initialised: await initSqlParser() once before analyzeSql()');
  }
  const cached = cache.get(text);
  if (cached !== undefined) return cached;
  const { analysis, cacheable } = analyzeUncached(text);
  const frozen = freezeAnalysis(analysis);
  if (cacheable) cache.set(text, frozen, () => 2 * text.length + analysisBytes(frozen));
  return frozen;
}

function analyzeUncached(text: string): { analysis: SqlAnalysis; cacheable: boolean } {
  // The parser takes a C string: a NUL would silently end the statement early
  // (`SELECT 1\0; DROP TABLE t` parses as `SELECT 1`). The wire protocol
  // cannot carry one either, so refusing it costs nothing.
  if (text.includes('\0')) return { analysis: uninspected('statement contains a NUL character'), cacheable: true };
  if (LONE_SURROGATE.test(text)) {
    return { analysis: uninspected('statement is not valid Unicode (lone surrogate)'), cacheable: true };
  }
  if (text === '') return { analysis: uninspected('empty statement'), cacheable: true };
  try {
    const parsed = sqlParser.parse(text);
    if (!parsed.ok) return { analysis: uninspected(parsed.error), cacheable: true };
    const collected = new Collected();
    const count = new SqlWalker(sqlParser).walkParseResult(parsed.value, text, collected);
    if (count === 0) {
      return { analysis: uninspected('empty statement (only whitespace, comments or semicolons)'), cacheable: true };
    }
    return { analysis: buildAnalysis(collected, count), cacheable: true };
  } catch (err) {
    if (err instanceof SqlParserUnavailable) return { analysis: uninspected(err.message), cacheable: false };
    if (err instanceof SqlParserFault) return { analysis: uninspected(err.message), cacheable: true };
    // Anything else is a bug in the walk; the statement must still fail closed, not crash the engine.
    return { analysis: uninspected(`statement could not be inspected: ${String(err)}`), cacheable: false };
  }
}

/** The `sql.*` facts of a message for the policy engine. */
export function toSqlFacts(a: SqlAnalysis, ctx: { statement: string; database: string; user: string }): SqlFacts {
  // Keys in canonical (sorted) order, so the audit log writes these facts as they are (audit/record-json.ts).
  return {
    copy_program: a.copyProgram,
    database: ctx.database,
    functions: [...a.functions],
    ...(a.inspected ? {} : { inspect_error: a.error ?? 'statement not inspected' }),
    inspected: a.inspected,
    statement: ctx.statement,
    tables: [...a.tables],
    user: ctx.user,
    verb: a.verb,
    verbs: [...a.verbs],
  };
}
