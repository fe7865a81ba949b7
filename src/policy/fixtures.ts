/**
 * Fixtures for `clawpatrol test`: one JSON file per recorded action, strict
 * (unknown keys are errors), turned into the same `Action` live traffic
 * produces and replayed through the same `decide()`.
 *
 *   { "action": { host, port?, endpoint?, profile?, credential?, placeholders?,
 *                 user?, database?, http | sql | k8s (+http) | raw, content? },
 *     "match":  { verdict, rule?, endpoint?, credential?, approve?, failClosed?,
 *                 passthrough?, effective?, reason? },
 *     "description"?: "…" }
 *
 * SQL fixtures give the statement; verb/verbs/tables/functions come from the
 * real parser (src/protocols/postgres/sql.ts) and, when the fixture states
 * them too, must agree with it. `raw` fixtures carry wire bytes (base64) and
 * are parsed by the protocol engine's parser, registered with
 * `registerRawParser`.
 */
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { Action, Decision, Endpoint, Facts, HttpFacts, K8sFacts, SqlFacts, Verdict } from './types.js';
import type { CompiledPolicy } from './compiled.js';
import { didYouMean } from './diagnostics.js';
import { placeholdersFromHeaders, placeholderHeaders } from './placeholders.js';
import { splitHostPort } from './hosts.js';

// ───────────────────────────── raw parsers ──────────────────────────────────

export type RawKind = 'http' | 'postgres';

export interface RawParseContext {
  /** The endpoint the bytes are for (from `action.endpoint` or host lookup), or null. */
  endpoint: Endpoint | null;
  host: string;
  port?: number;
  profile?: string;
  policy: CompiledPolicy;
}

export type RawParser = (bytes: Buffer, ctx: RawParseContext) => Action | Action[];

const rawParsers = new Map<RawKind, RawParser>();

/** Protocol engines call this (at import) so `raw` fixtures replay through their real parser. */
export function registerRawParser(kind: RawKind, parse: RawParser): void {
  rawParsers.set(kind, parse);
}

/**
 * Modules that register a raw parser when imported. `clawpatrol test` loads
 * them on demand, so a fixture run does not start whole engines.
 */
const RAW_PARSER_MODULES: Record<RawKind, string[]> = {
  http: ['../protocols/http/raw-fixture.js'],
  postgres: ['../protocols/postgres/raw-fixture.js'],
};

async function ensureRawParser(kind: RawKind): Promise<RawParser | undefined> {
  if (!rawParsers.has(kind)) {
    for (const spec of RAW_PARSER_MODULES[kind]) {
      try {
        await import(spec);
      } catch (err) {
        if (!isModuleMissing(err)) throw err;
      }
      if (rawParsers.has(kind)) break;
    }
  }
  return rawParsers.get(kind);
}

function isModuleMissing(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

// ───────────────────────────── SQL analysis ─────────────────────────────────

type SqlModule = typeof import('../protocols/postgres/sql.js');
let sqlModule: Promise<SqlModule> | undefined;

/** The Postgres engine's SQL analysis (libpg-query), loaded the first time a SQL fixture needs it. */
function loadSqlModule(): Promise<SqlModule> {
  sqlModule ??= (async () => {
    const m = await import('../protocols/postgres/sql.js');
    await m.initSqlParser();
    return m;
  })();
  return sqlModule;
}

// ───────────────────────────── fixture shape ────────────────────────────────

export interface FixtureMatch {
  verdict: Verdict;
  rule?: string;
  endpoint?: string | null;
  credential?: string | null;
  approve?: string[];
  failClosed?: boolean;
  passthrough?: boolean;
  effective?: Verdict;
  /** Must be contained in the decision's reason. */
  reason?: string;
}

export interface FixtureSql {
  statement: string;
  verb?: string;
  verbs?: string[];
  tables?: string[];
  functions?: string[];
  database?: string;
  user?: string;
}

export interface FixtureAction {
  host: string;
  port?: number;
  endpoint?: string;
  profile?: string;
  credential?: string;
  placeholders?: string[];
  user?: string;
  database?: string;
  http?: Record<string, unknown>;
  sql?: FixtureSql;
  k8s?: Record<string, unknown>;
  raw?: string;
  content?: { findings: string[]; score?: number; verdict?: 'allow' | 'review' | 'block' };
}

export interface Fixture {
  file: string;
  description?: string;
  action: FixtureAction;
  match: FixtureMatch;
}

export interface FixtureError {
  file: string;
  error: string;
}

export function isFixtureError(x: unknown): x is FixtureError {
  return typeof x === 'object' && x !== null && 'error' in x && !('action' in x);
}

type Check = (v: unknown, path: string) => string | undefined;

const str: Check = (v, p) => (typeof v === 'string' ? undefined : `${p} must be a string`);
const bool: Check = (v, p) => (typeof v === 'boolean' ? undefined : `${p} must be true or false`);
const num: Check = (v, p) => (typeof v === 'number' && Number.isFinite(v) ? undefined : `${p} must be a number`);
const port: Check = (v, p) => (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535 ? undefined : `${p} must be a port number (1–65535)`);
const strList: Check = (v, p) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : `${p} must be a list of strings`);
const strOrNull: Check = (v, p) => (v === null || typeof v === 'string' ? undefined : `${p} must be a string or null`);
const verdict: Check = (v, p) => (v === 'allow' || v === 'deny' || v === 'approve' ? undefined : `${p} must be "allow", "deny" or "approve"`);
const any: Check = () => undefined;
/** string → string | string[] maps (headers, query). */
const multiMap: Check = (v, p) => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return `${p} must be an object`;
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== 'string' && !(Array.isArray(x) && x.every((y) => typeof y === 'string'))) return `${p}.${k} must be a string or a list of strings`;
  }
  return undefined;
};
const strMap: Check = (v, p) => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return `${p} must be an object`;
  for (const [k, x] of Object.entries(v)) if (typeof x !== 'string') return `${p}.${k} must be a string`;
  return undefined;
};

function shape(fields: Record<string, Check>, required: string[] = []): Check {
  return (v, p) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return `${p} must be an object`;
    const obj = v as Record<string, unknown>;
    for (const key of Object.keys(obj)) {
      if (!(key in fields)) return `unknown key "${key}" in ${p}${didYouMean(key, Object.keys(fields))}`;
    }
    for (const key of required) if (!(key in obj)) return `${p}.${key} is required`;
    for (const [key, check] of Object.entries(fields)) {
      if (key in obj) {
        const e = check(obj[key], `${p}.${key}`);
        if (e) return e;
      }
    }
    return undefined;
  };
}

const HTTP_SHAPE = shape(
  { method: str, path: str, raw_path: str, host: str, query: multiMap, headers: multiMap, body: str, body_json: any, body_truncated: bool },
  ['method', 'path'],
);
const SQL_SHAPE = shape({ statement: str, verb: str, verbs: strList, tables: strList, functions: strList, database: str, user: str }, ['statement']);
const K8S_SHAPE = shape(
  {
    verb: str,
    resource: str,
    namespace: str,
    name: str,
    params: strMap,
    subresource: str,
    api_group: str,
    api_version: str,
    command: strList,
  },
  ['verb', 'resource'],
);
const contentVerdict: Check = (v, p) => (v === 'allow' || v === 'review' || v === 'block' ? undefined : `${p} must be "allow", "review" or "block"`);
const CONTENT_SHAPE = shape({ findings: strList, score: num, verdict: contentVerdict }, ['findings']);
const ACTION_SHAPE = shape(
  {
    host: str,
    port,
    endpoint: str,
    profile: str,
    credential: str,
    placeholders: strList,
    user: str,
    database: str,
    http: HTTP_SHAPE,
    sql: SQL_SHAPE,
    k8s: K8S_SHAPE,
    raw: str,
    content: CONTENT_SHAPE,
  },
  [],
);
const MATCH_SHAPE = shape(
  {
    verdict,
    rule: str,
    endpoint: strOrNull,
    credential: strOrNull,
    approve: strList,
    failClosed: bool,
    passthrough: bool,
    effective: verdict,
    reason: str,
  },
  ['verdict'],
);
const FIXTURE_SHAPE = shape({ action: ACTION_SHAPE, match: MATCH_SHAPE, description: str }, ['action', 'match']);

/** Validate parsed JSON as a fixture. */
export function parseFixture(json: unknown, file: string): Fixture | FixtureError {
  const e = FIXTURE_SHAPE(json, 'fixture');
  if (e) return { file, error: e };
  const f = json as { action: FixtureAction; match: FixtureMatch; description?: string };
  const a = f.action;
  const kinds = (['http', 'sql', 'k8s', 'raw'] as const).filter((k) => a[k] !== undefined);
  // A k8s fixture may also carry the http facts k8s rules can read.
  const primary = kinds.filter((k) => !(k === 'http' && a.k8s !== undefined));
  if (primary.length !== 1) {
    return { file, error: `fixture.action needs exactly one of "http", "sql", "k8s" or "raw" (found ${kinds.length ? kinds.join(', ') : 'none'})` };
  }
  if (a.raw !== undefined && (kinds.length > 1 || !/^[A-Za-z0-9+/=\s_-]*$/.test(a.raw))) {
    return { file, error: 'fixture.action.raw must be base64 and stand alone (no http/sql/k8s next to it)' };
  }
  if (a.host === undefined && a.endpoint === undefined) return { file, error: 'fixture.action needs "host" or "endpoint"' };
  const out: Fixture = { file, action: { ...a, host: a.host ?? '' }, match: f.match };
  if (f.description !== undefined) out.description = f.description;
  return out;
}

/** Read and validate one fixture file. */
export function loadFixture(path: string): Fixture | FixtureError {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { file: path, error: `cannot read: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}` };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { file: path, error: `not valid JSON: ${(err as Error).message}` };
  }
  return parseFixture(json, path);
}

// ───────────────────────────── fixture → action ─────────────────────────────

function joinHeaderValues(v: string | string[]): string {
  return Array.isArray(v) ? v.join(', ') : v;
}

/** `http.body_json` as the engines derive it from the body: the parsed JSON, `{}` when it is not JSON. */
function parsedBody(body: string): unknown {
  try {
    return body === '' ? {} : JSON.parse(body);
  } catch {
    return {};
  }
}

function httpFactsOf(h: Record<string, unknown>, host: string): HttpFacts {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries((h['headers'] as Record<string, string | string[]>) ?? {})) {
    const key = k.toLowerCase();
    headers[key] = headers[key] === undefined ? joinHeaderValues(v) : `${headers[key]}, ${joinHeaderValues(v)}`;
  }
  const query: Record<string, string[]> = {};
  for (const [k, v] of Object.entries((h['query'] as Record<string, string | string[]>) ?? {})) query[k] = Array.isArray(v) ? v : [v];
  const body = (h['body'] as string | undefined) ?? '';
  const bodyJson: unknown = h['body_json'] !== undefined ? h['body_json'] : parsedBody(body);
  const path = h['path'] as string;
  const facts: HttpFacts = {
    method: h['method'] as string,
    path,
    raw_path: (h['raw_path'] as string | undefined) ?? path,
    host: (h['host'] as string | undefined) ?? splitHostPort(host).host,
    query,
    headers,
    body,
    body_json: bodyJson,
  };
  if (h['body_truncated'] === true) facts.body_truncated = true;
  return facts;
}

function k8sFactsOf(k: Record<string, unknown>): K8sFacts {
  const resource = k['resource'] as string;
  return {
    verb: k['verb'] as string,
    resource,
    namespace: (k['namespace'] as string | undefined) ?? '',
    name: (k['name'] as string | undefined) ?? '',
    params: (k['params'] as Record<string, string> | undefined) ?? {},
    subresource: (k['subresource'] as string | undefined) ?? (resource.includes('/') ? resource.slice(resource.indexOf('/') + 1) : ''),
    api_group: (k['api_group'] as string | undefined) ?? '',
    api_version: (k['api_version'] as string | undefined) ?? 'v1',
    command: (k['command'] as string[] | undefined) ?? [],
  };
}

function sameSet(a: string[], b: string[]): boolean {
  const x = new Set(a.map((s) => s.toLowerCase()));
  const y = new Set(b.map((s) => s.toLowerCase()));
  return x.size === y.size && [...x].every((s) => y.has(s));
}

function fmtList(l: string[]): string {
  return `[${l.map((s) => JSON.stringify(s)).join(', ')}]`;
}

/** Where the parser disagrees with what the fixture states (empty when it agrees). */
function sqlMismatches(want: FixtureSql, got: SqlFacts): string[] {
  const out: string[] = [];
  if (want.verb !== undefined && want.verb.toLowerCase() !== (got.inspected ? got.verb : '')) {
    out.push(`sql.verb: the fixture says "${want.verb}", the parser says "${got.inspected ? got.verb : '(not inspected)'}"`);
  }
  for (const key of ['verbs', 'tables', 'functions'] as const) {
    const w = want[key];
    if (w !== undefined && !sameSet(w, got.inspected ? got[key] : [])) {
      out.push(`sql.${key}: the fixture says ${fmtList(w)}, the parser says ${got.inspected ? fmtList(got[key]) : '(not inspected)'}`);
    }
  }
  return out;
}

export type PreparedFixture = { ok: true; actions: Action[] } | { ok: false; error: string };

/**
 * Build the Action(s) a fixture stands for: facts from the fixture (SQL
 * through the real parser, raw bytes through the engine's parser),
 * placeholders from auth headers or the startup user like live traffic.
 */
export async function actionsFromFixture(f: Fixture, policy: CompiledPolicy): Promise<PreparedFixture> {
  const a = f.action;
  const base: Action = { family: 'http', host: a.host, facts: {} };
  if (a.port !== undefined) base.port = a.port;
  if (a.endpoint !== undefined) base.endpoint = a.endpoint;
  if (a.profile !== undefined) base.profile = a.profile;
  if (a.credential !== undefined) base.credential = a.credential;
  if (a.user !== undefined) base.user = a.user;
  if (a.database !== undefined) base.database = a.database;
  if (a.placeholders !== undefined) base.placeholders = a.placeholders;
  const content: Facts['content'] = a.content
    ? { findings: a.content.findings, score: a.content.score ?? 0, verdict: a.content.verdict ?? 'allow' }
    : undefined;

  if (a.raw !== undefined) {
    const endpoint = a.endpoint !== undefined ? policy.model.endpoints.get(a.endpoint) ?? null : policy.findEndpoint(a.host, a.port, a.profile);
    if (!endpoint) return { ok: false, error: `raw fixture: no endpoint for ${a.endpoint ?? `host "${a.host}"`}, so no protocol parser to replay it` };
    const kind: RawKind | undefined = endpoint.type === 'https' || endpoint.type === 'kubernetes' ? 'http' : endpoint.type === 'postgres' ? 'postgres' : undefined;
    if (!kind) return { ok: false, error: `raw fixture: ${endpoint.type} endpoints have no raw fixture parser yet` };
    const parse = await ensureRawParser(kind);
    if (!parse) return { ok: false, error: `raw fixture: no ${kind} raw parser is registered (the ${kind} engine is not part of this build)` };
    let parsed: Action | Action[];
    try {
      const ctx: RawParseContext = { endpoint, host: a.host, policy };
      if (a.port !== undefined) ctx.port = a.port;
      if (a.profile !== undefined) ctx.profile = a.profile;
      parsed = parse(Buffer.from(a.raw, 'base64'), ctx);
    } catch (err) {
      return { ok: false, error: `raw fixture: the ${kind} parser rejected the bytes: ${err instanceof Error ? err.message : String(err)}` };
    }
    const list = Array.isArray(parsed) ? parsed : [parsed];
    if (list.length === 0) return { ok: false, error: 'raw fixture: the parser found no complete message in the bytes' };
    const actions = list.map((x) => {
      const merged: Action = { ...base, ...x, facts: { ...x.facts } };
      if (content && !merged.facts.content) merged.facts.content = content;
      livePlaceholders(merged, policy);
      return merged;
    });
    return { ok: true, actions };
  }

  if (a.sql !== undefined) {
    const sql = await loadSqlModule();
    const database = a.sql.database ?? a.database ?? '';
    const user = a.sql.user ?? a.user ?? '';
    const analysis = sql.analyzeSql(a.sql.statement);
    const facts = sql.toSqlFacts(analysis, { statement: a.sql.statement, database, user });
    const mismatches = sqlMismatches(a.sql, facts);
    if (mismatches.length > 0) return { ok: false, error: `the fixture's SQL facts disagree with the parser:\n${mismatches.map((m) => `  ${m}`).join('\n')}` };
    const action: Action = { ...base, family: 'sql', facts: { sql: facts } };
    if (action.database === undefined && database) action.database = database;
    if (action.user === undefined && user) action.user = user;
    if (content) action.facts.content = content;
    livePlaceholders(action, policy);
    return { ok: true, actions: [action] };
  }

  // With a body, the engines derive body_json from it; a fixture stating another one tests a request that cannot happen.
  const h = a.http;
  if (h && typeof h['body'] === 'string' && h['body_json'] !== undefined && !isDeepStrictEqual(h['body_json'], parsedBody(h['body']))) {
    return { ok: false, error: 'the fixture\'s http.body_json disagrees with its http.body (body_json is the parsed body, {} when it is not JSON); give one of them' };
  }
  const facts: Facts = {};
  let family: Action['family'] = 'http';
  if (a.http !== undefined) facts.http = httpFactsOf(a.http, a.host);
  if (a.k8s !== undefined) {
    facts.k8s = k8sFactsOf(a.k8s);
    family = 'k8s';
  }
  if (content) facts.content = content;
  const action: Action = { ...base, family, facts };
  livePlaceholders(action, policy);
  return { ok: true, actions: [action] };
}

/**
 * Placeholders the live engines would have read, when the fixture gives
 * none: the auth-bearing headers (HTTPS), the startup user (SQL).
 */
function livePlaceholders(action: Action, policy: CompiledPolicy): void {
  if (action.placeholders !== undefined) return;
  if (action.family === 'sql') {
    if (action.user !== undefined) action.placeholders = [action.user];
    return;
  }
  const headers = action.facts.http?.headers;
  if (!headers) return;
  const found = placeholdersFromHeaders(headers, placeholderHeaders(policy.model));
  if (found.length > 0) action.placeholders = found;
}

/** The first Action of a fixture (convenience for engine tests); throws when the fixture cannot be replayed. */
export async function actionFromFixture(f: Fixture, policy: CompiledPolicy): Promise<Action> {
  const prepared = await actionsFromFixture(f, policy);
  if (!prepared.ok) throw new Error(`${f.file}: ${prepared.error}`);
  return prepared.actions[0]!;
}

// ───────────────────────────── comparing ────────────────────────────────────

/**
 * Several actions (a raw fixture with several messages) decide as one: the
 * first action that is not allowed decides (it stops the rest, as live), else
 * the last one.
 */
export function combineDecisions(ds: Decision[]): Decision {
  return ds.find((d) => d.verdict !== 'allow') ?? ds[ds.length - 1]!;
}

function credentialMatches(want: string | null, got: string | null): boolean {
  if (want === null || got === null) return want === got;
  return want === got || got.endsWith(`.${want}`);
}

/** The keys of `match` that differ from the decision (empty = the fixture passes). */
export function compareDecision(want: FixtureMatch, got: Decision): string[] {
  const out: string[] = [];
  if (want.verdict !== got.verdict) out.push('verdict');
  if (want.rule !== undefined && want.rule !== got.rule) out.push('rule');
  if (want.endpoint !== undefined && want.endpoint !== got.endpoint) out.push('endpoint');
  if (want.credential !== undefined && !credentialMatches(want.credential, got.credential)) out.push('credential');
  if (want.approve !== undefined && JSON.stringify(want.approve) !== JSON.stringify(got.approve)) out.push('approve');
  if (want.failClosed !== undefined && want.failClosed !== got.failClosed) out.push('failClosed');
  if (want.passthrough !== undefined && want.passthrough !== got.passthrough) out.push('passthrough');
  if (want.effective !== undefined && want.effective !== got.effective) out.push('effective');
  if (want.reason !== undefined && !got.reason.includes(want.reason)) out.push('reason');
  return out;
}

export interface FixtureResult {
  file: string;
  description?: string;
  ok: boolean;
  /** Set when the fixture itself is malformed or cannot be replayed. */
  error?: string;
  want?: FixtureMatch;
  got?: Decision;
  /** Keys of `want` that differ. */
  mismatched?: string[];
}

/** Replay one fixture through `policy.decide`, exactly as live traffic. */
export async function runFixture(policy: CompiledPolicy, f: Fixture | FixtureError): Promise<FixtureResult> {
  if (isFixtureError(f)) return { file: f.file, ok: false, error: f.error };
  const prepared = await actionsFromFixture(f, policy);
  const base: FixtureResult = { file: f.file, ok: false, want: f.match };
  if (f.description !== undefined) base.description = f.description;
  if (!prepared.ok) return { ...base, error: prepared.error };
  const got = combineDecisions(prepared.actions.map((a) => policy.decide(a)));
  const mismatched = compareDecision(f.match, got);
  return { ...base, ok: mismatched.length === 0, got, mismatched };
}
