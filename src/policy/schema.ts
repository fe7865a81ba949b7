/**
 * What a policy document may contain: block types, their labels and
 * attributes, the supported endpoint/credential/approver types and how they
 * relate. The loader checks documents against this; docs/policy.md describes
 * the same thing for people.
 */
import type { CredentialType, EndpointType, Family } from './types.js';

export const SCHEMA_VERSION = 1;

export const TOP_LEVEL_BLOCKS = ['gateway', 'defaults', 'endpoint', 'credential', 'approver', 'rule', 'profile', 'policy'] as const;
export const TOP_LEVEL_ATTRIBUTES = ['schema_version'] as const;

export const LABELS: Record<string, string[]> = {
  gateway: [],
  defaults: [],
  endpoint: ['type', 'name'],
  credential: ['type', 'name'],
  approver: ['type', 'name'],
  rule: ['name'],
  profile: ['name'],
  policy: ['name'],
};

export const ENDPOINT_TYPES: readonly EndpointType[] = ['https', 'postgres', 'clickhouse_native', 'clickhouse_http', 'kubernetes'];

export const ENDPOINT_FAMILY: Record<EndpointType, Family> = {
  https: 'http',
  postgres: 'sql',
  clickhouse_native: 'sql',
  clickhouse_http: 'sql',
  kubernetes: 'k8s',
};

const ENDPOINT_COMMON = ['description', 'listen'];
export const ENDPOINT_ATTRIBUTES: Record<EndpointType, string[]> = {
  https: [...ENDPOINT_COMMON, 'hosts', 'ca_cert'],
  postgres: [...ENDPOINT_COMMON, 'host', 'sslmode', 'database'],
  clickhouse_native: [...ENDPOINT_COMMON, 'hosts', 'port', 'tls', 'accept_invalid_certificate'],
  clickhouse_http: [...ENDPOINT_COMMON, 'hosts'],
  kubernetes: [...ENDPOINT_COMMON, 'server', 'hosts', 'ca_cert', 'cluster_name', 'region'],
};

export const CREDENTIAL_TYPES: readonly CredentialType[] = [
  'bearer_token',
  'header_token',
  'basic_auth',
  'anthropic_manual_key',
  'slack_tokens',
  'postgres_credential',
  'clickhouse_credential',
  'mtls_credential',
  'passthrough',
];

const CREDENTIAL_COMMON = ['endpoint', 'endpoints', 'env'];
export const CREDENTIAL_ATTRIBUTES: Record<CredentialType, string[]> = {
  bearer_token: CREDENTIAL_COMMON,
  header_token: [...CREDENTIAL_COMMON, 'header', 'prefix'],
  basic_auth: [...CREDENTIAL_COMMON, 'username'],
  anthropic_manual_key: CREDENTIAL_COMMON,
  slack_tokens: CREDENTIAL_COMMON,
  postgres_credential: [...CREDENTIAL_COMMON, 'user', 'database'],
  clickhouse_credential: [...CREDENTIAL_COMMON, 'user', 'database'],
  mtls_credential: CREDENTIAL_COMMON,
  passthrough: CREDENTIAL_COMMON,
};

export const CREDENTIAL_REQUIRED: Partial<Record<CredentialType, string[]>> = {
  header_token: ['header'],
  basic_auth: ['username'],
  postgres_credential: ['user'],
  clickhouse_credential: ['user'],
};

/** The environment variable `clawpatrol run` exports a placeholder in when `env` is not set. */
export const DEFAULT_ENV: Partial<Record<CredentialType, string>> = {
  anthropic_manual_key: 'ANTHROPIC_API_KEY',
};

/** Which endpoint types a credential type can authenticate against. */
export const CREDENTIAL_ENDPOINTS: Record<CredentialType, readonly EndpointType[]> = {
  bearer_token: ['https', 'kubernetes'],
  header_token: ['https', 'kubernetes'],
  basic_auth: ['https', 'kubernetes', 'clickhouse_http'],
  anthropic_manual_key: ['https'],
  slack_tokens: ['https'],
  postgres_credential: ['postgres'],
  clickhouse_credential: ['clickhouse_native', 'clickhouse_http'],
  mtls_credential: ['https', 'kubernetes', 'postgres', 'clickhouse_native', 'clickhouse_http'],
  passthrough: ENDPOINT_TYPES,
};

export const APPROVER_TYPES = ['llm_approver', 'human_approver'] as const;
export const APPROVER_ATTRIBUTES: Record<(typeof APPROVER_TYPES)[number], string[]> = {
  llm_approver: ['model', 'credential', 'policy', 'base_url', 'timeout'],
  human_approver: ['channel', 'credential', 'timeout', 'interactive', 'approvers', 'require_approvers', 'on_timeout'],
};

export const RULE_ATTRIBUTES = [
  'endpoint',
  'endpoints',
  'priority',
  'condition',
  'credential',
  'verdict',
  'approve',
  'reason',
  'disabled',
  'description',
];

export const PROFILE_ATTRIBUTES = ['credentials', 'description'];
export const PROFILE_ENTRY_KEYS = ['credential', 'placeholder'];

export const POLICY_TEXT_ATTRIBUTES = ['text'];

export const GATEWAY_ATTRIBUTES = ['dashboard_listen', 'public_url', 'state_dir', 'local_profile', 'actions_keep', 'audit_backlog', 'audit_body_limit'];
export const GATEWAY_BLOCKS = ['limits', 'wireguard', 'proxy', 'store'];
export const GATEWAY_BLOCK_ATTRIBUTES: Record<string, string[]> = {
  limits: ['body_buffer', 'body_idle_timeout', 'connections_per_device', 'wildcard_names_per_device'],
  wireguard: ['subnet_cidr', 'listen_port', 'endpoint'],
  proxy: ['listen'],
  store: ['postgres'],
};

export const DEFAULTS_ATTRIBUTES = ['unknown_host', 'llm_fail_mode', 'llm_cache_ttl', 'human_timeout', 'human_on_timeout', 'mode'];

/** Every reference namespace (`<type>.<name>`) and the kind it names. */
export type Kind = 'endpoint' | 'credential' | 'approver' | 'policy';

export function kindOfType(type: string): Kind | 'builtin' | undefined {
  if ((ENDPOINT_TYPES as readonly string[]).includes(type)) return 'endpoint';
  if ((CREDENTIAL_TYPES as readonly string[]).includes(type)) return 'credential';
  if ((APPROVER_TYPES as readonly string[]).includes(type)) return 'approver';
  if (type === 'policy') return 'policy';
  if (type === 'builtin') return 'builtin';
  return undefined;
}

export const REFERENCE_TYPES: readonly string[] = [...ENDPOINT_TYPES, ...CREDENTIAL_TYPES, ...APPROVER_TYPES, 'builtin', 'policy'];

export const BUILTIN_APPROVERS = ['dashboard'];

/** Prefix of the placeholder `clawpatrol run` exports for a profile entry without one. */
export const GENERATED_PLACEHOLDER_PREFIX = 'cp_ph_';
