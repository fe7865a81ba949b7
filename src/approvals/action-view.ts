/**
 * The view of an action that approvers see — the LLM judge's data block, the
 * Slack card, the CLI/dashboard queue. It carries the full facts an approver
 * needs (the whole SQL statement up to a limit, every table and function,
 * every exec argument, HTTP method/path/headers/body excerpt) but never a
 * secret: credential-bearing header values are redacted and every vault value
 * is scrubbed from every string *before* anything is truncated (a cut secret
 * would no longer match the scrubber).
 */
import type { Action, Decision, HttpFacts, K8sFacts, SqlFacts } from '../policy/types.js';
import { REDACTED, SENSITIVE_HEADERS } from '../audit/redact.js';

export interface ViewLimits {
  /** Characters of `sql.statement` shown. */
  statement: number;
  /** Characters of the HTTP body shown. */
  body: number;
  /** Characters of any other single string (header value, exec argument, table name). */
  string: number;
  /** Entries of any list or map (tables, headers, query keys, exec arguments). */
  items: number;
}

export const DEFAULT_VIEW_LIMITS: ViewLimits = { statement: 8000, body: 2000, string: 1000, items: 256 };

export interface ViewOptions {
  /** Removes vault values (and their encodings) from text. */
  scrub: (text: string) => string;
  /** Extra header names to redact (e.g. `header_token` credentials' headers). Case-insensitive. */
  sensitiveHeaders?: Iterable<string>;
  limits?: Partial<ViewLimits>;
}

/** A string that may have been cut; `length` is the full length when it was. */
export interface Excerpt {
  text: string;
  truncated: boolean;
  length: number;
}

export interface ActionView {
  family: Action['family'];
  host: string;
  endpoint: string | null;
  credential: string | null;
  profile: string | null;
  peer: { id: string; name?: string; address?: string } | null;
  rule: string;
  reason: string;
  /** The facts an approver sees, clipped and scrubbed; long texts are excerpts. */
  sql?: Pick<SqlFacts, 'verb' | 'verbs' | 'tables' | 'functions' | 'database' | 'user' | 'inspected' | 'inspect_error'> & {
    statement: Excerpt;
  };
  http?: Pick<HttpFacts, 'method' | 'path' | 'raw_path' | 'host' | 'query' | 'headers'> & {
    body: Excerpt;
    /** True when the gateway itself could not buffer the whole body. */
    body_over_limit: boolean;
  };
  k8s?: Pick<K8sFacts, 'verb' | 'resource' | 'subresource' | 'namespace' | 'name' | 'api_group' | 'api_version' | 'command' | 'params'>;
  content?: { findings: string[]; score: number; verdict: string };
  /** True when any list or map was cut to `limits.items` entries. */
  lists_truncated: boolean;
}

export function buildActionView(action: Action, decision: Decision, opts: ViewOptions): ActionView {
  const limits = { ...DEFAULT_VIEW_LIMITS, ...opts.limits };
  const sensitive = new Set(SENSITIVE_HEADERS);
  for (const h of opts.sensitiveHeaders ?? []) sensitive.add(h.toLowerCase());
  let listsTruncated = false;

  // A cut string says so, with its full length: a silent cut let an agent pad a path, header or
  // exec argument so the part that matters was simply not there for the approver to see.
  const clean = (text: unknown, max = limits.string): string => marked(clamp(opts.scrub(String(text ?? '')), max));
  const list = (items: readonly unknown[] | undefined, max = limits.string): string[] => {
    const all = items ?? [];
    if (all.length > limits.items) listsTruncated = true;
    return all.slice(0, limits.items).map((x) => clean(x, max));
  };
  const entries = <T>(record: Record<string, T> | undefined): Array<[string, T]> => {
    const all = Object.entries(record ?? {});
    if (all.length > limits.items) listsTruncated = true;
    return all.slice(0, limits.items);
  };

  const view: ActionView = {
    family: action.family,
    host: clean(action.host),
    endpoint: decision.endpoint,
    credential: decision.credential,
    profile: action.profile ?? null,
    peer: action.peer
      ? {
          id: clean(action.peer.id),
          ...(action.peer.name !== undefined ? { name: clean(action.peer.name) } : {}),
          ...(action.peer.address !== undefined ? { address: clean(action.peer.address) } : {}),
        }
      : null,
    rule: decision.rule,
    reason: clean(decision.reason),
    lists_truncated: false,
  };

  const { sql, http, k8s, content } = action.facts;
  if (sql) {
    view.sql = {
      verb: clean(sql.verb),
      verbs: list(sql.verbs),
      tables: list(sql.tables),
      functions: list(sql.functions),
      statement: clamp(opts.scrub(sql.statement ?? ''), limits.statement),
      database: clean(sql.database),
      user: clean(sql.user),
      inspected: sql.inspected !== false,
      ...(sql.inspect_error !== undefined ? { inspect_error: clean(sql.inspect_error) } : {}),
    };
  }
  if (http) {
    const headers = freshRecord<string>();
    for (const [name, value] of entries(http.headers)) {
      put(headers, clean(name.toLowerCase(), 200), sensitive.has(name.toLowerCase()) ? REDACTED : clean(value));
    }
    const query = freshRecord<string[]>();
    for (const [name, values] of entries(http.query)) put(query, clean(name, 200), list(values));
    view.http = {
      method: clean(http.method, 32),
      path: clean(http.path),
      raw_path: clean(http.raw_path),
      host: clean(http.host),
      query,
      headers,
      body: clamp(opts.scrub(http.body_truncated ? '' : (http.body ?? '')), limits.body),
      body_over_limit: http.body_truncated === true,
    };
  }
  if (k8s) {
    const params = freshRecord<string>();
    for (const [name, value] of entries(k8s.params)) put(params, clean(name, 200), clean(value));
    view.k8s = {
      verb: clean(k8s.verb, 64),
      resource: clean(k8s.resource),
      subresource: clean(k8s.subresource),
      namespace: clean(k8s.namespace),
      name: clean(k8s.name),
      api_group: clean(k8s.api_group),
      api_version: clean(k8s.api_version),
      command: list(k8s.command),
      params,
    };
  }
  if (content) {
    view.content = { findings: list(content.findings, 200), score: content.score, verdict: clean(content.verdict, 16) };
  }
  view.lists_truncated = listsTruncated;
  return view;
}

/** An excerpt as one string: the text, and when it was cut, `…`, `separator` and a marker with the full length. */
export function marked(excerpt: Excerpt, separator = ''): string {
  return excerpt.truncated ? `${excerpt.text}…${separator}[cut: ${excerpt.text.length} of ${excerpt.length} characters shown]` : excerpt.text;
}

/** A map for agent-named keys: no prototype, so a key `__proto__` is a member like any other. */
function freshRecord<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/**
 * Add a member whose key is agent-controlled text after scrubbing and cutting. Two different names can
 * end up the same (a shared 200-character prefix, a scrubbed secret); the later one gets a ` #n`
 * suffix instead of overwriting — an overwrite hid the earlier value from the approver.
 */
function put<T>(record: Record<string, T>, key: string, value: T): void {
  let name = key;
  for (let n = 2; Object.hasOwn(record, name); n++) name = `${key} #${n}`;
  record[name] = value;
}

/** Cut on a code-point boundary so a surrogate pair is never split. */
export function clamp(text: string, max: number): Excerpt {
  if (text.length <= max) return { text, truncated: false, length: text.length };
  let end = max;
  const code = text.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end -= 1;
  return { text: text.slice(0, end), truncated: true, length: text.length };
}

/** One line a human recognises the action by (queue listings, notifications). */
export function summarize(view: ActionView, max = 120): string {
  let line: string;
  if (view.sql) {
    const statement = oneLine(view.sql.statement.text);
    const verb = view.sql.verb.toUpperCase() || 'SQL';
    // Name the verb when the statement does not start with it (a DELETE hidden in a CTE).
    line = statement.toUpperCase().startsWith(verb) ? statement : `[${verb}] ${statement}`;
  } else if (view.k8s) {
    const target = [view.k8s.namespace, view.k8s.resource, view.k8s.name].filter(Boolean).join('/');
    line = `${view.k8s.verb} ${target}${view.k8s.command.length ? ` -- ${view.k8s.command.join(' ')}` : ''}`;
  } else if (view.http) {
    line = `${view.http.method.toUpperCase()} ${view.http.host}${view.http.path}`;
  } else {
    line = `${view.family} ${view.host}`;
  }
  line = oneLine(line);
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/**
 * Bidirectional-text controls (embeddings, overrides, isolates, marks). They are invisible and reorder
 * what follows on screen ("Trojan Source"): agent text could show an approver a statement or path in
 * an order other than the one that runs.
 */
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every bidi control shown as `�` (Slack cards, terminals). */
export function withoutBidiControls(text: string): string {
  return text.replace(BIDI_CONTROLS, '\ufffd');
}

function oneLine(text: string): string {
  // Control characters would let content rewrite a terminal line; collapse them.
  return withoutBidiControls(text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ')).replace(/\s+/g, ' ').trim();
}

/** What the action does, as the lines an approver reads. */
export function describeAction(view: ActionView): { title: string; body: string; details: string[] } {
  if (view.sql) {
    const s = view.sql;
    const details = [
      `verbs: ${s.verbs.join(', ') || s.verb}`,
      `tables: ${s.tables.join(', ') || '—'}`,
      ...(s.functions.length ? [`functions: ${s.functions.join(', ')}`] : []),
      `database: ${s.database || '—'} as ${s.user || '—'}`,
      ...(s.inspected ? [] : [`not inspectable: ${s.inspect_error ?? 'unknown reason'}`]),
      ...(s.statement.truncated ? [`statement cut: ${s.statement.text.length} of ${s.statement.length} characters shown`] : []),
    ];
    return { title: `SQL ${s.verb.toUpperCase()}`, body: s.statement.text, details };
  }
  if (view.k8s) {
    const k = view.k8s;
    const target = `${k.resource}${k.name ? ` ${k.name}` : ''}${k.namespace ? ` in ${k.namespace}` : ''}`;
    const body = k.command.length ? k.command.map((arg) => JSON.stringify(arg)).join(' ') : `${k.verb} ${target}`;
    return {
      title: `Kubernetes ${k.verb} ${target}`,
      body,
      details: [`api: ${[k.api_group, k.api_version].filter(Boolean).join('/') || 'core'}`],
    };
  }
  if (view.http) {
    const h = view.http;
    const query = Object.entries(h.query)
      .flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`))
      .join('&');
    const headers = Object.entries(h.headers).map(([k, v]) => `${k}: ${v}`);
    const body = [`${h.method.toUpperCase()} ${h.path}${query ? `?${query}` : ''}`, `host: ${h.host}`, ...headers, '', h.body.text]
      .join('\n')
      .trimEnd();
    const details = [
      ...(h.body.truncated ? [`body cut: ${h.body.text.length} of ${h.body.length} characters shown`] : []),
      ...(h.body_over_limit ? ['body over the gateway buffer limit (not shown)'] : []),
    ];
    return { title: `HTTP ${h.method.toUpperCase()} ${h.host}${h.path}`, body, details };
  }
  return { title: `${view.family} ${view.host}`, body: '', details: [] };
}

/**
 * Text safe to print on an operator's terminal: C0/C1 control characters
 * (ANSI escapes, carriage returns that overwrite a line) and bidi controls
 * become `�`; newlines and tabs stay.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/g, '\ufffd').replace(BIDI_CONTROLS, '\ufffd');
}
