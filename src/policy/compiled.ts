/**
 * A loaded document → an immutable CompiledPolicy with `decide(action)`.
 *
 * decide is pure, synchronous and total: it never throws and never does I/O.
 * Order of work: profile → endpoint (given, or by host) → credential
 * (forced / placeholder / SQL user / the single one) → a session start stops
 * here (allow: login needs nothing else) → rules of that endpoint by priority
 * then declaration order → first match wins → no match: allow, except what
 * the SQL backstop refuses (uninspectable statement, FunctionCall, startup
 * options) → observe mode relaxes the effective verdict to allow.
 */
import type { Action, Credential, Decision, Endpoint, PolicyModel, Rule, Verdict } from './types.js';
import type { CompiledCondition } from './cel.js';
import type { LoadedDocument } from './load.js';
import { activation } from './activation.js';
import { HostIndex } from './hosts.js';
import { GENERATED_PLACEHOLDER_PREFIX } from './schema.js';

export interface CompiledPolicy {
  readonly model: PolicyModel;
  /** Pure, synchronous, total (never throws). */
  decide(action: Action): Decision;
  /** Endpoint a transport should hand a connection to; profile undefined = all endpoints. */
  findEndpoint(host: string, port: number | undefined, profile?: string): Endpoint | null;
  /**
   * True when some enabled rule on this endpoint reads this fact (e.g.
   * 'sql.statement', 'http.body', 'http.body_json') — engines stream
   * oversized messages when false.
   */
  needsFact(endpointId: string, fact: string): boolean;
}

interface CompiledRule {
  rule: Rule;
  condition?: CompiledCondition;
}

interface Candidate {
  credential: Credential;
  /** Placeholders that select this credential: the profile entry's, and the generated `cp_ph_<name>`. */
  placeholders: string[];
  /** True when a profile entry gives this credential an explicit placeholder. */
  explicit: boolean;
}

/** The placeholder `clawpatrol run` exports for a profile entry without one. */
export function generatedPlaceholder(credential: Pick<Credential, 'name'>): string {
  return `${GENERATED_PLACEHOLDER_PREFIX}${credential.name}`;
}

/** Facts that need the statement / body text; `*` = the whole variable was read. */
const DERIVED_FROM: Record<string, string[]> = {
  'sql.statement': ['sql.statement', 'sql.verb', 'sql.verbs', 'sql.tables', 'sql.functions', 'sql.copy_program', 'sql.*'],
  'http.body': ['http.body', 'http.body_json', 'http.*', 'content.findings', 'content.score', 'content.verdict', 'content.*'],
  'http.body_json': ['http.body_json', 'http.*'],
};

/**
 * The SQL backstop: what "no rule matched" may not allow on a sql endpoint.
 * Returns why it denies, or null.
 *   - a statement that was not inspected (unparsable, over the limit) or no
 *     SQL facts at all (fail closed);
 *   - a wire FunctionCall (verb `function_call`): it runs a function by OID,
 *     with nothing to inspect (fail closed);
 *   - startup `options`: settings only a rule may let in at login.
 */
function sqlBackstop(action: Action): { reason: string; failClosed: boolean } | null {
  const sql = action.facts?.sql;
  if (!sql || sql.inspected !== true) {
    const why = sql?.inspect_error ? ` (${sql.inspect_error})` : '';
    return { reason: `the SQL statement could not be inspected${why} and no rule allowed it; denied (fail closed)`, failClosed: true };
  }
  if (Array.isArray(sql.verbs) && sql.verbs.includes('function_call')) {
    return {
      reason: 'a FunctionCall (verb function_call) runs a function the gateway cannot inspect; it is denied unless a rule allows it',
      failClosed: true,
    };
  }
  if (action.phase === 'startup_options') {
    return { reason: 'no rule allows startup options', failClosed: false };
  }
  return null;
}

export function compilePolicy(doc: LoadedDocument): CompiledPolicy {
  const model = doc.model;
  const mode = model.defaults.mode;

  // Rules per endpoint, by priority (desc) then declaration order; disabled ones dropped.
  const rulesByEndpoint = new Map<string, CompiledRule[]>();
  const readsByEndpoint = new Map<string, Set<string>>();
  for (const id of model.endpoints.keys()) {
    rulesByEndpoint.set(id, []);
    readsByEndpoint.set(id, new Set());
  }
  for (const rule of model.rules) {
    if (rule.disabled) continue;
    const condition = doc.conditions.get(rule.name);
    for (const id of rule.endpoints) {
      rulesByEndpoint.get(id)?.push(condition ? { rule, condition } : { rule });
      if (condition) for (const r of condition.reads) readsByEndpoint.get(id)?.add(r);
    }
  }
  for (const list of rulesByEndpoint.values()) list.sort((a, b) => b.rule.priority - a.rule.priority || a.rule.index - b.rule.index);

  // Host lookup: one index over every endpoint (declaration order), one per profile.
  const globalHosts = new HostIndex<string>();
  for (const ep of model.endpoints.values()) for (const h of ep.hosts) globalHosts.add(h, ep.id);
  const profileHosts = new Map<string, HostIndex<string>>();
  const profileReach = new Map<string, Set<string>>();
  for (const p of model.profiles.values()) {
    const idx = new HostIndex<string>();
    for (const ep of model.endpoints.values()) {
      if (!p.endpoints.includes(ep.id)) continue;
      for (const h of ep.hosts) idx.add(h, ep.id);
    }
    profileHosts.set(p.name, idx);
    profileReach.set(p.name, new Set(p.endpoints));
  }

  // Credential candidates per (profile, endpoint); key '' = no profile (every credential bound to it).
  const candidates = new Map<string, Map<string, Candidate[]>>();
  const allCandidates = new Map<string, Candidate[]>();
  for (const ep of model.endpoints.keys()) allCandidates.set(ep, []);
  for (const cred of model.credentials.values()) {
    const explicit = [...model.profiles.values()].flatMap((p) =>
      p.entries.filter((e) => e.credential === cred.id && e.placeholder !== undefined).map((e) => e.placeholder!),
    );
    for (const ep of cred.endpoints) {
      allCandidates.get(ep)?.push({ credential: cred, placeholders: [...new Set(explicit), generatedPlaceholder(cred)], explicit: false });
    }
  }
  candidates.set('', allCandidates);
  for (const p of model.profiles.values()) {
    const m = new Map<string, Candidate[]>();
    for (const entry of p.entries) {
      const cred = model.credentials.get(entry.credential);
      if (!cred) continue;
      const placeholders = entry.placeholder === undefined ? [generatedPlaceholder(cred)] : [entry.placeholder, generatedPlaceholder(cred)];
      for (const ep of cred.endpoints) {
        let list = m.get(ep);
        if (!list) m.set(ep, (list = []));
        list.push({ credential: cred, placeholders, explicit: entry.placeholder !== undefined });
      }
    }
    candidates.set(p.name, m);
  }

  /** Fixed-shape decisions (decide is on every action's path). */
  function make(
    verdict: Verdict,
    rule: string,
    endpoint: string | null,
    credential: string | null,
    reason: string,
    approve: string[] = [],
    failClosed = false,
    passthrough = false,
  ): Decision {
    return {
      verdict,
      effective: mode === 'observe' ? 'allow' : verdict,
      mode,
      rule,
      endpoint,
      credential,
      reason,
      approve,
      failClosed,
      passthrough,
    };
  }

  function failClosed(reason: string, endpoint: string | null, credential: string | null, rule = ''): Decision {
    return make('deny', rule, endpoint, credential, reason, [], true);
  }

  function findEndpoint(host: string, port: number | undefined, profile?: string): Endpoint | null {
    const idx = profile === undefined ? globalHosts : profileHosts.get(profile);
    if (!idx) return null;
    const id = idx.lookup(host, port);
    return id === null ? null : model.endpoints.get(id) ?? null;
  }

  type Resolution = { ok: true; credential: Credential | null } | { ok: false; reason: string };

  function resolveCredential(action: Action, ep: Endpoint): Resolution {
    const cands = candidates.get(action.profile ?? '')?.get(ep.id) ?? [];
    if (action.credential !== undefined && action.credential !== '') {
      const want = action.credential;
      const hit = cands.find((c) => c.credential.id === want || c.credential.name === want);
      if (!hit) return { ok: false, reason: `credential "${want}" is not available for ${ep.id}${action.profile ? ` in profile "${action.profile}"` : ''}` };
      return { ok: true, credential: hit.credential };
    }
    if (cands.length === 0) return { ok: true, credential: null };
    if (action.placeholders && action.placeholders.length > 0) {
      const picked = new Set<Candidate>();
      for (const p of action.placeholders) for (const c of cands) if (c.placeholders.includes(p)) picked.add(c);
      if (picked.size === 1) return { ok: true, credential: [...picked][0]!.credential };
      if (picked.size > 1) {
        return {
          ok: false,
          reason: `the placeholders presented select several credentials for ${ep.id} (${[...picked].map((c) => c.credential.id).join(', ')})`,
        };
      }
    }
    if (ep.family === 'sql' && action.user !== undefined) {
      const byUser = cands.filter(
        (c) => c.credential.user === action.user && (c.credential.database === undefined || c.credential.database === action.database),
      );
      if (byUser.length === 1) return { ok: true, credential: byUser[0]!.credential };
      if (byUser.length > 1) {
        const exactDb = byUser.filter((c) => c.credential.database !== undefined);
        if (exactDb.length === 1) return { ok: true, credential: exactDb[0]!.credential };
      }
    }
    const bare = cands.filter((c) => !c.explicit);
    if (action.profile !== undefined && bare.length === 1) return { ok: true, credential: bare[0]!.credential };
    if (cands.length === 1) return { ok: true, credential: cands[0]!.credential };
    return {
      ok: false,
      reason: `several credentials can authenticate ${ep.id} (${cands.map((c) => c.credential.id).join(', ')}) and nothing in the request picks one; present the placeholder of the one to use`,
    };
  }

  function ruleDecision(rule: Rule, endpoint: string, credential: string | null): Decision {
    if (rule.approve) {
      return make('approve', rule.name, endpoint, credential, rule.reason || `rule "${rule.name}" requires approval`, [...rule.approve]);
    }
    const verdict = rule.verdict ?? 'deny';
    const reason = rule.reason || (verdict === 'allow' ? `allowed by rule "${rule.name}"` : `denied by rule "${rule.name}"`);
    return make(verdict, rule.name, endpoint, credential, reason);
  }

  function decideUnsafe(action: Action): Decision {
    const profile = action.profile;
    if (profile !== undefined && !model.profiles.has(profile)) {
      return failClosed(`profile "${profile}" is not declared in the policy`, null, null);
    }
    let ep: Endpoint | null;
    if (action.endpoint !== undefined && action.endpoint !== '') {
      ep = model.endpoints.get(action.endpoint) ?? null;
      if (!ep) return failClosed(`endpoint ${action.endpoint} is not declared in the policy`, null, null);
      if (profile !== undefined && !profileReach.get(profile)!.has(ep.id)) {
        return failClosed(`endpoint ${ep.id} is not available to profile "${profile}"`, ep.id, null);
      }
    } else {
      ep = findEndpoint(action.host ?? '', action.port, profile);
      if (!ep) {
        const where = profile === undefined ? '' : ` in profile "${profile}"`;
        if (model.defaults.unknownHost === 'deny') {
          return make('deny', '', null, null, `no endpoint for host "${action.host}"${where}; unknown hosts are denied (defaults.unknown_host = "deny")`);
        }
        return make(
          'allow',
          '',
          null,
          null,
          `no endpoint for host "${action.host}"${where}; passed through uninspected (defaults.unknown_host = "passthrough")`,
          [],
          false,
          true,
        );
      }
    }
    if (action.family !== ep.family) {
      return failClosed(`${ep.id} is a ${ep.family} endpoint but the action carries ${action.family} facts`, ep.id, null);
    }

    const resolved = resolveCredential(action, ep);
    if (!resolved.ok) return failClosed(resolved.reason, ep.id, null);
    const cred = resolved.credential;
    const credId = cred?.id ?? null;
    // A passthrough credential claims the endpoint but injects nothing.
    const injected = cred && cred.type !== 'passthrough' ? cred.id : null;

    if (action.phase === 'session_start') {
      // A login only needs the endpoint and the credential; what the session
      // then does is decided statement by statement.
      return make('allow', '', ep.id, injected, `session start on ${ep.id}${credId ? ` as ${credId}` : ''}; statements are decided one by one`);
    }

    let act: Record<string, unknown> | undefined;
    for (const { rule, condition } of rulesByEndpoint.get(ep.id) ?? []) {
      if (rule.credential !== undefined && rule.credential !== credId) continue;
      if (condition) {
        act ??= activation(action.facts ?? {});
        let result: unknown;
        try {
          result = condition.evaluate(act);
        } catch (err) {
          const why = err instanceof Error ? err.message.split('\n')[0]!.trim() : String(err);
          return failClosed(`rule "${rule.name}" could not be evaluated (${why}); denied (fail closed)`, ep.id, injected, rule.name);
        }
        if (result === false) continue;
        if (result !== true) {
          return failClosed(`rule "${rule.name}" did not evaluate to a bool; denied (fail closed)`, ep.id, injected, rule.name);
        }
      }
      return ruleDecision(rule, ep.id, injected);
    }

    if (ep.family === 'sql') {
      const backstop = sqlBackstop(action);
      if (backstop) return make('deny', '', ep.id, injected, backstop.reason, [], backstop.failClosed);
    }
    return make('allow', '', ep.id, injected, 'no rule matched');
  }

  return Object.freeze({
    model,
    decide(action: Action): Decision {
      try {
        return decideUnsafe(action);
      } catch (err) {
        // decide is total: a bug or a malformed action must never let traffic through.
        return failClosed(`internal error while deciding (${err instanceof Error ? err.message : String(err)}); denied (fail closed)`, null, null);
      }
    },
    findEndpoint,
    needsFact(endpointId: string, fact: string): boolean {
      const reads = readsByEndpoint.get(endpointId);
      if (!reads) return true; // unknown endpoint: assume the worst
      const family = fact.split('.')[0]!;
      const sources = DERIVED_FROM[fact] ?? [fact, `${family}.*`];
      return sources.some((s) => reads.has(s));
    },
  });
}
