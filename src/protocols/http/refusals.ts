/**
 * Requests the engine refuses before the policy can see them — malformed or
 * ambiguous framing (400), a Host that names another host than the connection
 * (421), a head that never completes (408), CONNECT where it is not offered,
 * a bad CONNECT target, a TLS server name that contradicts the CONNECT — are
 * attempts too. Each becomes one audit record in the same log as decided
 * actions (verdict and outcome `deny`, no rule, `failClosed`, the reason and
 * the status), besides the operational log line.
 *
 * The record's facts say only what the agent sent on the request line
 * (`http.method`, `http.target`, both cut to a bounded length) — the rest of
 * a malformed request cannot be trusted — scrubbed of vault secrets like
 * everything else that is written down.
 */
import type { Peer } from '../../policy/types.js';
import { currentScrubber } from './scrubbing.js';
import type { EngineCore } from './types.js';

export interface Refusal {
  peer: Peer;
  profile: string | undefined;
  /** The endpoint the connection was bound to, if any. */
  endpoint: string | null;
  /** The host the request was for, as far as it is known (TLS server name, Host, CONNECT target); '' if unknown. */
  host: string;
  method?: string | undefined;
  target?: string | undefined;
  /** The HTTP status answered, or `refused` when the connection was dropped without one. */
  status: string;
  reason: string;
  bytesIn: number;
  bytesOut: number;
}

/** Longest request target and host kept in a record (a refused request may carry anything). */
const MAX_TARGET = 512;
const MAX_HOST = 255;

export function recordRefusal(core: EngineCore, r: Refusal): void {
  core.log(`http: refused ${r.method ?? 'request'}${r.target !== undefined ? ` ${JSON.stringify(r.target.slice(0, 200))}` : ''} from ${r.peer.id}${r.host ? ` for ${r.host}` : ''}: ${r.reason}`);
  if (!core.audit) return;
  const scrubber = currentScrubber(core);
  const http: Record<string, string> = {};
  if (r.method !== undefined) http['method'] = r.method.slice(0, 32);
  if (r.target !== undefined) http['target'] = r.target.slice(0, MAX_TARGET);
  core.audit.append({
    time: new Date().toISOString(),
    peer: r.peer.id,
    profile: r.profile ?? null,
    endpoint: r.endpoint,
    family: 'http',
    host: scrubber.scrubText(r.host.slice(0, MAX_HOST).toLowerCase()),
    facts: scrubber.scrubDeep({ http }),
    rule: '',
    verdict: 'deny',
    outcome: 'deny',
    reason: scrubber.scrubText(r.reason),
    mode: 'enforce',
    failClosed: true,
    credential: null,
    approvals: [],
    latencyMs: 0,
    bytesIn: r.bytesIn,
    bytesOut: r.bytesOut,
    status: r.status,
  });
}
