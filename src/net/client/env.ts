/**
 * The environment of a wrapped agent (`clawpatrol run`), as a pure function
 * of the caller's environment:
 *
 * - real credentials inherited from the shell are removed (the agent must
 *   only ever hold placeholders; the gateway injects the real secret on the
 *   wire): well-known names, names that look like secrets, URLs with a
 *   password, the SSH agent socket, and the gateway's own secrets;
 * - proxy variables are removed (the tunnel is the only way out);
 * - the profile's placeholders are exported in their credentials' `env`;
 * - every common CA-bundle variable points at system roots + gateway CA.
 */
import type { RunPlaceholder } from '../types.js';

/** Variables that hold a credential wherever they appear. */
export const CREDENTIAL_VARIABLES: ReadonlySet<string> = new Set([
  // source forges and CI
  'GITHUB_TOKEN', 'GH_TOKEN', 'GH_ENTERPRISE_TOKEN', 'GITHUB_ENTERPRISE_TOKEN', 'GITHUB_PAT', 'GITLAB_TOKEN', 'GL_TOKEN',
  'CI_JOB_TOKEN', 'BITBUCKET_TOKEN', 'GITEA_TOKEN',
  // model providers
  'ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'CLAUDE_CODE_OAUTH_TOKEN', 'OPENAI_API_KEY', 'AZURE_OPENAI_API_KEY', 'GEMINI_API_KEY',
  'GOOGLE_API_KEY', 'GOOGLE_APPLICATION_CREDENTIALS', 'GOOGLE_OAUTH_ACCESS_TOKEN', 'MISTRAL_API_KEY', 'COHERE_API_KEY', 'CO_API_KEY',
  'GROQ_API_KEY', 'DEEPSEEK_API_KEY', 'XAI_API_KEY', 'OPENROUTER_API_KEY', 'TOGETHER_API_KEY', 'FIREWORKS_API_KEY',
  'PERPLEXITY_API_KEY', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HUGGINGFACEHUB_API_TOKEN', 'REPLICATE_API_TOKEN',
  // databases
  'PGPASSWORD', 'PGPASSFILE', 'MYSQL_PWD', 'REDIS_PASSWORD', 'REDISCLI_AUTH', 'CLICKHOUSE_PASSWORD', 'MONGODB_URI',
  'SNOWFLAKE_PASSWORD', 'DATABASE_URL',
  // package registries
  'NPM_TOKEN', 'NODE_AUTH_TOKEN', 'YARN_NPM_AUTH_TOKEN', 'PYPI_TOKEN', 'TWINE_PASSWORD', 'TWINE_USERNAME', 'UV_PUBLISH_TOKEN',
  'CARGO_REGISTRY_TOKEN', 'GEM_HOST_API_KEY', 'DOCKER_AUTH_CONFIG', 'DOCKER_PASSWORD', 'CR_PAT',
  // clouds and infrastructure
  'DIGITALOCEAN_TOKEN', 'DIGITALOCEAN_ACCESS_TOKEN', 'HCLOUD_TOKEN', 'LINODE_TOKEN', 'CLOUDFLARE_API_TOKEN', 'CLOUDFLARE_API_KEY',
  'CF_API_TOKEN', 'CF_API_KEY', 'HEROKU_API_KEY', 'NETLIFY_AUTH_TOKEN', 'VERCEL_TOKEN', 'FLY_API_TOKEN', 'ARM_CLIENT_SECRET',
  'ARM_ACCESS_KEY', 'VAULT_TOKEN', 'CONSUL_HTTP_TOKEN', 'NOMAD_TOKEN', 'KUBE_TOKEN', 'K8S_AUTH_TOKEN', 'OP_SERVICE_ACCOUNT_TOKEN',
  // SaaS APIs
  'SLACK_TOKEN', 'SLACK_BOT_TOKEN', 'SLACK_USER_TOKEN', 'SLACK_APP_TOKEN', 'SLACK_SIGNING_SECRET', 'SLACK_WEBHOOK_URL',
  'STRIPE_API_KEY', 'STRIPE_SECRET_KEY', 'SENTRY_AUTH_TOKEN', 'SENTRY_DSN', 'DATADOG_API_KEY', 'DATADOG_APP_KEY', 'DD_API_KEY',
  'DD_APP_KEY', 'NEW_RELIC_LICENSE_KEY', 'NEW_RELIC_API_KEY', 'TWILIO_AUTH_TOKEN', 'SENDGRID_API_KEY', 'MAILGUN_API_KEY',
  'LINEAR_API_KEY', 'NOTION_TOKEN', 'NOTION_API_KEY', 'JIRA_API_TOKEN', 'ATLASSIAN_API_TOKEN', 'PAGERDUTY_TOKEN', 'ASANA_TOKEN',
  // agents and keys held by a running process
  'SSH_AUTH_SOCK', 'GPG_AGENT_INFO', 'CLAWPATROL_VAULT_KEY', 'CLAWPATROL_ADMIN_TOKEN',
]);

/** Every variable with one of these prefixes is a credential (AWS_REGION goes too: harmless, and simpler to reason about). */
export const CREDENTIAL_PREFIXES: readonly string[] = ['AWS_', 'AZURE_', 'CLAWPATROL_SECRET_', 'TF_TOKEN_', 'TF_VAR_'];

/** `FOO_TOKEN`, `DB_PASSWORD`, `MY_API_KEY`, … */
const SECRET_SHAPED_NAME = /(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|PASS|PWD|API_?KEY|ACCESS_?KEY|SECRET_?KEY|PRIVATE_?KEY|AUTH_?KEY|CREDENTIALS?|AUTH)$/i;
/** `scheme://user:password@host…` */
const URL_WITH_PASSWORD = /[a-z][a-z0-9+.-]*:\/\/[^\s/@:]*:[^\s/@]+@/i;

export const PROXY_VARIABLES: ReadonlySet<string> = new Set([
  'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'FTP_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'all_proxy', 'ftp_proxy', 'no_proxy',
]);

export const CA_VARIABLES = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'PGSSLROOTCERT', 'AWS_CA_BUNDLE', 'DENO_CERT'] as const;

/** Our own variables that must stay (the wrapper sets them). */
const OURS = new Set<string>([...CA_VARIABLES, 'CLAWPATROL_DEVICE', 'CLAWPATROL_PROFILE', 'PWD', 'OLDPWD']);

export function isCredentialVariable(name: string, value: string): boolean {
  if (OURS.has(name)) return false;
  if (CREDENTIAL_VARIABLES.has(name.toUpperCase())) return true;
  if (CREDENTIAL_PREFIXES.some((p) => name.toUpperCase().startsWith(p))) return true;
  if (SECRET_SHAPED_NAME.test(name)) return true;
  return URL_WITH_PASSWORD.test(value);
}

export interface RunEnvInput {
  env: NodeJS.ProcessEnv;
  placeholders: RunPlaceholder[];
  caBundlePath: string;
  device: { id: string; profile: string };
  /** Variables the user asked to keep (`--keep-env`). */
  keep?: string[];
  /** The identity the command runs as, when it differs from the caller's (sudo). */
  user?: { name: string; home: string; shell?: string };
}

export interface RunEnv {
  env: Record<string, string>;
  /** Credential variables removed (names only; values never leave this function), also those a placeholder then replaced. */
  removed: string[];
  proxiesRemoved: string[];
  /** `VAR (credential id)` for every placeholder exported. */
  exported: string[];
}

export function buildRunEnv(input: RunEnvInput): RunEnv {
  const keep = new Set(input.keep ?? []);
  const env: Record<string, string> = {};
  const removed: string[] = [];
  const proxiesRemoved: string[] = [];
  for (const [name, value] of Object.entries(input.env)) {
    if (value === undefined) continue;
    if (!keep.has(name) && PROXY_VARIABLES.has(name)) {
      proxiesRemoved.push(name);
      continue;
    }
    if (!keep.has(name) && isCredentialVariable(name, value)) {
      removed.push(name);
      continue;
    }
    env[name] = value;
  }
  if (input.user) {
    env.HOME = input.user.home;
    env.USER = input.user.name;
    env.LOGNAME = input.user.name;
    if (input.user.shell) env.SHELL = input.user.shell;
    // sudo's own bookkeeping names the caller; the command is the caller now.
    for (const v of ['SUDO_UID', 'SUDO_GID', 'SUDO_USER', 'SUDO_COMMAND', 'MAIL']) delete env[v];
  }
  const exported: string[] = [];
  for (const p of input.placeholders) {
    if (!p.env) continue;
    env[p.env] = p.placeholder;
    exported.push(`${p.env} (${p.credential})`);
  }
  for (const v of CA_VARIABLES) env[v] = input.caBundlePath;
  env.CLAWPATROL_DEVICE = input.device.id;
  env.CLAWPATROL_PROFILE = input.device.profile;
  removed.sort();
  return { env, removed, proxiesRemoved: proxiesRemoved.sort(), exported };
}
