/**
 * The LLM judge stage (`llm_approver`), asked through `@anthropic-ai/sdk`.
 *
 * The gateway's own key comes from the vault (`credential` →
 * `slots.token`); the SDK is given it, the base URL and every other option
 * explicitly so nothing is picked up from the environment or a profile. The
 * verdict comes back as one forced tool call and is validated strictly
 * (verdict.ts); a model error, a timeout or a malformed answer rejects, and
 * the chain runner applies `llm_fail_mode`.
 */
import Anthropic from '@anthropic-ai/sdk';
import type { LlmApprover } from '../../policy/types.js';
import type { SecretResolver } from '../../gateway/contracts.js';
import { canonicalJson, sha256Hex } from '../canonical.js';
import type { StageAnswer, StageDriver, StageQuestion } from '../stages.js';
import { VerdictCache } from './cache.js';
import { VERDICT_TOOL, VERDICT_TOOL_NAME, buildJudgePrompt, newBoundary } from './prompt.js';
import { parseJudgeMessage } from './verdict.js';

export const DEFAULT_ANTHROPIC_BASE_URL = 'https://api.anthropic.com';
const MAX_OUTPUT_TOKENS = 512;

export interface JudgeOptions {
  secrets: SecretResolver;
  /** Removes vault values from text; applied to the whole prompt before it is sent. */
  scrub: (text: string) => string;
  /** Base URL when the approver sets none (tests, a corporate proxy). */
  defaultBaseUrl?: string;
  /** Retries of a failed call (5xx, connection error) inside the stage's timeout. */
  maxRetries?: number;
  cacheMaxEntries?: number;
  now?: () => number;
  /** Called with each prompt actually sent (diagnostics, tests). */
  onPrompt?: (prompt: { system: string; user: string; model: string }) => void;
}

export interface Judge extends StageDriver {
  readonly cache: VerdictCache;
}

export function createJudge(opts: JudgeOptions): Judge {
  const cache = new VerdictCache(opts.cacheMaxEntries, opts.now);
  const clients = new Map<string, Anthropic>();

  function clientFor(baseURL: string, apiKey: string): Anthropic {
    const key = sha256Hex(`${baseURL}\u0000${apiKey}`);
    let client = clients.get(key);
    if (!client) {
      if (clients.size > 32) clients.clear(); // keys rotate rarely; never hold many stale ones
      client = new Anthropic({
        apiKey,
        baseURL,
        maxRetries: opts.maxRetries ?? 1,
        logLevel: 'off',
        // Traces could carry the prompt (action content) to a collector; keep them off.
        openTelemetry: false,
      });
      clients.set(key, client);
    }
    return client;
  }

  async function ask(question: StageQuestion, signal: AbortSignal): Promise<StageAnswer> {
    const approver = question.plan.approver as LlmApprover;
    const decidedBy = `llm:${approver.model}`;
    const cacheKey = sha256Hex(canonicalJson({ model: approver.model, policy: approver.policy, subject: question.subject }));
    const cached = cache.get(cacheKey);
    if (cached) return { ...cached, decidedBy };

    const material = opts.secrets.resolve(approver.credential);
    if ('missing' in material) throw new Error(material.missing);
    const apiKey = material.slots.token;
    if (!apiKey) throw new Error(`credential ${approver.credential} has no token`);

    const prompt = buildJudgePrompt({
      policy: approver.policy,
      rule: question.decision.rule,
      ruleReason: question.decision.reason,
      view: question.view,
      boundary: newBoundary(),
    });
    const system = opts.scrub(prompt.system);
    const user = opts.scrub(prompt.user);
    opts.onPrompt?.({ system, user, model: approver.model });

    const client = clientFor(approver.baseUrl ?? opts.defaultBaseUrl ?? DEFAULT_ANTHROPIC_BASE_URL, apiKey);
    const remaining = Math.max(1, question.deadline - (opts.now ?? Date.now)());
    const message: unknown = await client.messages.create(
      {
        model: approver.model,
        max_tokens: MAX_OUTPUT_TOKENS,
        system,
        messages: [{ role: 'user', content: user }],
        tools: [VERDICT_TOOL],
        tool_choice: { type: 'tool', name: VERDICT_TOOL_NAME, disable_parallel_tool_use: true },
      },
      { signal, timeout: remaining },
    );
    const parsed = parseJudgeMessage(message);
    if ('error' in parsed) throw new Error(`malformed judge answer: ${parsed.error}`);
    cache.set(cacheKey, parsed, question.plan.defaults.llmCacheTtlSec * 1000);
    return { ...parsed, decidedBy };
  }

  return { ask, cache };
}
