/**
 * PL/pgSQL bodies (DO blocks, CREATE FUNCTION … LANGUAGE plpgsql): turns the
 * tree libpg-query's PL/pgSQL compiler returns into the SQL the body runs.
 *
 * The compiler keeps embedded SQL as text (`PLpgSQL_expr.query`) together
 * with the grammar mode PostgreSQL would parse it in; we hand each piece back
 * to the SQL walker. Dynamic SQL (`EXECUTE <expr>`, `FOR … IN EXECUTE`,
 * `OPEN … FOR EXECUTE`, `RETURN QUERY EXECUTE`) is an expression whose
 * *value* is SQL: the walker inspects the expression, and the SQL too when
 * the value is a constant.
 */
import type { Parsed, ScanToken } from './sql-parser.js';
import { utf8Slice } from './sql-text.js';

export type PlpgsqlItem =
  /** A whole SQL statement (PERFORM, RETURN QUERY, FOR … IN query, INSERT …). */
  | { kind: 'statement'; text: string }
  /** An expression, evaluated as `SELECT <text>`; `dynamic`: its value is SQL that runs. */
  | { kind: 'expression'; text: string; dynamic: boolean }
  /** `target := expression`. */
  | { kind: 'assignment'; text: string }
  /** PL/pgSQL's own COMMIT / ROLLBACK. */
  | { kind: 'verb'; verb: 'commit' | 'rollback' };

// PostgreSQL's RawParseMode values as libpg-query serialises them.
const RAW_PARSE_DEFAULT = 0;
const RAW_PARSE_PLPGSQL_EXPR = 2;
const RAW_PARSE_PLPGSQL_ASSIGN1 = 3;
const RAW_PARSE_PLPGSQL_ASSIGN3 = 5;

const DYNAMIC_SQL_HOLDERS = new Set(['PLpgSQL_stmt_dynexecute', 'PLpgSQL_stmt_dynfors']);

function isDynamic(parentTag: string, key: string): boolean {
  return key === 'dynquery' || (key === 'query' && DYNAMIC_SQL_HOLDERS.has(parentTag));
}

/** Every piece of SQL in a `parsePlPgSQL` result, in tree order. */
export function plpgsqlItems(tree: unknown): PlpgsqlItem[] {
  const items: PlpgsqlItem[] = [];
  const visit = (value: unknown, parentTag: string, key: string): void => {
    if (Array.isArray(value)) {
      for (const v of value) visit(v, parentTag, key);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const entries = Object.entries(value as Record<string, unknown>);
    const wrapped = entries.length === 1 && entries[0]![0].startsWith('PLpgSQL_') ? entries[0]! : null;
    if (wrapped === null) {
      for (const [k, v] of entries) visit(v, parentTag, k);
      return;
    }
    const [tag, node] = wrapped;
    if (tag === 'PLpgSQL_expr') {
      const item = exprItem(node as Record<string, unknown>, isDynamic(parentTag, key));
      if (item) items.push(item);
      return;
    }
    if (tag === 'PLpgSQL_stmt_commit') items.push({ kind: 'verb', verb: 'commit' });
    if (tag === 'PLpgSQL_stmt_rollback') items.push({ kind: 'verb', verb: 'rollback' });
    if (node !== null && typeof node === 'object') {
      for (const [k, v] of Object.entries(node as Record<string, unknown>)) visit(v, tag, k);
    }
  };
  visit(tree, '', '');
  return items;
}

function exprItem(expr: Record<string, unknown>, dynamic: boolean): PlpgsqlItem | null {
  const text = typeof expr.query === 'string' ? expr.query : '';
  // Serialisation omits zero values, so a missing parseMode is RAW_PARSE_DEFAULT.
  const mode = typeof expr.parseMode === 'number' ? expr.parseMode : RAW_PARSE_DEFAULT;
  if (text === '') return null;
  if (mode === RAW_PARSE_DEFAULT) return { kind: 'statement', text };
  if (mode === RAW_PARSE_PLPGSQL_EXPR) return { kind: 'expression', text, dynamic };
  if (mode >= RAW_PARSE_PLPGSQL_ASSIGN1 && mode <= RAW_PARSE_PLPGSQL_ASSIGN3) return { kind: 'assignment', text };
  return null; // a type name
}

/**
 * The expression of `target := expression` (or `target = expression`): the
 * text after the first `:=`/`=` token outside brackets, found with the real
 * scanner so operators inside subscripts or strings cannot fool it.
 */
export function assignmentValue(text: string, scan: (t: string) => Parsed<ScanToken[]>): string | null {
  const scanned = scan(text);
  if (!scanned.ok) return null;
  let depth = 0;
  for (const token of scanned.value) {
    if (token.text === '(' || token.text === '[') depth++;
    else if (token.text === ')' || token.text === ']') depth--;
    else if (depth === 0 && (token.text === ':=' || token.text === '=')) return utf8Slice(text, token.end);
  }
  return null;
}
