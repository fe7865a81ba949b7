/**
 * The one Action → Decision path every protocol engine goes through:
 *
 *   policy.decide(action)            (pure: rules, CEL, fail-closed)
 *   → approvals.run(...)             (only when the verdict is `approve`)
 *   → secrets.resolve(credential)    (only when allowed and something is injected; a missing secret denies)
 *   → audit.append(...)              (when the engine calls `finish`)
 *
 * An audit sink that cannot take records (`unavailable()`) denies every action, fail-closed.
 *
 * Engines never call the policy, approvals or vault directly; they build an
 * Action, await `enforce` (or take `enforceNow`'s answer when no approval is
 * needed), apply `allowed` natively, and call `finish` once the action has
 * run so the audit record carries bytes, status and latency.
 */
import type { Action, Decision } from '../policy/types.js';
import type {
  ApprovalOutcome,
  ApprovalRunner,
  ApprovalStage,
  AuditSink,
  CredentialMaterial,
  Enforcement,
  Enforcer,
  SecretResolver,
} from './contracts.js';

/** What the enforcer needs from the policy core: a snapshot with `decide`. */
export interface DecidingPolicy {
  decide(action: Action): Decision;
}

export interface EnforcerDeps {
  /** Returns the policy in force *now*; called once per action so a reload never mixes policies. */
  policy: () => DecidingPolicy;
  secrets: SecretResolver;
  approvals: ApprovalRunner;
  audit: AuditSink;
  /** Strip sensitive header values and vault secrets from facts before they are recorded. */
  redactFacts: (action: Action) => unknown;
  now?: () => number;
}

export function createEnforcer(deps: EnforcerDeps): Enforcer {
  const now = deps.now ?? (() => performance.now());
  /** Why every action is refused now (the audit log cannot take records), if it is. */
  const auditRefusal = (): string | undefined => deps.audit.unavailable?.() ?? undefined;

  /**
   * Everything after the decision (and its approvals): the secret, then the
   * Enforcement. `refused` denies whatever was decided, fail-closed, with
   * that reason (the audit log cannot take the record).
   */
  function conclude(action: Action, decision: Decision, started: number, approved?: ApprovalOutcome, refused?: string): Enforcement {
    let allowed = refused === undefined && (approved ? approved.verdict === 'allow' : decision.effective === 'allow');
    let reason = refused ?? (approved ? approved.reason : decision.reason);
    const stages: ApprovalStage[] = approved ? approved.stages : [];
    let failClosed = refused !== undefined || decision.failClosed;

    let material: CredentialMaterial | null = null;
    // A connection that already logged in with the credential injects nothing: no vault read (it opens the secret).
    if (allowed && decision.credential && action.upstreamAuthenticated !== true) {
      const resolved = deps.secrets.resolve(decision.credential);
      if ('missing' in resolved) {
        // Never send an unauthenticated request upstream in the agent's name.
        allowed = false;
        reason = resolved.missing;
        failClosed = true;
      } else {
        material = resolved;
      }
    }

    let finished = false;
    return {
      allowed,
      decision,
      reason,
      approvals: stages,
      material,
      finish(result = {}) {
        if (finished) return;
        finished = true;
        // Keys in canonical (sorted) order: the audit log then writes the record as it is (record-json.ts).
        deps.audit.append({
          approvals: stages,
          bytesIn: result.bytesIn ?? 0,
          bytesOut: result.bytesOut ?? 0,
          credential: decision.credential,
          endpoint: decision.endpoint,
          facts: deps.redactFacts(action),
          failClosed,
          family: action.family,
          host: action.host,
          latencyMs: Math.round((now() - started) * 1000) / 1000,
          mode: decision.mode,
          outcome: allowed ? 'allow' : 'deny',
          peer: action.peer?.id ?? null,
          profile: action.profile ?? null,
          reason,
          rule: decision.rule,
          ...(result.status !== undefined ? { status: result.status } : {}),
          time: isoNow(),
          verdict: decision.verdict,
        });
      },
    };
  }

  return {
    async enforce(action: Action, signal?: AbortSignal): Promise<Enforcement> {
      const started = now();
      const decision = safeDecide(deps.policy(), action);
      const refused = auditRefusal();
      // Nobody is asked to approve what could not be recorded.
      if (decision.effective !== 'approve' || refused !== undefined) return conclude(action, decision, started, undefined, refused);
      const outcome = await deps.approvals.run(action, decision, signal);
      return conclude(action, decision, started, outcome, auditRefusal());
    },
    enforceNow(action: Action): Enforcement | null {
      const started = now();
      const decision = safeDecide(deps.policy(), action);
      const refused = auditRefusal();
      return decision.effective === 'approve' && refused === undefined ? null : conclude(action, decision, started, undefined, refused);
    },
  };
}

let lastMs = -1;
let lastIso = '';
/** The ISO-8601 time of now, formatted once per millisecond (every action's audit record asks). */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** `decide` is meant to be total; if it ever throws, that is a deny, not a crash. */
function safeDecide(policy: DecidingPolicy, action: Action): Decision {
  try {
    return policy.decide(action);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return {
      verdict: 'deny',
      effective: 'deny',
      mode: 'enforce',
      rule: '',
      endpoint: action.endpoint ?? null,
      credential: null,
      reason: `policy evaluation failed: ${message}`,
      approve: [],
      failClosed: true,
      passthrough: false,
    };
  }
}
