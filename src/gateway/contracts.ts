/**
 * Interfaces between the gateway's services. Protocol engines depend only on
 * `Enforcer` (one Action → Decision path for every protocol); the services
 * behind it (policy, approvals, vault, audit) implement the other
 * interfaces. Keeping them here lets each module be built and tested alone.
 */
import type { Action, Decision, Credential, Peer } from '../policy/types.js';

// ───────────────────────────── vault ──────────────────────────────────────

/** Real secret material for one credential, read from the vault at use time. */
export interface CredentialMaterial {
  credential: Credential;
  /** Slot → secret value (e.g. `token`, `password`, `cert`, `key`, `ca`). */
  slots: Record<string, string>;
}

export interface SecretResolver {
  /**
   * Material for a credential, or an error message when a required slot is
   * missing ("credential bearer_token.github has no secret").
   */
  resolve(credentialId: string): CredentialMaterial | { missing: string };
  /** Every secret value the gateway may inject (for scrubbing). */
  allValues(): string[];
}

// ───────────────────────────── approvals ──────────────────────────────────

export interface ApprovalStage {
  /** Approver id (`llm_approver.judge`, `human_approver.ops`, `builtin.dashboard`). */
  approver: string;
  verdict: 'allow' | 'deny';
  reason: string;
  /**
   * `llm:<model>`, `slack:<user id>`, `cli:<user>`, `dashboard:<user>`, `timeout`, `error`, or
   * `withdrawn` (the agent stopped waiting). A quorum lists every approver: `slack:U1,slack:U2`.
   */
  decidedBy: string;
  /** True when the verdict came from a fail mode (timeout, error) rather than a decision. */
  failMode?: boolean;
  durationMs: number;
}

export interface ApprovalOutcome {
  verdict: 'allow' | 'deny';
  reason: string;
  stages: ApprovalStage[];
}

export interface ApprovalRunner {
  /** Run the decision's approver chain for this action. Never rejects: errors follow fail modes. */
  run(action: Action, decision: Decision, signal?: AbortSignal): Promise<ApprovalOutcome>;
}

// ───────────────────────────── audit ──────────────────────────────────────

export interface AuditRecordInput {
  time: string; // ISO-8601
  peer: string | null;
  profile: string | null;
  endpoint: string | null;
  family: string;
  host: string;
  /** Facts with sensitive header values redacted and vault secrets scrubbed. */
  facts: unknown;
  rule: string;
  verdict: 'allow' | 'deny' | 'approve';
  /** What actually happened: allowed or denied after approvals / observe mode. */
  outcome: 'allow' | 'deny';
  reason: string;
  mode: 'enforce' | 'observe';
  failClosed: boolean;
  credential: string | null;
  approvals: ApprovalStage[];
  latencyMs: number;
  bytesIn: number;
  bytesOut: number;
  /** Protocol result (HTTP status, SQLSTATE, …). */
  status?: string;
}

export interface AuditSink {
  /** Non-blocking: queues the record; durable after `flush()`/`close()`. */
  append(record: AuditRecordInput): void;
  flush(): Promise<void>;
  close(): Promise<void>;
  /**
   * Why the sink cannot take more records now (its backlog is full: the
   * store has not taken records for a while), or null. The enforcer then
   * denies every action: what cannot be accounted for does not happen.
   */
  unavailable?(): string | null;
}

// ───────────────────────────── enforcer ───────────────────────────────────

export interface Enforcement {
  /** True when the engine must forward the action (after approvals / observe mode). */
  allowed: boolean;
  decision: Decision;
  /** Final reason — told to the agent when denied. */
  reason: string;
  approvals: ApprovalStage[];
  /** Secret material to inject when allowed and a credential was resolved. */
  material: CredentialMaterial | null;
  /** Complete the audit record once the action has run (bytes, status). */
  finish(result?: { bytesIn?: number; bytesOut?: number; status?: string }): void;
}

export interface Enforcer {
  enforce(action: Action, signal?: AbortSignal): Promise<Enforcement>;
  /**
   * The same path as `enforce`, answered at once when the decision needs no
   * approval (allow or deny), so an engine's hot path does not wait a
   * promise per action. Returns null when approvals must run: call
   * `enforce` instead. Optional: engines fall back to `enforce`.
   */
  enforceNow?(action: Action): Enforcement | null;
}

// ───────────────────────────── control API ────────────────────────────────

/**
 * A handler mounted on the gateway's control server (`gateway.dashboard_listen`):
 * approvals queue, enrolment, Slack interactivity, dashboard data. Returns true
 * when it handled the request. `admin` is true when the request carried the
 * gateway's admin token (`<state_dir>/admin.token`, sent as
 * `Authorization: Bearer …` by the CLI); unauthenticated routes (Slack's
 * signed callbacks, enrolment) must check their own credentials.
 */
export type ControlRoute = (
  req: import('node:http').IncomingMessage,
  res: import('node:http').ServerResponse,
  ctx: {
    url: URL;
    admin: boolean;
    body: () => Promise<Buffer>;
    /** True when the request came over TLS (the control server's own, from the gateway CA); routes carrying secrets refuse plain HTTP. */
    secure?: boolean;
  },
) => Promise<boolean> | boolean;

// ───────────────────────────── transports ─────────────────────────────────

/**
 * What a transport (the WireGuard/TPROXY dispatcher, an endpoint's `listen`
 * listener, the explicit proxy) knows about a connection it hands to a
 * protocol engine.
 */
export interface TransportContext {
  peer: Peer;
  profile?: string | undefined;
  /** The endpoint the agent dialed, when a virtual IP or `listen` says so. */
  endpointId?: string | undefined;
  /** The declared host behind a virtual IP. */
  dialedHost?: string | undefined;
  /** Original destination address (TPROXY / virtual IP). */
  dialedIp?: string | undefined;
  dialedPort?: number | undefined;
  /** SNI the transport already peeked (informational; the HTTPS engine reads its own). */
  sni?: string | undefined;
  /** Bytes the transport already read from the socket. */
  initial?: Buffer | undefined;
}
