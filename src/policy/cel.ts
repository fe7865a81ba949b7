/**
 * Rule conditions: CEL via @marcbachmann/cel-js with one typed environment
 * per family (what a rule on that family's endpoints can see), the `sets`
 * extension, and case-insensitive comparison of `http.method`, `sql.verb`,
 * `k8s.verb` (and membership in `sql.verbs`).
 *
 * Case-insensitivity is done at compile time: the facts carry these values
 * in lower case and every string literal they are compared with (`==`,
 * `!=`, `in`, `startsWith`/`endsWith`/`contains`, `sets.*`) is lower-cased
 * in the compiled expression. Literal header names in `http.headers['X-Y']`
 * and `'X-Y' in http.headers` are lower-cased the same way, so canonical
 * header names resolve against the lower-case map.
 *
 * Unknown facts are *absent* from the activation: reading one raises a CEL
 * error, which cel-js absorbs inside `&&`/`||` when the other side decides
 * (`unknown && false` → false, `unknown || true` → true) and otherwise
 * surfaces as an error — the caller turns that into a fail-closed deny.
 */
import { Environment, type ASTNode } from '@marcbachmann/cel-js';
import type { Family } from './types.js';
import { UNSURE, compileFast } from './cel-fast.js';
import { compileLinearRegex, linearMatches } from './regex.js';

class SetsNamespace {}

/** CEL equality for the element types that occur in facts (strings, numbers, bools). */
function celEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if ((typeof a === 'bigint' || typeof a === 'number') && (typeof b === 'bigint' || typeof b === 'number')) {
    return Number(a) === Number(b);
  }
  return false;
}

function setContains(list: readonly unknown[], x: unknown): boolean {
  for (const y of list) if (celEqual(x, y)) return true;
  return false;
}

const HTTP_FIELDS = {
  method: 'string',
  path: 'string',
  raw_path: 'string',
  host: 'string',
  query: 'map<string, list<string>>',
  headers: 'map<string, string>',
  body: 'string',
  body_json: 'dyn',
  body_truncated: 'bool',
} as const;

const SQL_FIELDS = {
  verb: 'string',
  verbs: 'list<string>',
  tables: 'list<string>',
  functions: 'list<string>',
  statement: 'string',
  database: 'string',
  user: 'string',
  inspected: 'bool',
  copy_program: 'bool',
  statement_truncated: 'bool',
} as const;

const K8S_FIELDS = {
  verb: 'string',
  resource: 'string',
  namespace: 'string',
  name: 'string',
  params: 'map<string, string>',
  subresource: 'string',
  api_group: 'string',
  api_version: 'string',
  command: 'list<string>',
} as const;

const CONTENT_FIELDS = {
  findings: 'list<string>',
  score: 'double',
  verdict: 'string',
} as const;

/** The variables each family's conditions may read. */
export const FAMILY_VARIABLES: Record<Family, string[]> = {
  http: ['http', 'content'],
  sql: ['sql', 'content'],
  k8s: ['k8s', 'http', 'content'],
};

const FIELD_TYPES: Record<string, Record<string, string>> = { http: HTTP_FIELDS, sql: SQL_FIELDS, k8s: K8S_FIELDS, content: CONTENT_FIELDS };

/** The declared CEL type of `variable.field` (what cel-js checks values against). */
export function fieldType(variable: string, field: string): string | undefined {
  const fields = FIELD_TYPES[variable];
  return fields && Object.prototype.hasOwnProperty.call(fields, field) ? fields[field] : undefined;
}

export const FACT_FIELDS: Record<string, readonly string[]> = {
  http: Object.keys(HTTP_FIELDS),
  sql: Object.keys(SQL_FIELDS),
  k8s: Object.keys(K8S_FIELDS),
  content: Object.keys(CONTENT_FIELDS),
};

/**
 * Activation values. cel-js reads registered types from instances of their
 * class without per-evaluation conversion (a plain object would be wrapped
 * in a fresh Map on every evaluation). A field left `undefined` is an
 * unknown fact: reading it raises "No such key".
 */
export class HttpFactsValue {
  constructor(
    readonly method: unknown,
    readonly path: unknown,
    readonly raw_path: unknown,
    readonly host: unknown,
    readonly query: unknown,
    readonly headers: unknown,
    readonly body: unknown,
    readonly body_json: unknown,
    readonly body_truncated: boolean,
  ) {}
}

export class SqlFactsValue {
  constructor(
    readonly verb: unknown,
    readonly verbs: unknown,
    readonly tables: unknown,
    readonly functions: unknown,
    readonly statement: unknown,
    readonly database: unknown,
    readonly user: unknown,
    readonly inspected: boolean,
    readonly copy_program: unknown,
    readonly statement_truncated: boolean,
  ) {}
}

export class K8sFactsValue {
  constructor(
    readonly verb: unknown,
    readonly resource: unknown,
    readonly namespace: unknown,
    readonly name: unknown,
    readonly params: unknown,
    readonly subresource: unknown,
    readonly api_group: unknown,
    readonly api_version: unknown,
    readonly command: unknown,
  ) {}
}

export class ContentFactsValue {
  constructor(
    readonly findings: unknown,
    readonly score: unknown,
    readonly verdict: unknown,
  ) {}
}

/** What `matches` calls are evaluated as (regex.ts: RE2 syntax, linear time). */
const LINEAR_MATCHES = 'linearMatches';

function buildEnv(family: Family): Environment {
  const env = new Environment({ homogeneousAggregateLiterals: false })
    .registerType('SetsNamespace', SetsNamespace)
    .registerConstant('sets', 'SetsNamespace', new SetsNamespace())
    .registerFunction('SetsNamespace.contains(list, list): bool', (_ns: unknown, a: unknown[], b: unknown[]) =>
      b.every((x) => setContains(a, x)),
    )
    .registerFunction('SetsNamespace.intersects(list, list): bool', (_ns: unknown, a: unknown[], b: unknown[]) =>
      a.some((x) => setContains(b, x)),
    )
    .registerFunction(
      'SetsNamespace.equivalent(list, list): bool',
      (_ns: unknown, a: unknown[], b: unknown[]) => a.every((x) => setContains(b, x)) && b.every((x) => setContains(a, x)),
    )
    // `matches` is rewritten to this (see rewriteSource): cel-js's own is a backtracking JS RegExp.
    .registerFunction(`string.${LINEAR_MATCHES}(string): bool`, (s: string, p: string) => linearMatches(s, p))
    // CEL's global form, which cel-js lacks.
    .registerFunction('matches(string, string): bool', (s: string, p: string) => linearMatches(s, p))
    .registerType('ContentFacts', { ctor: ContentFactsValue, fields: { ...CONTENT_FIELDS } })
    .registerVariable('content', 'ContentFacts');
  if (family === 'http' || family === 'k8s') {
    env.registerType('HttpFacts', { ctor: HttpFactsValue, fields: { ...HTTP_FIELDS } }).registerVariable('http', 'HttpFacts');
  }
  if (family === 'sql') env.registerType('SqlFacts', { ctor: SqlFactsValue, fields: { ...SQL_FIELDS } }).registerVariable('sql', 'SqlFacts');
  if (family === 'k8s') env.registerType('K8sFacts', { ctor: K8sFactsValue, fields: { ...K8S_FIELDS } }).registerVariable('k8s', 'K8sFacts');
  return env;
}

const envs: Partial<Record<Family, Environment>> = {};
function envFor(family: Family): Environment {
  return (envs[family] ??= buildEnv(family));
}

export interface CelError {
  /** Offset into the condition source. */
  offset: number;
  message: string;
}

export interface CompiledCondition {
  source: string;
  /** The expression actually evaluated (after case-folding rewrites). */
  compiled: string;
  evaluate: (activation: Record<string, unknown>) => unknown;
  /** cel-js alone (what `evaluate` falls back to; for tests and diagnostics). */
  celEvaluate: (activation: Record<string, unknown>) => unknown;
  /** True when `evaluate` has a fast path (cel-fast.ts) in front of cel-js. */
  fast: boolean;
  /** Facts read: `http.method`, … and `http.*` when the whole variable is used. */
  reads: Set<string>;
  /** True when the static type is dyn (must be checked to be a bool at run time). */
  dynamicType: boolean;
}

export type CompileResult = { ok: true; condition: CompiledCondition } | { ok: false; error: CelError };

function firstLine(message: string): string {
  return message.split('\n')[0]!.trim();
}

interface CelErrorLike {
  message: string;
  range?: { start: number };
  node?: { range?: { start: number }; pos?: number };
}

function toCelError(err: unknown): CelError {
  const e = err as CelErrorLike;
  const offset = e.range?.start ?? e.node?.range?.start ?? e.node?.pos ?? 0;
  return { offset, message: firstLine(String(e.message ?? err)) };
}

export function compileCondition(source: string, family: Family): CompileResult {
  const env = envFor(family);
  let parsed: ReturnType<Environment['parse']>;
  try {
    parsed = env.parse(source);
  } catch (err) {
    return { ok: false, error: toCelError(err) };
  }
  const checked = parsed.check();
  if (!checked.valid) return { ok: false, error: toCelError(checked.error) };
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    return { ok: false, error: { offset: 0, message: `condition must be a bool, but this expression is ${checked.type}` } };
  }
  const badPattern = checkPatterns(parsed.ast);
  if (badPattern) return { ok: false, error: badPattern };
  const reads = new Set<string>();
  collectReads(parsed.ast, reads);
  const compiled = rewriteSource(source, parsed.ast);
  let runnable = parsed;
  if (compiled !== source) {
    try {
      runnable = env.parse(compiled);
    } catch (err) {
      return { ok: false, error: toCelError(err) };
    }
  }
  const celEvaluate = runnable as unknown as (a: Record<string, unknown>) => unknown;
  const dynamicType = checked.type === 'dyn';
  // The fast path answers when it is sure; cel-js stays the authority for everything else.
  const fast = dynamicType ? null : compileFast(runnable.ast as ASTNode, fieldType);
  return {
    ok: true,
    condition: {
      source,
      compiled,
      evaluate: fast
        ? (a) => {
            const r = fast(a);
            return r === UNSURE ? celEvaluate(a) : r;
          }
        : celEvaluate,
      celEvaluate,
      fast: fast !== null,
      reads,
      dynamicType,
    },
  };
}

// ───────────────────────────── AST helpers ──────────────────────────────────

type Node = ASTNode;

function children(n: Node): Node[] {
  const out: Node[] = [];
  const visit = (x: unknown): void => {
    if (Array.isArray(x)) x.forEach(visit);
    else if (x && typeof x === 'object' && 'op' in x) out.push(x as Node);
  };
  if (n.op === 'value' || n.op === 'id') return out;
  visit(n.args);
  return out;
}

const VARIABLES = new Set(['http', 'sql', 'k8s', 'content']);

function collectReads(n: Node, reads: Set<string>): void {
  if (n.op === '.' || n.op === '.?') {
    const [obj, field] = n.args as [Node, string];
    if (obj.op === 'id' && VARIABLES.has(obj.args as string)) {
      reads.add(`${obj.args as string}.${field}`);
      return;
    }
  }
  if (n.op === '[]' || n.op === '[?]') {
    const [obj, key] = n.args as [Node, Node];
    if (obj.op === 'id' && VARIABLES.has(obj.args as string) && key.op === 'value' && typeof key.args === 'string') {
      reads.add(`${obj.args as string}.${key.args}`);
      return;
    }
  }
  if (n.op === 'id' && VARIABLES.has(n.args as string)) {
    reads.add(`${n.args as string}.*`);
    return;
  }
  for (const c of children(n)) collectReads(c, reads);
}

/** `http.method`-style member access of a case-insensitive scalar fact. */
function isCiScalar(n: Node): boolean {
  if (n.op !== '.') return false;
  const [obj, field] = n.args as [Node, string];
  if (obj.op !== 'id') return false;
  const v = obj.args as string;
  return (v === 'http' && field === 'method') || (v === 'sql' && field === 'verb') || (v === 'k8s' && field === 'verb');
}

function isCiList(n: Node): boolean {
  if (n.op !== '.') return false;
  const [obj, field] = n.args as [Node, string];
  return obj.op === 'id' && obj.args === 'sql' && field === 'verbs';
}

function isHeaders(n: Node): boolean {
  if (n.op !== '.') return false;
  const [obj, field] = n.args as [Node, string];
  return obj.op === 'id' && obj.args === 'http' && field === 'headers';
}

function isStringLiteral(n: Node): boolean {
  return n.op === 'value' && typeof n.args === 'string';
}

/** A `text.matches(pattern)` call: where its method name lies, and its pattern argument. */
function matchesMethod(n: Node): { nameFrom: number; nameTo: number; pattern: Node } | null {
  if (n.op !== 'rcall') return null;
  const [name, receiver, args] = n.args as [string, Node, Node[]];
  if (name !== 'matches' || args.length !== 1) return null;
  return { nameFrom: receiver.range.end, nameTo: args[0]!.range.start, pattern: args[0]! };
}

/** The pattern of a `matches` call in either form. */
function matchesPattern(n: Node): Node | null {
  if (n.op === 'call') {
    const [name, args] = n.args as [string, Node[]];
    return name === 'matches' && args.length === 2 ? args[1]! : null;
  }
  return matchesMethod(n)?.pattern ?? null;
}

/** A literal `matches` pattern that cannot run (bad syntax, or backtracking-only) is a load error, not a deny on every action. */
function checkPatterns(n: Node): CelError | null {
  const pattern = matchesPattern(n);
  if (pattern && isStringLiteral(pattern)) {
    try {
      compileLinearRegex(pattern.args as string);
    } catch (err) {
      return { offset: pattern.range.start, message: (err as Error).message };
    }
  }
  for (const c of children(n)) {
    const e = checkPatterns(c);
    if (e) return e;
  }
  return null;
}

/**
 * Rewrites the source: literals compared with case-insensitive facts become
 * lower case, and `matches` calls become `linearMatches` (regex.ts).
 */
function rewriteSource(source: string, ast: Node): string {
  const targets = new Map<number, { end: number; text: string }>();
  const fold = (n: Node | undefined): void => {
    if (n && isStringLiteral(n) && (n.args as string) !== (n.args as string).toLowerCase()) {
      targets.set(n.range.start, { end: n.range.end, text: JSON.stringify((n.args as string).toLowerCase()) });
    }
  };
  const foldList = (n: Node | undefined): void => {
    if (n && n.op === 'list') for (const item of n.args as Node[]) fold(item);
  };
  const listHasCi = (n: Node): boolean => n.op === 'list' && (n.args as Node[]).some(isCiScalar);

  /**
   * Comprehension variables in scope: bound to the elements of a
   * case-insensitive list or to header names (`sql.verbs.exists(v, v == 'DROP')`: `v` is
   * compared like `sql.verb`) → null; bound to the elements of a list literal
   * (`['POST'].exists(m, http.method == m)`: that list is folded when `m`
   * meets a case-insensitive fact) → the literal. Without this such rules
   * never matched, and a deny rule written so was silently open.
   */
  type Scope = ReadonlyMap<string, Node | null>;
  const isCi = (x: Node, scope: Scope): boolean => isCiScalar(x) || (x.op === 'id' && scope.get(x.args as string) === null);
  const foldBoundList = (x: Node, scope: Scope): void => {
    const list = x.op === 'id' ? scope.get(x.args as string) : undefined;
    if (list) foldList(list);
  };
  const MACROS = new Set(['all', 'exists', 'exists_one', 'filter', 'map']);

  const walk = (n: Node, scope: Scope): void => {
    const call = matchesMethod(n);
    if (call) {
      // Only `.`, blanks, `matches` and `(` lie between the receiver and the argument.
      const between = source.slice(call.nameFrom, call.nameTo);
      const at = call.nameFrom + between.indexOf('matches');
      targets.set(at, { end: at + 'matches'.length, text: LINEAR_MATCHES });
    }
    switch (n.op) {
      case '==':
      case '!=': {
        const [l, r] = n.args as [Node, Node];
        if (isCi(l, scope)) fold(r);
        if (isCi(r, scope)) fold(l);
        if (isCiScalar(l)) foldBoundList(r, scope);
        if (isCiScalar(r)) foldBoundList(l, scope);
        break;
      }
      case 'in': {
        const [l, r] = n.args as [Node, Node];
        if (isCi(l, scope)) foldList(r);
        if (listHasCi(r)) fold(l);
        if (isCiList(r)) fold(l);
        if (isHeaders(r)) fold(l);
        break;
      }
      case '[]':
      case '[?]': {
        const [obj, key] = n.args as [Node, Node];
        if (isHeaders(obj)) fold(key);
        break;
      }
      case 'rcall': {
        const [name, receiver, args] = n.args as [string, Node, Node[]];
        if (MACROS.has(name) && args.length >= 2 && args[0]!.op === 'id') {
          const inner = new Map(scope);
          const variable = args[0]!.args as string;
          // Header names (the keys a comprehension over http.headers sees) are lower case like verbs.
          if (isCiList(receiver) || isHeaders(receiver)) inner.set(variable, null);
          else if (receiver.op === 'list') inner.set(variable, receiver);
          else inner.delete(variable); // shadows an outer binding
          walk(receiver, scope);
          for (const a of args.slice(1)) walk(a, inner);
          return;
        }
        if (isCi(receiver, scope) && (name === 'startsWith' || name === 'endsWith' || name === 'contains')) fold(args[0]);
        if (receiver.op === 'id' && receiver.args === 'sets' && args.length === 2) {
          const [a, b] = args as [Node, Node];
          if (listHasCi(a) || isCiList(a)) foldList(b);
          if (listHasCi(b) || isCiList(b)) foldList(a);
        }
        break;
      }
      default:
        break;
    }
    for (const c of children(n)) walk(c, scope);
  };
  walk(ast, new Map());
  if (targets.size === 0) return source;
  let out = source;
  for (const start of [...targets.keys()].sort((a, b) => b - a)) {
    const { end, text } = targets.get(start)!;
    out = out.slice(0, start) + text + out.slice(end);
  }
  return out;
}
