/**
 * Walks PostgreSQL raw parse trees (libpg-query JSON) and collects what a
 * policy needs: statement kinds, relations and called functions — including
 * those hidden inside other statements (writable CTEs, EXPLAIN ANALYZE,
 * COPY (query), rule actions, PREPARE and DO/function bodies).
 *
 * Each statement kind is recorded in one of three modes:
 * - `now`:   it runs as part of this message (top level, CTEs, EXPLAIN
 *            ANALYZE targets, COPY queries, DO bodies) — these decide `verb`;
 * - `later`: it is stored to run later (PREPARE bodies, rule actions, view
 *            queries, function bodies) — listed in `verbs` only;
 * - `plan`:  it is only planned (plain EXPLAIN) — not listed at all.
 * Relations and functions are collected in every mode: they are named by
 * the message either way, and over-reporting them only makes rules stricter.
 *
 * The tree is walked generically (any node inside any node is visited), so a
 * node kind this file has never heard of still has its children inspected;
 * statement nodes it does not know count as `unknown`.
 */
import { Collected, buildAnalysis } from './sql-analysis.js';
import type { SqlParserApi } from './sql-parser.js';
import { assignmentValue, plpgsqlItems } from './sql-plpgsql.js';
import { utf8Slice } from './sql-text.js';
import { statementVerb } from './sql-verbs.js';

type Node = Record<string, unknown>;
type Mode = 'now' | 'later' | 'plan';

interface Source {
  text: string;
  /** Byte range of the current top-level statement. */
  start: number;
  length: number;
}

interface Ctx {
  /** Where facts go (a PREPARE body collects into its own). */
  acc: Collected;
  mode: Mode;
  /** CTE names visible here (a bare name in FROM that matches one is not a table). */
  ctes: ReadonlySet<string>;
  /** How many texts deep we are (SQL inside DO inside EXECUTE '…' …). */
  nest: number;
  /** The top-level statement being walked, for PL/pgSQL bodies that need its full text. */
  source: Source | null;
}

/** SQL-in-strings recursion limit: DO → EXECUTE 'DO …' → … Deeper texts are left uninspected. */
const MAX_NEST = 4;

const NO_CTES: ReadonlySet<string> = new Set();
const MODE_ORDER: Record<Mode, number> = { now: 0, later: 1, plan: 2 };
const within = (outer: Mode, inner: Mode): Mode => (MODE_ORDER[inner] > MODE_ORDER[outer] ? inner : outer);

/** Leaf node kinds that can contain neither relations, functions nor statements. */
const LEAVES = new Set(['A_Const', 'String', 'Integer', 'Float', 'Boolean', 'BitString', 'ParamRef', 'A_Star', 'ColumnRef']);

/** Object types whose DROP/COMMENT/SECURITY LABEL names are relations. */
const RELATION_OBJECTS = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_SEQUENCE', 'OBJECT_FOREIGN_TABLE', 'OBJECT_INDEX',
]);

/** Functions whose text arguments are SQL they execute (dblink) or query (the XML and tsearch helpers). */
const SQL_TEXT_FUNCTIONS = new Set([
  'dblink', 'dblink_exec', 'dblink_send_query', 'dblink_open',
  'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'ts_stat',
]);

const MERGE_ACTION_VERBS: Record<string, string> = { CMD_INSERT: 'insert', CMD_UPDATE: 'update', CMD_DELETE: 'delete' };

const asNode = (v: unknown): Node | undefined =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Node) : undefined;
const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asString = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** `[{String:{sval:'a'}}, {String:{sval:'b'}}]` → ['a', 'b']. */
function stringList(v: unknown): string[] {
  const out: string[] = [];
  for (const item of asList(v)) out.push(asString(asNode(asNode(item)?.String)?.sval) ?? '');
  return out;
}

/** `a.b.c` → ['a.b.c', 'b.c', 'c']: as written and every shorter qualification down to bare. */
function qualifiedForms(parts: string[]): string[] {
  const forms: string[] = [];
  for (let i = 0; i < parts.length; i++) forms.push(parts.slice(i).join('.'));
  return forms;
}

/** The single tag of a wrapped node (`{SelectStmt: {...}}`), or undefined for a plain object. */
function wrappedTag(o: Node): string | undefined {
  let tag: string | undefined;
  for (const key in o) {
    if (tag !== undefined) return undefined;
    tag = key;
  }
  if (tag === undefined) return undefined;
  const first = tag.charCodeAt(0);
  return first >= 65 && first <= 90 ? tag : undefined; // node tags start upper-case, fields lower-case
}

/**
 * EXPLAIN executes its statement when ANALYZE is on (PostgreSQL's
 * defGetBoolean). A repeated option (`ANALYZE, ANALYZE false`) counts as on
 * if any occurrence is: over-reporting is the safe side of a disagreement.
 */
function explainExecutes(options: unknown): boolean {
  return asList(options).some((item) => {
    const def = asNode(asNode(item)?.DefElem);
    return def?.defname === 'analyze' && !isClearlyFalse(asNode(def.arg));
  });
}

/**
 * Only spelled-out false values turn ANALYZE off; anything else (including
 * values PostgreSQL rejects) counts as on. `ANALYZE 0` counts as on too:
 * facts must never depend on the value of a number, because engines may
 * normalise numeric literals before analysing (so `WHERE id = 1` and
 * `WHERE id = 2` share one cached analysis) — and `ANALYZE 1` must not
 * then pass as `ANALYZE 0`. Over-reporting a plan-only EXPLAIN is harmless.
 */
function isClearlyFalse(arg: Node | undefined): boolean {
  if (arg === undefined) return false; // bare ANALYZE
  const boolean = asNode(arg.Boolean);
  if (boolean !== undefined) return boolean.boolval !== true;
  const text = asString(asNode(arg.String)?.sval)?.toLowerCase();
  return text === 'false' || text === 'off';
}

/** A string constant expression (`'…'`, `$$…$$`, `'a' || 'b'`, `'…'::text`), or null. */
function constantString(v: unknown): string | null {
  const node = asNode(v);
  if (node === undefined) return null;
  const constant = asNode(node.A_Const);
  if (constant !== undefined) {
    const sval = asNode(constant.sval);
    return sval === undefined ? null : (asString(sval.sval) ?? '');
  }
  const cast = asNode(node.TypeCast);
  if (cast !== undefined) return constantString(cast.arg);
  const expr = asNode(node.A_Expr);
  if (expr !== undefined && expr.kind === 'AEXPR_OP' && stringList(expr.name).join('.') === '||') {
    const left = constantString(expr.lexpr);
    const right = constantString(expr.rexpr);
    return left === null || right === null ? null : left + right;
  }
  return null;
}

function defElemValue(options: unknown, name: string): unknown {
  for (const item of asList(options)) {
    const def = asNode(asNode(item)?.DefElem);
    if (def?.defname === name) return def.arg;
  }
  return undefined;
}

/** One unit of pending work: a value of the tree and the context it is walked in. */
type Item = readonly [value: unknown, ctx: Ctx];

/**
 * The walk is iterative (an explicit stack, children pushed in reverse so
 * they are visited in document order): parse trees as deep as PostgreSQL's
 * grammar accepts — thousands of `UNION ALL` arms or `+` terms — would
 * overflow the JavaScript stack of a recursive walk.
 */
export class SqlWalker {
  private readonly stack: Item[] = [];
  private readonly prepared: Array<{ name: string | undefined; body: Collected; parent: Collected; mode: Mode }> = [];

  constructor(private readonly parser: SqlParserApi) {}

  /** Walk an already parsed message (top level, `now`) into `acc`; returns its statement count. */
  walkParseResult(result: unknown, text: string, acc: Collected): number {
    const stmts = asList(asNode(result)?.stmts);
    this.schedule(this.statements(stmts, text, acc, 'now', 0));
    while (this.stack.length > 0) {
      const [value, ctx] = this.stack.pop()!;
      this.visit(value, ctx);
    }
    this.finishPrepares();
    return stmts.length;
  }

  private schedule(items: Item[]): void {
    for (let i = items.length - 1; i >= 0; i--) this.stack.push(items[i]!);
  }

  private statements(stmts: unknown[], text: string, acc: Collected, mode: Mode, nest: number): Item[] {
    const items: Item[] = [];
    for (const raw of stmts) {
      const r = asNode(raw);
      if (r === undefined) continue;
      const source: Source = {
        text,
        start: typeof r.stmt_location === 'number' ? r.stmt_location : 0,
        length: typeof r.stmt_len === 'number' ? r.stmt_len : 0,
      };
      items.push([r.stmt, { acc, mode, ctes: NO_CTES, nest, source }]);
    }
    return items;
  }

  /** SQL found inside a string (function body, DO body statement, EXECUTE '…'). Unparseable → ignored. */
  private walkText(text: string, ctx: Ctx, mode: Mode, nest: number): void {
    if (nest > MAX_NEST) return;
    const parsed = this.parser.parse(text);
    if (!parsed.ok) return;
    this.schedule(this.statements(asList(asNode(parsed.value)?.stmts), text, ctx.acc, mode, nest));
  }

  /**
   * A PL/pgSQL expression: PostgreSQL evaluates it as `SELECT <expr>`. The
   * wrapper SELECT only counts as a read when the expression has a FROM.
   */
  private walkExpression(text: string, ctx: Ctx, mode: Mode, nest: number, dynamic: boolean): void {
    if (nest > MAX_NEST) return;
    const query = `SELECT ${text}`;
    const parsed = this.parser.parse(query);
    if (!parsed.ok) return;
    const stmts = asList(asNode(parsed.value)?.stmts);
    const first = asNode(asNode(asNode(stmts[0])?.stmt)?.SelectStmt);
    if (stmts.length !== 1 || first === undefined) {
      this.schedule(this.statements(stmts, query, ctx.acc, mode, nest));
      return;
    }
    const inner: Ctx = { acc: ctx.acc, mode, ctes: NO_CTES, nest, source: null };
    if (first.fromClause !== undefined) this.addVerb('select', inner);
    if (dynamic) {
      const target = asNode(asNode(asList(first.targetList)[0])?.ResTarget);
      const sql = constantString(target?.val);
      if (sql !== null) this.walkText(sql, inner, mode, nest + 1);
    }
    this.fields(first, inner);
  }

  private addVerb(verb: string, ctx: Ctx): void {
    if (ctx.mode === 'now') ctx.acc.nowVerbs.add(verb);
    else if (ctx.mode === 'later') ctx.acc.laterVerbs.add(verb);
  }

  private addRelation(parts: string[], ctx: Ctx): void {
    for (const form of qualifiedForms(parts)) ctx.acc.tables.add(form);
  }

  private addFunction(funcname: unknown, ctx: Ctx): void {
    const parts = stringList(funcname).map((p) => p.toLowerCase());
    if (parts.length === 0) return;
    for (const form of qualifiedForms(parts)) ctx.acc.functions.add(form);
  }

  /** A RangeVar. `cteResolvable`: a bare name may mean a CTE (FROM items, not DML targets). */
  private rangeVar(rv: Node | undefined, ctx: Ctx, cteResolvable: boolean): void {
    if (rv === undefined) return;
    const relname = asString(rv.relname);
    if (relname === undefined) return;
    const schema = asString(rv.schemaname);
    const catalog = asString(rv.catalogname);
    if (cteResolvable && schema === undefined && catalog === undefined && ctx.ctes.has(relname)) return;
    const parts = [catalog, schema, relname].filter((p): p is string => p !== undefined);
    this.addRelation(parts, ctx);
  }

  /**
   * Functions that run SQL given as text (`dblink_exec('…', 'DROP TABLE t')`
   * can loop back into the same database): constant arguments that parse as
   * SQL are walked like the statement itself. Connection strings and cursor
   * names do not parse and are ignored.
   */
  private sqlTextArguments(call: Node, ctx: Ctx): void {
    const name = stringList(call.funcname).at(-1)?.toLowerCase();
    if (name === undefined || !SQL_TEXT_FUNCTIONS.has(name)) return;
    for (const arg of asList(call.args)) {
      const sql = constantString(arg);
      if (sql !== null) this.walkText(sql, ctx, ctx.mode, ctx.nest + 1);
    }
  }

  private visit(value: unknown, ctx: Ctx): void {
    if (value === null || typeof value !== 'object') return;
    if (Array.isArray(value)) {
      this.schedule(value.map((v): Item => [v, ctx]));
      return;
    }
    const o = value as Node;
    const tag = wrappedTag(o);
    if (tag !== undefined) {
      if (!LEAVES.has(tag)) this.dispatch(tag, asNode(o[tag]) ?? {}, ctx);
      return;
    }
    // Typed fields hold some nodes unwrapped; a RangeVar is recognisable by its relname.
    if (typeof o.relname === 'string') {
      this.rangeVar(o, ctx, true);
      return;
    }
    this.fields(o, ctx);
  }

  /** Schedule every object-valued field of `o` (except `skip`) in `ctx`. */
  private fields(o: Node, ctx: Ctx, skip?: ReadonlySet<string>): void {
    const items: Item[] = [];
    for (const key in o) {
      if (skip?.has(key)) continue;
      const v = o[key];
      if (v !== null && typeof v === 'object') items.push([v, ctx]);
    }
    this.schedule(items);
  }

  private dispatch(tag: string, n: Node, ctx: Ctx): void {
    switch (tag) {
      case 'RangeVar':
        return this.rangeVar(n, ctx, true);
      case 'FuncCall':
        this.addFunction(n.funcname, ctx);
        this.fields(n, ctx);
        return this.sqlTextArguments(n, ctx);
      case 'SelectStmt':
        return this.select(n, ctx, false);
      case 'InsertStmt':
        return this.insert(n, ctx);
      case 'UpdateStmt':
      case 'DeleteStmt':
        return this.updateOrDelete(tag === 'UpdateStmt' ? 'update' : 'delete', n, ctx);
      case 'MergeStmt':
        return this.merge(n, ctx);
      case 'ExplainStmt':
        this.addVerb('explain', ctx);
        return this.schedule([[n.query, { ...ctx, mode: within(ctx.mode, explainExecutes(n.options) ? 'now' : 'plan') }]]);
      case 'PrepareStmt':
        return this.prepare(n, ctx);
      case 'ExecuteStmt':
        this.addVerb('execute', ctx);
        if (ctx.mode === 'now' && typeof n.name === 'string') ctx.acc.executes.add(n.name);
        return this.fields(n, ctx);
      case 'DeallocateStmt':
        this.addVerb('deallocate', ctx);
        if (ctx.mode === 'now') deallocate(n, ctx.acc);
        return;
      case 'FetchStmt':
        // FETCH/MOVE on a portal the agent bound at the protocol level runs that
        // portal's statement (a DELETE … RETURNING runs in full on the first FETCH).
        this.addVerb(statementVerb(tag, n) ?? 'fetch', ctx);
        if (ctx.mode === 'now' && typeof n.portalname === 'string') ctx.acc.fetches.add(n.portalname);
        return;
      case 'DiscardStmt':
        this.addVerb('discard', ctx);
        // DISCARD ALL includes DEALLOCATE ALL. Unless the gateway forgets too, a
        // name prepared afresh afterwards keeps the dead statement's verbs merged in.
        if (ctx.mode === 'now' && n.target === 'DISCARD_ALL') ctx.acc.deallocates = 'all';
        return;
      case 'CopyStmt':
        this.addVerb('copy', ctx);
        if (n.is_program === true) ctx.acc.copyProgram = true;
        return this.fields(n, ctx);
      case 'CreateTableAsStmt':
        this.addVerb('create', ctx);
        this.rangeVar(asNode(asNode(n.into)?.rel), ctx, false);
        return this.schedule([[n.query, ctx]]);
      case 'ViewStmt':
        this.addVerb('create', ctx);
        this.rangeVar(asNode(n.view), ctx, false);
        return this.fields(n, { ...ctx, mode: within(ctx.mode, 'later') }, VIEW_HANDLED);
      case 'RuleStmt':
        this.addVerb('create', ctx);
        this.rangeVar(asNode(n.relation), ctx, false);
        return this.fields(n, { ...ctx, mode: within(ctx.mode, 'later') }, DML_HANDLED);
      case 'CreateFunctionStmt':
        return this.createFunction(n, ctx);
      case 'DoStmt':
        this.addVerb('do', ctx);
        if (languageOf(n.args, 'plpgsql') === 'plpgsql') this.plpgsqlBody(ctx, within(ctx.mode, 'now'));
        return;
      case 'CreateTrigStmt':
      case 'CreateEventTrigStmt':
        // The trigger function runs on every matching event from now on.
        this.addVerb('create', ctx);
        this.addFunction(n.funcname, ctx);
        return this.fields(n, ctx, FUNCNAME_HANDLED);
      case 'CallStmt':
        this.addVerb('call', ctx);
        return this.schedule([[{ FuncCall: asNode(n.funccall) ?? {} }, ctx]]);
      case 'AlterDefaultPrivilegesStmt': {
        this.addVerb('alter', ctx);
        const action = asNode(n.action);
        if (action !== undefined) this.addVerb(action.is_grant === true ? 'grant' : 'revoke', ctx);
        return;
      }
      case 'DropStmt':
        this.addVerb('drop', ctx);
        if (RELATION_OBJECTS.has(String(n.removeType))) {
          for (const object of asList(n.objects)) this.addRelation(stringList(asNode(asNode(object)?.List)?.items), ctx);
        }
        return this.fields(n, ctx);
      case 'CommentStmt':
      case 'SecLabelStmt':
        this.addVerb(tag === 'CommentStmt' ? 'comment' : 'security_label', ctx);
        return this.objectRelation(n, ctx);
    }
    const verb = statementVerb(tag, n);
    if (verb !== null) this.addVerb(verb, ctx);
    this.fields(n, ctx);
  }

  /**
   * Push a WITH clause's names into scope: returns the CTE bodies to walk
   * (each with the names it can see) and the context for the rest of the
   * statement.
   */
  private withScope(withClause: unknown, ctx: Ctx): { bodies: Item[]; inner: Ctx } {
    const clause = asNode(withClause);
    if (clause === undefined) return { bodies: [], inner: ctx };
    const ctes = asList(clause.ctes).map((c) => asNode(asNode(c)?.CommonTableExpr) ?? {});
    const names = ctes.map((c) => asString(c.ctename) ?? '');
    const all = new Set([...ctx.ctes, ...names]);
    const recursive = clause.recursive === true;
    const bodies = ctes.map((cte, i): Item => {
      // Without RECURSIVE a CTE sees only the CTEs before it; a later name means a real table.
      const visible = recursive ? all : new Set([...ctx.ctes, ...names.slice(0, i)]);
      return [cte.ctequery, { ...ctx, ctes: visible }];
    });
    return { bodies, inner: { ...ctx, ctes: all } };
  }

  private select(n: Node, ctx: Ctx, insertSource: boolean): void {
    // `INSERT … VALUES (…)` reads nothing; its VALUES list is not a SELECT.
    const pureValues = n.valuesLists !== undefined && n.fromClause === undefined && n.targetList === undefined;
    if (!(insertSource && pureValues)) this.addVerb('select', ctx);
    const { bodies, inner } = this.withScope(n.withClause, ctx);
    const into = asNode(n.intoClause);
    if (into !== undefined) {
      this.addVerb('create', ctx); // SELECT … INTO creates a table
      this.rangeVar(asNode(into.rel), ctx, false);
    }
    // Set-operation arms are unwrapped SelectStmts; re-wrap them for the generic walk.
    const arms: Item[] = [];
    for (const arm of [n.larg, n.rarg]) {
      if (asNode(arm) !== undefined) arms.push([{ SelectStmt: arm }, inner]);
    }
    this.fields(n, inner, SELECT_HANDLED);
    this.schedule([...bodies, ...arms]);
  }

  private insert(n: Node, ctx: Ctx): void {
    this.addVerb('insert', ctx);
    const { bodies, inner } = this.withScope(n.withClause, ctx);
    this.rangeVar(asNode(n.relation), inner, false);
    // ON CONFLICT … DO UPDATE updates the conflicting rows.
    if (asNode(n.onConflictClause)?.action === 'ONCONFLICT_UPDATE') this.addVerb('update', inner);
    this.fields(n, inner, INSERT_HANDLED);
    const source = asNode(asNode(n.selectStmt)?.SelectStmt);
    if (source !== undefined) this.select(source, inner, true);
    else this.schedule([[n.selectStmt, inner]]);
    this.schedule(bodies);
  }

  private updateOrDelete(verb: string, n: Node, ctx: Ctx): void {
    this.addVerb(verb, ctx);
    const { bodies, inner } = this.withScope(n.withClause, ctx);
    this.rangeVar(asNode(n.relation), inner, false);
    this.fields(n, inner, DML_HANDLED);
    this.schedule(bodies);
  }

  private merge(n: Node, ctx: Ctx): void {
    this.addVerb('merge', ctx);
    const { bodies, inner } = this.withScope(n.withClause, ctx);
    this.rangeVar(asNode(n.relation), inner, false);
    for (const clause of asList(n.mergeWhenClauses)) {
      const action = MERGE_ACTION_VERBS[String(asNode(asNode(clause)?.MergeWhenClause)?.commandType)];
      if (action !== undefined) this.addVerb(action, inner);
    }
    this.fields(n, inner, DML_HANDLED);
    this.schedule(bodies);
  }

  /**
   * The body gets an analysis of its own (what EXECUTE will run), built once
   * the walk is complete; the message itself only stores it, so the body's
   * verbs count as `later` for the message.
   */
  private prepare(n: Node, ctx: Ctx): void {
    this.addVerb('prepare', ctx);
    const body = new Collected();
    this.prepared.push({ name: asString(n.name), body, parent: ctx.acc, mode: ctx.mode });
    this.schedule([[n.query, { ...ctx, acc: body, mode: 'now', ctes: NO_CTES }]]);
  }

  private finishPrepares(): void {
    for (const { name, body, parent, mode } of this.prepared) {
      if (mode === 'now' && name !== undefined) parent.prepares.push({ name, analysis: buildAnalysis(body, 1) });
      if (mode !== 'plan') for (const v of [...body.nowVerbs, ...body.laterVerbs]) parent.laterVerbs.add(v);
      for (const t of body.tables) parent.tables.add(t);
      for (const f of body.functions) parent.functions.add(f);
      parent.copyProgram ||= body.copyProgram;
    }
  }

  private createFunction(n: Node, ctx: Ctx): void {
    this.addVerb('create', ctx);
    const later: Ctx = { ...ctx, mode: within(ctx.mode, 'later') };
    // Parameter defaults and a SQL-standard body (BEGIN ATOMIC … END / RETURN …) are in the tree.
    this.fields(n, later, FUNCTION_HANDLED);
    const language = languageOf(n.options, '');
    if (language === 'sql') {
      const as = asNode(defElemValue(n.options, 'as'));
      const body = stringList(asNode(as?.List)?.items)[0] ?? asString(asNode(as?.String)?.sval);
      if (body !== undefined) this.walkText(body, ctx, later.mode, ctx.nest + 1);
    } else if (language === 'plpgsql') {
      this.plpgsqlBody(ctx, later.mode);
    }
  }

  /** Compile the current statement's PL/pgSQL body (DO or CREATE FUNCTION) and walk the SQL it contains. */
  private plpgsqlBody(ctx: Ctx, mode: Mode): void {
    if (ctx.source === null || ctx.nest >= MAX_NEST) return;
    const { text, start, length } = ctx.source;
    const statement = utf8Slice(text, start, length > 0 ? start + length : undefined);
    const compiled = this.parser.parsePlpgsql(statement);
    if (!compiled.ok) return; // the body stays opaque; `do`/`create` already rank it
    const nest = ctx.nest + 1;
    // Scheduled in reverse: each walk pushes onto the stack, and the body's first statement should come out first.
    for (const item of plpgsqlItems(compiled.value).reverse()) {
      if (item.kind === 'statement') this.walkText(item.text, ctx, mode, nest);
      else if (item.kind === 'expression') this.walkExpression(item.text, ctx, mode, nest, item.dynamic);
      else if (item.kind === 'assignment') {
        const value = assignmentValue(item.text, (t) => this.parser.scan(t));
        if (value !== null) this.walkExpression(value, ctx, mode, nest, false);
      } else this.addVerb(item.verb, { ...ctx, mode });
    }
  }

  /** COMMENT ON / SECURITY LABEL ON a relation or a column of one. */
  private objectRelation(n: Node, ctx: Ctx): void {
    const names = stringList(asNode(asNode(n.object)?.List)?.items);
    if (RELATION_OBJECTS.has(String(n.objtype))) this.addRelation(names, ctx);
    else if (n.objtype === 'OBJECT_COLUMN' && names.length > 1) this.addRelation(names.slice(0, -1), ctx);
  }
}

function deallocate(n: Node, acc: Collected): void {
  if (n.isall === true) acc.deallocates = 'all';
  else if (acc.deallocates !== 'all' && typeof n.name === 'string') acc.deallocates.add(n.name);
}

/** The LANGUAGE of a DO / CREATE FUNCTION, lower-case (PostgreSQL matches it case-insensitively only when unquoted; we always do). */
function languageOf(options: unknown, fallback: string): string {
  return (asString(asNode(asNode(defElemValue(options, 'language'))?.String)?.sval) ?? fallback).toLowerCase();
}

const SELECT_HANDLED: ReadonlySet<string> = new Set(['withClause', 'intoClause', 'larg', 'rarg']);
const INSERT_HANDLED: ReadonlySet<string> = new Set(['withClause', 'relation', 'selectStmt']);
const DML_HANDLED: ReadonlySet<string> = new Set(['withClause', 'relation']);
const VIEW_HANDLED: ReadonlySet<string> = new Set(['view']);
const FUNCNAME_HANDLED: ReadonlySet<string> = new Set(['funcname']);
const FUNCTION_HANDLED: ReadonlySet<string> = new Set(['funcname', 'options']);
