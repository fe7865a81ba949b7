/**
 * The single currency of clawpatrol: protocol engines turn bytes into an
 * `Action`; the policy core turns an `Action` into a `Decision`. Nothing in
 * this file knows about sockets or wire formats, and nothing downstream of a
 * protocol engine knows about bytes. Fixtures (`clawpatrol test`) are
 * serialised Actions, so CI replays exactly the live decision path.
 *
 * Keep this file the contract between modules: protocol engines, approvals,
 * audit and the gateway all import from here.
 */

/** The CEL variable family a rule's endpoints belong to. */
export type Family = 'http' | 'sql' | 'k8s';

export type Verdict = 'allow' | 'deny' | 'approve';

// ───────────────────────────── facts ──────────────────────────────────────

/** `http.*` — what the upstream will see, after the gateway's normalisation. */
export interface HttpFacts {
  /** As sent; rules compare case-insensitively. */
  method: string;
  /** Percent-decoded, dot segments removed, duplicate slashes merged. */
  path: string;
  /** The request-target path exactly as the client sent it (ours). */
  raw_path: string;
  /** Lower-case, no trailing dot, no port. */
  host: string;
  query: Record<string, string[]>;
  /**
   * Lower-case keys. Values of repeated fields are combined with ", "
   * (RFC 9110 §5.3), so `http.headers['content-type'].startsWith(…)` works.
   */
  headers: Record<string, string>;
  /** UTF-8 text of the body (any method), up to `limits.body_buffer`. */
  body: string;
  /** Parsed JSON body; `{}` when the body is not JSON. */
  body_json: unknown;
  /**
   * True when the body exceeded `limits.body_buffer` (or its decoded form
   * exceeded the expansion cap). `body` and `body_json` are then *unknown*:
   * a rule that reads them fails closed.
   */
  body_truncated?: boolean;
}

/** `sql.*` — Postgres and ClickHouse. */
export interface SqlFacts {
  /** The most dangerous verb of the whole message (lower-case). */
  verb: string;
  /** Every statement kind found, including hidden ones (lower-case, deduplicated). */
  verbs: string[];
  /** Schema-qualified and bare names (`public.users` and `users`). */
  tables: string[];
  /** Lower-case, qualified and bare. */
  functions: string[];
  /** The raw statement text as the client sent it. */
  statement: string;
  database: string;
  user: string;
  /**
   * False when the statement could not be inspected (does not parse, or is
   * over the inspection limit). verb/verbs/tables/functions are then
   * *unknown*: rules reading them fail closed, and the SQL backstop denies
   * when no rule matched.
   */
  inspected: boolean;
  /** Why `inspected` is false (parse error text, "over limit", …). */
  inspect_error?: string;
  /** Extra facts of ours, e.g. `copy_program` for COPY … PROGRAM. */
  copy_program?: boolean;
  /**
   * (ours) True when the statement exceeded `limits.body_buffer` and was not
   * read. `statement` (and every fact derived from the text) is then
   * *unknown*, exactly like `http.body` under `http.body_truncated`: a rule
   * that reads it fails closed.
   */
  statement_truncated?: boolean;
}

/** `k8s.*` — Kubernetes API requests (rules on k8s endpoints also see `http.*`). */
export interface K8sFacts {
  verb: string;
  /** `pods`, or `pods/exec` when there is a subresource. */
  resource: string;
  namespace: string;
  name: string;
  /** First value of each query parameter. */
  params: Record<string, string>;
  subresource: string;
  api_group: string;
  api_version: string;
  /** Every `command=` argument of an exec, in order. */
  command: string[];
}

/** `content.*` — detector output over the action's body (ours). */
export interface ContentFacts {
  findings: string[];
  score: number;
  verdict: 'allow' | 'review' | 'block';
}

export interface Facts {
  http?: HttpFacts;
  sql?: SqlFacts;
  k8s?: K8sFacts;
  content?: ContentFacts;
}

// ───────────────────────────── action ─────────────────────────────────────

/** Who sent the action: a tunnel peer, or a local listener. */
export interface Peer {
  /** Stable device id (enrolled WireGuard peer) or `local:<listener>`. */
  id: string;
  /** Human label for logs/dashboard. */
  name?: string;
  /** Tunnel or socket address the action came from. */
  address?: string;
}

export interface Action {
  family: Family;
  /**
   * What the agent dialed: SNI / Host / the endpoint a VIP or `listen`
   * stands for. May carry `:port`. Used for endpoint lookup unless
   * `endpoint` is already known.
   */
  host: string;
  /** Destination port when known (host matching of `host:port` patterns). */
  port?: number;
  /** Endpoint id (`postgres.pg`) when the transport already knows it (VIP, `listen`). */
  endpoint?: string;
  /** The device's profile; absent → every endpoint and credential is in scope (fixtures). */
  profile?: string;
  peer?: Peer;
  /**
   * Placeholders the agent presented (auth-bearing headers, Postgres startup
   * user, ClickHouse Hello). Used to pick between credentials.
   */
  placeholders?: string[];
  /** Startup `user` (SQL) — credential disambiguation by `postgres_credential.user`. */
  user?: string;
  /** Startup `database` (SQL). */
  database?: string;
  /**
   * Force a credential by name (fixtures' `action.credential`; the Postgres
   * engine pins every statement of a session to the credential it logged in with).
   */
  credential?: string;
  /**
   * (ours) What part of a connection this action is, when it is not an
   * ordinary request or statement:
   *   - `session_start`: a login (Postgres StartupMessage). `decide` resolves
   *     profile, endpoint and credential only and evaluates no rules; the
   *     statements of the session are decided one by one.
   *   - `startup_options`: settings asked for at login (Postgres `options`),
   *     decided like statements, but only a rule that matches and allows them
   *     lets them through (no rule matching → deny).
   */
  phase?: 'session_start' | 'startup_options';
  /**
   * (ours) True when the action runs on a connection that already logged in
   * upstream with the pinned `credential` (a statement of a Postgres
   * session): nothing is injected, so the enforcer does not read the secret
   * again and `material` is null. The decision itself is unchanged.
   */
  upstreamAuthenticated?: boolean;
  facts: Facts;
}

// ───────────────────────────── decision ───────────────────────────────────

export interface Decision {
  /** What the policy says. In observe mode this is what *would* happen. */
  verdict: Verdict;
  /**
   * What the engine must do now. Equals `verdict` in enforce mode; always
   * `allow` in observe mode (the would-be verdict is still recorded).
   */
  effective: Verdict;
  mode: 'enforce' | 'observe';
  /** Matching rule name, or '' when no rule matched. */
  rule: string;
  /** Endpoint id (`https.github`), or null for unknown hosts. */
  endpoint: string | null;
  /** Resolved credential id (`bearer_token.github`), or null. */
  credential: string | null;
  /** Human-readable; told to the agent on deny. */
  reason: string;
  /** Approver ids (`llm_approver.judge`, `builtin.dashboard`) when verdict is `approve`. */
  approve: string[];
  /** True when the verdict comes from a failure to evaluate (fail closed). */
  failClosed: boolean;
  /** True when the host matched no endpoint of the profile and was passed through uninspected. */
  passthrough: boolean;
}

// ───────────────────────────── policy model ───────────────────────────────

/** A position in a policy file, 1-based line and column. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

export interface Diagnostic {
  severity: 'error' | 'warning';
  pos: SourcePos;
  summary: string;
  hint: string;
  /** Extra lines (a CEL excerpt with a caret), printed after the main line. */
  detail?: string;
}

export type EndpointType = 'https' | 'postgres' | 'clickhouse_native' | 'clickhouse_http' | 'kubernetes';

export interface HostPattern {
  /** Lower-case host without trailing dot, or `*.suffix`. */
  host: string;
  port?: number;
  wildcard: boolean;
}

export interface Endpoint {
  /** `<type>.<name>`, e.g. `https.github`. */
  id: string;
  type: EndpointType;
  name: string;
  family: Family;
  hosts: HostPattern[];
  /** Local listen address (ours), e.g. `127.0.0.1:15432`. */
  listen?: string;
  /** PEM text trusted upstream besides the system roots. */
  caCert?: string;
  /** postgres: upstream TLS mode. */
  sslmode?: 'disable' | 'prefer' | 'require' | 'verify-full';
  /** postgres: database the upstream connection uses when the agent names none. */
  database?: string;
  /** clickhouse_native. */
  port?: number;
  tls?: boolean;
  acceptInvalidCertificate?: boolean;
  /** kubernetes `server` as written. */
  server?: string;
  description?: string;
  pos: SourcePos;
}

export type CredentialType =
  | 'bearer_token'
  | 'header_token'
  | 'basic_auth'
  | 'anthropic_manual_key'
  | 'slack_tokens'
  | 'postgres_credential'
  | 'clickhouse_credential'
  | 'mtls_credential'
  | 'passthrough';

export interface Credential {
  /** `<type>.<name>`. */
  id: string;
  type: CredentialType;
  name: string;
  /** Endpoint ids this credential authenticates against. */
  endpoints: string[];
  /** header_token. */
  header?: string;
  prefix?: string;
  /** basic_auth. */
  username?: string;
  /** postgres_credential / clickhouse_credential: the upstream user. */
  user?: string;
  /**
   * postgres_credential / clickhouse_credential: the database this credential
   * is for; with `user`, tells several SQL credentials of one endpoint apart.
   */
  database?: string;
  /** Vault slots this type has (`token`, `password`, `cert`/`key`/`ca`, …). */
  slots: string[];
  /**
   * (ours) Environment variable `clawpatrol run` exports the credential's
   * placeholder in (e.g. `GITHUB_TOKEN`), so agents keep their usual config.
   */
  env?: string;
  pos: SourcePos;
}

export interface LlmApprover {
  id: string;
  type: 'llm_approver';
  name: string;
  model: string;
  /** Credential id of the gateway's own API key (`anthropic_manual_key.x`). */
  credential: string;
  /** Operator prose the judge applies. */
  policy: string;
  /** Base URL of the Messages API (ours; default Anthropic's). */
  baseUrl?: string;
  /** Seconds (ours). */
  timeoutSec?: number;
  pos: SourcePos;
}

export interface HumanApprover {
  id: string;
  type: 'human_approver';
  name: string;
  channel?: string;
  /** `slack_tokens` credential id; absent → waits in the dashboard/CLI queue. */
  credential?: string;
  timeoutSec: number;
  interactive: boolean;
  /** Slack user ids allowed to decide; empty → anyone in the channel. */
  approvers: string[];
  requireApprovers: number;
  onTimeout: 'deny' | 'allow';
  pos: SourcePos;
}

export interface BuiltinApprover {
  id: 'builtin.dashboard';
  type: 'builtin';
  name: 'dashboard';
  timeoutSec: number;
  onTimeout: 'deny' | 'allow';
}

export type Approver = LlmApprover | HumanApprover | BuiltinApprover;

export interface ProfileEntry {
  /** Credential id. */
  credential: string;
  placeholder?: string;
  pos: SourcePos;
}

export interface Profile {
  name: string;
  entries: ProfileEntry[];
  /** Endpoint ids reachable through the entries' credentials (derived). */
  endpoints: string[];
  pos: SourcePos;
}

export interface Rule {
  name: string;
  /** Declaration order across all files (ties in priority). */
  index: number;
  endpoints: string[];
  family: Family;
  priority: number;
  /** CEL source; '' = match all. */
  condition: string;
  /** Rule only applies when this credential id was resolved. */
  credential?: string;
  verdict?: 'allow' | 'deny';
  /** Approver ids, in order. */
  approve?: string[];
  reason: string;
  disabled: boolean;
  pos: SourcePos;
  /** Position of the condition string (for CEL diagnostics). */
  conditionPos?: SourcePos;
}

export interface GatewayConfig {
  dashboardListen: string;
  publicUrl?: string;
  /** Absolute path, `~` expanded. */
  stateDir: string;
  limits: {
    bodyBuffer: number;
    /** (ours; `body_idle_timeout`) Seconds a request body may go without a byte while the gateway waits for one (default 60). */
    bodyIdleTimeoutSec?: number;
    /** (ours; `connections_per_device`) Concurrent tunnel connections one device may hold. */
    connectionsPerDevice?: number;
    /** (ours; `wildcard_names_per_device`) Names under wildcard endpoints one device may get virtual IPs for. */
    wildcardNamesPerDevice?: number;
  };
  wireguard?: { subnetCidr: string; listenPort: number; endpoint?: string };
  proxy?: { listen: string };
  localProfile: string;
  store?: { postgres?: string };
  /** Retention of audit records (ours; `actions_keep`), e.g. 30 days in seconds, or a count. */
  actionsKeep?: { maxAgeSec?: number; maxRecords?: number };
  /**
   * Audit records that may wait in memory while the store refuses writes
   * (ours; `audit_backlog`). At the bound every action is denied, fail-closed.
   */
  auditBacklog?: number;
  /**
   * Bytes of an inspected HTTP body the audit record keeps (ours;
   * `audit_body_limit`); unset: all of it. A record whose body was cut says
   * how long it was (`http.body_total_bytes`).
   */
  auditBodyLimit?: number;
}

export interface Defaults {
  unknownHost: 'passthrough' | 'deny';
  llmFailMode: 'closed' | 'open';
  llmCacheTtlSec: number;
  humanTimeoutSec: number;
  humanOnTimeout: 'deny' | 'allow';
  mode: 'enforce' | 'observe';
}

/** A loaded, reference-resolved policy (before CEL compilation). */
export interface PolicyModel {
  /** Files that made up the document, in load order. */
  files: string[];
  schemaVersion: number;
  gateway: GatewayConfig;
  /** True when the document has a `gateway {}` block (restart detection). */
  hasGatewayBlock: boolean;
  defaults: Defaults;
  endpoints: Map<string, Endpoint>;
  credentials: Map<string, Credential>;
  approvers: Map<string, Approver>;
  profiles: Map<string, Profile>;
  rules: Rule[];
  warnings: Diagnostic[];
}
