/**
 * Policy models and actions for approval tests, built directly in the shape
 * `src/policy/types.ts` defines (the loader is tested by the policy module).
 */
import type {
  Action,
  Approver,
  Credential,
  Decision,
  Defaults,
  HumanApprover,
  LlmApprover,
  PolicyModel,
} from '../../../src/policy/types.js';
import type { CredentialMaterial, SecretResolver } from '../../../src/gateway/contracts.js';

const pos = { file: 'test.hcl', line: 1, col: 1 };

export function defaults(over: Partial<Defaults> = {}): Defaults {
  return {
    unknownHost: 'passthrough',
    llmFailMode: 'closed',
    llmCacheTtlSec: 300,
    humanTimeoutSec: 600,
    humanOnTimeout: 'deny',
    mode: 'enforce',
    ...over,
  };
}

export function llmApprover(over: Partial<LlmApprover> = {}): LlmApprover {
  return {
    id: 'llm_approver.judge',
    type: 'llm_approver',
    name: 'judge',
    model: 'claude-test',
    credential: 'anthropic_manual_key.judge',
    policy: 'Allow read-only queries. Deny anything that deletes or modifies data.',
    pos,
    ...over,
  };
}

export function humanApprover(over: Partial<HumanApprover> = {}): HumanApprover {
  return {
    id: 'human_approver.ops',
    type: 'human_approver',
    name: 'ops',
    channel: 'C0OPS',
    credential: 'slack_tokens.slack',
    timeoutSec: 600,
    interactive: true,
    approvers: [],
    requireApprovers: 1,
    onTimeout: 'deny',
    pos,
    ...over,
  };
}

export function credential(id: string): Credential {
  const [type, name] = id.split('.') as [Credential['type'], string];
  const slots = type === 'slack_tokens' ? ['bot', 'signing_secret'] : ['token'];
  return { id, type, name, endpoints: [], slots, pos };
}

export function model(opts: { approvers?: Approver[]; defaults?: Partial<Defaults>; credentials?: string[] } = {}): PolicyModel {
  return {
    files: ['test.hcl'],
    schemaVersion: 1,
    gateway: { dashboardListen: '127.0.0.1:0', stateDir: '/nonexistent', limits: { bodyBuffer: 1 << 20 }, localProfile: 'default' },
    hasGatewayBlock: false,
    defaults: defaults(opts.defaults),
    endpoints: new Map(),
    credentials: new Map((opts.credentials ?? ['anthropic_manual_key.judge', 'slack_tokens.slack']).map((id) => [id, credential(id)])),
    approvers: new Map((opts.approvers ?? [llmApprover()]).map((a) => [a.id, a])),
    profiles: new Map(),
    rules: [],
    warnings: [],
  };
}

export function sqlAction(statement: string, over: Partial<Action> = {}): Action {
  return {
    family: 'sql',
    host: 'pg.internal:5432',
    endpoint: 'postgres.pg',
    peer: { id: 'peer-1', name: 'agent-laptop' },
    profile: 'default',
    facts: {
      sql: {
        verb: statement.trim().split(/\s+/)[0]?.toLowerCase() ?? '',
        verbs: [statement.trim().split(/\s+/)[0]?.toLowerCase() ?? ''],
        tables: ['public.users', 'users'],
        functions: [],
        statement,
        database: 'app',
        user: 'agent',
        inspected: true,
      },
    },
    ...over,
  };
}

export function approveDecision(approve: string[], over: Partial<Decision> = {}): Decision {
  return {
    verdict: 'approve',
    effective: 'approve',
    mode: 'enforce',
    rule: 'risky-writes',
    endpoint: 'postgres.pg',
    credential: 'postgres_credential.app',
    reason: 'writes to production need approval',
    approve,
    failClosed: false,
    passthrough: false,
    ...over,
  };
}

/** An in-test vault: fixed secrets per credential. */
export function secrets(values: Record<string, Record<string, string>>): SecretResolver {
  return {
    resolve(id: string): CredentialMaterial | { missing: string } {
      const slots = values[id];
      if (!slots) return { missing: `credential ${id} has no secret` };
      return { credential: credential(id), slots };
    },
    allValues: () => Object.values(values).flatMap((slots) => Object.values(slots)),
  };
}

