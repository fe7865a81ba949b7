/**
 * What a session remembers about SQL it let through, and how a frontend
 * message becomes an Action.
 *
 * PostgreSQL keeps SQL-level (`PREPARE p AS …`) and protocol-level (Parse
 * with a name) prepared statements in one namespace, so one map serves both;
 * `EXECUTE p` and an Execute of a portal bound from `p` therefore carry the
 * verbs of what `p` really is. The memory errs on the side of remembering
 * too much: a name re-prepared while it still exists upstream keeps the
 * union of both analyses, and a name the gateway does not know makes the
 * statement uninspectable (fail closed) rather than harmless.
 */
import type { Action, Peer, SqlFacts } from '../../policy/types.js';
import type { Enforcement } from '../../gateway/contracts.js';
import { analyzeSql, mergeAnalyses, toSqlFacts, type SqlAnalysis } from './sql.js';
import { uninspected } from './sql-analysis.js';
import { sqlNameKey, wireNameKey } from './wire.js';
import type { Effects } from './response-tracker.js';

export interface StatementInfo {
  /** SQL text as the client sent it. */
  text: string;
  /** Analysis with SQL `EXECUTE` targets merged in. */
  analysis: SqlAnalysis;
  /** Batch in which a policy decision let this statement be parsed (covers its Executes in that batch). */
  decidedBatch: number;
}

/** A message that needs a policy decision, as the decision sees it. */
export type DecisionInput =
  | { kind: 'Q'; sql: string; oversize?: number; maxBuffered?: number; settingsUncertain?: boolean }
  | { kind: 'P'; name: string; sql: string; oversize?: number; maxBuffered?: number; settingsUncertain?: boolean }
  | { kind: 'E'; portal: string }
  | { kind: 'F' };

/** Text whose tokens could change with standard_conforming_strings or a multibyte client encoding. */
const PARSE_SENSITIVE = /[\\\u0080-\uffff]/;

/** A byte/char outside ASCII: SQL text is UTF-8 text, wire names latin1 strings (one char per byte). */
export const NON_ASCII = /[^\u0000-\u007f]/;

export interface PortalInfo {
  /** null: bound from a statement the gateway does not know. */
  statement: StatementInfo | null;
  statementName: string;
  boundBatch: number;
}

/**
 * Text without quotes, dollar quotes, comments or backslashes, with every
 * numeric literal replaced by 0. Clients on the simple protocol inline
 * their values (`WHERE aid = 81234`), so hot statements differ only in their
 * numbers; the analysis — verbs, tables, functions, prepared names — cannot
 * depend on a number's value, and without those characters a digit run
 * bounded by non-word characters can only be a numeric literal (identifiers
 * cannot start with a digit; `t1`, `1e5`, `1_000`, `1abc` are left alone;
 * non-ASCII text is excluded because `é1` is an identifier to PostgreSQL but
 * not a word to the regular expression).
 * So both texts share one cached parse. Anything else is analysed as sent.
 */
const LITERAL_SHAPE_SAFE = /^[^'"$\\\-/\u0080-\uffff]*$/;
const NUMERIC_LITERAL = /\b\d+(?:\.\d+)?\b/g;

export function literalShape(text: string): string {
  return LITERAL_SHAPE_SAFE.test(text) ? text.replace(NUMERIC_LITERAL, '0') : text;
}

/**
 * A wire FunctionCall runs a function by OID: there is no SQL to inspect, so
 * it carries the verb `function_call`, which the policy's SQL backstop
 * denies unless a rule allows it.
 */
export const FUNCTION_CALL_ANALYSIS: SqlAnalysis = {
  inspected: true,
  verb: 'function_call',
  verbs: ['function_call'],
  tables: [],
  functions: [],
  statementCount: 1,
  copyProgram: false,
  prepares: [],
  executes: [],
  fetches: [],
  deallocates: [],
};

/** The session start carries no statement; rules never see it (decide stops after resolving the credential). */
const SESSION_START_ANALYSIS = uninspected('the session start carries no statement');

const NO_EFFECTS: Effects = Object.freeze({});

/** Limits of what one session's StatementMemory holds (see `overLimit`). */
export const MAX_REMEMBERED_STATEMENTS = 10_000;
export const MAX_REMEMBERED_TEXT_CHARS = 64 * 1024 * 1024;

export class StatementMemory {
  private readonly prepared = new Map<string, StatementInfo>();
  private readonly portals = new Map<string, PortalInfo>();
  /** Sum of the remembered statements' text lengths. */
  private textChars = 0;

  /**
   * `nonAsciiUnknown()`: true while the gateway cannot be sure that both the
   * client and the server encoding are UTF-8. The gateway reads SQL as UTF-8
   * and keys names by their bytes; the server converts text and names from
   * the client encoding to its own and truncates names to 63 bytes of *that*.
   * Under LATIN1, `PREPARE "\xe9"` and `PREPARE "\xe8"` are two statements
   * upstream but one name (U+FFFD) here, so a DEALLOCATE of one made the
   * gateway forget the other. Only ASCII means the same on both sides, so
   * non-ASCII text and names are then treated as unknown (fail closed).
   */
  constructor(private readonly nonAsciiUnknown: () => boolean = () => false) {}

  /** A name whose server-side identity the gateway cannot know right now. */
  private unknownName(name: string): boolean {
    return NON_ASCII.test(name) && this.nonAsciiUnknown();
  }

  /**
   * Analyse SQL text and merge in what every `EXECUTE name` in it runs
   * (statements prepared earlier in the session or earlier in the same
   * text), and what every `FETCH`/`MOVE` of a protocol-level portal runs.
   */
  analyze(text: string): SqlAnalysis {
    const own = analyzeSql(literalShape(text));
    if (!own.inspected || (own.executes.length === 0 && own.fetches.length === 0)) return own;
    const parts: SqlAnalysis[] = [own];
    for (const name of own.fetches) {
      // Not a portal bound here: a cursor DECLAREd in SQL (decided then: a query), or nothing.
      const portal = this.portal(sqlNameKey(name));
      if (portal) {
        parts.push(portal.statement?.analysis ?? uninspected(`FETCH from portal "${name}" whose statement the gateway has not seen`));
      }
    }
    for (const name of own.executes) {
      const key = sqlNameKey(name);
      const inText = own.prepares.filter((p) => sqlNameKey(p.name) === key).map((p) => p.analysis);
      const known = this.prepared.get(key);
      if (known) parts.push(known.analysis);
      parts.push(...inText);
      if (!known && inText.length === 0) {
        parts.push(uninspected(`EXECUTE of prepared statement "${name}" the gateway has not seen prepared`));
      }
    }
    return mergeAnalyses(parts);
  }

  /**
   * A Query ran to completion without error: forget its DEALLOCATEs, then
   * remember its PREPAREs. Only a Query the server completed may make the
   * gateway forget a name: a DEALLOCATE that never ran (an earlier statement
   * of the message failed, the transaction was aborted) leaves the server's
   * statement in place, and a later PREPARE of that name fails upstream —
   * the gateway would then decide `EXECUTE p` on a body p does not have.
   */
  applyQuery(a: SqlAnalysis, text: string): void {
    if (!a.inspected) return;
    if (a.deallocates === 'all') {
      this.forgetAll();
    } else {
      for (const name of a.deallocates) this.forget(sqlNameKey(name));
    }
    this.rememberPrepares(a, text);
  }

  /** PREPAREs in an allowed text, remembered before they run (merged with what the name had: errs on the side of remembering). */
  private rememberPrepares(a: SqlAnalysis, text: string): void {
    if (!a.inspected) return;
    for (const p of a.prepares) {
      // decidedBatch -1: SQL-level statements never cover a protocol Execute.
      this.remember(sqlNameKey(p.name), { text, analysis: p.analysis, decidedBatch: -1 }, true);
    }
  }

  /** An allowed Parse was forwarded. */
  parse(wireName: string, info: StatementInfo): void {
    // The unnamed statement is replaced; a named one that still exists makes
    // the server fail the Parse — keep both analyses, the server keeps the old.
    this.remember(wireNameKey(wireName), info, wireName !== '');
  }

  private remember(key: string, info: StatementInfo, merge: boolean): void {
    const old = this.prepared.get(key);
    if (merge && old) {
      this.store(key, {
        text: old.text === info.text ? info.text : `${old.text}\n;\n${info.text}`,
        analysis: mergeAnalyses([old.analysis, info.analysis]),
        decidedBatch: info.decidedBatch,
      });
    } else {
      this.store(key, info);
    }
  }

  /**
   * Every write to the map goes through here, to keep `textChars` exact. The
   * gateway remembers more than the server holds (a PREPARE that failed
   * upstream, the union of a name re-prepared while it existed), so a session
   * could otherwise grow the gateway's memory without growing the server's.
   */
  private store(key: string, info: StatementInfo): void {
    this.textChars += info.text.length - (this.prepared.get(key)?.text.length ?? 0);
    this.prepared.set(key, info);
  }

  private forget(key: string): void {
    this.textChars -= this.prepared.get(key)?.text.length ?? 0;
    this.prepared.delete(key);
  }

  private forgetAll(): void {
    this.prepared.clear();
    this.textChars = 0;
  }

  /**
   * Why the session must end (it remembers more than MAX_REMEMBERED_*), or
   * null. Forgetting instead would be unsafe: a name the gateway forgot but
   * the server kept could be re-prepared here as something harmless.
   */
  overLimit(): string | null {
    if (this.prepared.size > MAX_REMEMBERED_STATEMENTS) {
      return `more than ${MAX_REMEMBERED_STATEMENTS} prepared statements in one session (including PREPAREs that failed); reconnect`;
    }
    if (this.textChars > MAX_REMEMBERED_TEXT_CHARS) {
      return `prepared statements of one session hold more than ${MAX_REMEMBERED_TEXT_CHARS} characters of SQL; reconnect`;
    }
    return null;
  }

  /**
   * A Bind was forwarded. It counts at once (an Execute behind it in the same
   * batch relies on it), but a Bind the server failed or skipped leaves the
   * portal what it was: `Bind c` of a harmless statement failing because `c`
   * exists ("cursor already exists") must not hide the `c` that does — it
   * survives a ROLLBACK TO SAVEPOINT and runs on the next Execute or FETCH.
   */
  bind(portal: string, statementName: string, batch: number): Effects {
    if (this.unknownName(portal)) return NO_EFFECTS; // portal() will not find it either
    const key = wireNameKey(portal);
    const before = this.portals.get(key);
    const after: PortalInfo = {
      statement: this.unknownName(statementName) ? null : (this.prepared.get(wireNameKey(statementName)) ?? null),
      statementName,
      boundBatch: batch,
    };
    this.portals.set(key, after);
    return {
      voided: () => {
        if (this.portals.get(key) !== after) return;
        if (before) this.portals.set(key, before);
        else this.portals.delete(key);
      },
    };
  }

  portal(name: string): PortalInfo | undefined {
    if (this.unknownName(name)) return undefined;
    return this.portals.get(wireNameKey(name));
  }

  /** An Execute whose statement was parsed — and decided — in this same batch needs no decision of its own. */
  covers(portalName: string, batch: number): boolean {
    const portal = this.portal(portalName);
    return !!portal?.statement && portal.boundBatch === batch && portal.statement.decidedBatch === batch;
  }

  /**
   * What a decision about this message looks at: the analysis and the
   * statement text (`truncated`: the text was over the limit and never read).
   */
  decisionInput(d: DecisionInput): { analysis: SqlAnalysis; text: string; truncated?: boolean } {
    switch (d.kind) {
      case 'Q':
      case 'P':
        if (d.oversize !== undefined) {
          return {
            analysis: uninspected(`statement of ${d.oversize} bytes is over limits.body_buffer (${d.maxBuffered} bytes)`),
            text: '',
            truncated: true,
          };
        }
        if (d.settingsUncertain && PARSE_SENSITIVE.test(d.sql)) {
          return {
            analysis: uninspected(
              'a backslash or non-ASCII text after an executed statement in the same pipeline: ' +
                'its meaning depends on settings the server reports only at Sync',
            ),
            text: d.sql,
          };
        }
        if ((NON_ASCII.test(d.sql) || (d.kind === 'P' && NON_ASCII.test(d.name))) && this.nonAsciiUnknown()) {
          return {
            analysis: uninspected('non-ASCII text or name while the client or server encoding is not UTF-8: the server reads it differently'),
            text: d.sql,
          };
        }
        return { analysis: this.analyze(d.sql), text: d.sql };
      case 'E': {
        const st = this.portal(d.portal)?.statement;
        if (st) return { analysis: st.analysis, text: st.text };
        const name = Buffer.from(d.portal, 'latin1').toString('utf8');
        return { analysis: uninspected(`Execute of portal "${name}" whose statement the gateway has not seen`), text: '' };
      }
      case 'F':
        return { analysis: FUNCTION_CALL_ANALYSIS, text: '' };
    }
  }

  /**
   * Remember what an allowed Query/Parse defines as it is forwarded (its
   * Executes in the same batch rely on it), and return what to do once the
   * server has answered it (see `Effects`).
   */
  allowed(d: DecisionInput, analysis: SqlAnalysis, text: string, batch: number): Effects {
    if (d.kind === 'Q') {
      this.rememberPrepares(analysis, text);
      // Nothing to forget (the common case): no callback to keep per statement.
      if (!analysis.inspected || (analysis.deallocates !== 'all' && analysis.deallocates.length === 0)) return NO_EFFECTS;
      return { confirmed: () => this.applyQuery(analysis, text) };
    }
    if (d.kind !== 'P' || this.unknownName(d.name)) return NO_EFFECTS;
    const key = wireNameKey(d.name);
    const before = this.prepared.get(key);
    this.parse(d.name, { text, analysis, decidedBatch: batch });
    const after = this.prepared.get(key);
    // A PREPARE inside a Parse runs only when executed; a DEALLOCATE inside
    // one is never applied, for the same reason: it may never run.
    this.rememberPrepares(analysis, text);
    return {
      // The server failed or skipped the Parse: it still has what the name had before.
      voided: () => {
        if (this.prepared.get(key) !== after) return;
        if (before) this.store(key, before);
        else this.forget(key);
      },
    };
  }

  /**
   * A Close of a statement was forwarded; forget the statement only once the
   * server confirms the Close (a Close it skips after an error leaves the
   * statement in place), and only if the name was not parsed again since.
   */
  closing(name: string): Effects {
    // The server closes whatever these bytes name in its encoding, not necessarily our entry: forget nothing.
    if (this.unknownName(name)) return NO_EFFECTS;
    const key = wireNameKey(name);
    const st = this.prepared.get(key);
    return {
      confirmed: () => {
        if (this.prepared.get(key) === st) this.forget(key);
      },
    };
  }

  closePortal(name: string): void {
    this.portals.delete(wireNameKey(name));
  }

  /** The server left every transaction and has answered everything: no portal exists upstream. */
  transactionEnded(): void {
    if (this.portals.size > 0) this.portals.clear();
  }

  /** For tests and diagnostics. */
  preparedNames(): string[] {
    return [...this.prepared.keys()];
  }

  /** For tests and diagnostics. */
  get portalCount(): number {
    return this.portals.size;
  }
}

// ───────────────────────────── actions ────────────────────────────────────

export interface ActionContext {
  /** '' when the transport did not say (the session start then looks the endpoint up by `host`). */
  endpointId: string;
  /** The endpoint host the agent dialed (for the Action's host). */
  host: string;
  port: number;
  profile?: string;
  peer?: Peer;
  /** Startup user as the agent sent it (may be a placeholder). */
  user: string;
  database: string;
  /**
   * The credential the session logged in with: every later action is pinned
   * to it, so rules keyed to a credential see the role the statements really
   * run as, and a credential the policy no longer offers denies them.
   */
  credential?: string;
  /** Set once the session start resolved the login: later actions need no secret material. */
  loggedIn?: boolean;
}

export function sqlFacts(a: SqlAnalysis, statement: string, ctx: ActionContext, truncated = false): SqlFacts {
  const facts = toSqlFacts(a, { statement, database: ctx.database, user: ctx.user });
  if (truncated) facts.statement_truncated = true;
  return facts;
}

export function sqlAction(ctx: ActionContext, facts: SqlFacts, phase?: Action['phase']): Action {
  const action: Action = {
    family: 'sql',
    host: ctx.host,
    port: ctx.port,
    endpoint: ctx.endpointId,
    user: ctx.user,
    database: ctx.database,
    placeholders: [ctx.user],
    facts: { sql: facts },
  };
  if (ctx.profile !== undefined) action.profile = ctx.profile;
  if (ctx.peer) action.peer = ctx.peer;
  if (ctx.credential !== undefined) action.credential = ctx.credential;
  if (phase !== undefined) action.phase = phase;
  // After login (statements, startup options) the upstream connection is authenticated: nothing more is injected.
  if (ctx.loggedIn) action.upstreamAuthenticated = true;
  return action;
}

/** The login: decide resolves endpoint and credential only (no rules); audited as its own record. */
export function sessionStartAction(ctx: ActionContext): Action {
  return sqlAction(ctx, sqlFacts(SESSION_START_ANALYSIS, '', ctx), 'session_start');
}

/**
 * Startup `options` as the SET statements they amount to: decided like
 * statements, except that only a matching rule may allow them.
 */
export function startupOptionsAction(ctx: ActionContext, sql: string, memory = new StatementMemory()): Action {
  return sqlAction(ctx, sqlFacts(memory.analyze(sql), sql, ctx), 'startup_options');
}

/**
 * A safety net behind the pin: a session that logged in without an injected
 * credential cannot take one on later (the policy was reloaded to give the
 * endpoint one). Returns why the statement is refused, or null.
 */
export function credentialMismatch(enf: Pick<Enforcement, 'decision'>, loggedInWith: string | null): string | null {
  if (enf.decision.credential === loggedInWith) return null;
  return (
    `the policy now resolves credential ${enf.decision.credential ?? '(none)'} for this statement, ` +
    `but the session logged in with ${loggedInWith ?? 'no credential'}; reconnect`
  );
}

/** The action for one message the session must decide. */
export function messageAction(ctx: ActionContext, input: { analysis: SqlAnalysis; text: string; truncated?: boolean }): Action {
  return sqlAction(ctx, sqlFacts(input.analysis, input.text, ctx, input.truncated === true));
}
