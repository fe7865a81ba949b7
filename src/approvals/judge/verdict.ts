/**
 * Strict reading of the judge's answer. The request forces one call of the
 * verdict tool; anything else — text only, a different tool, two calls,
 * extra or missing fields, a verdict other than exactly "allow"/"deny", an
 * answer cut off by max_tokens — is malformed and follows the fail mode.
 */
import { MAX_JUDGE_REASON, VERDICT_TOOL_NAME } from './prompt.js';

export type JudgeVerdict = { verdict: 'allow' | 'deny'; reason: string };

export function parseJudgeMessage(message: unknown): JudgeVerdict | { error: string } {
  if (!isRecord(message)) return { error: 'the answer is not a message object' };
  if (message.type !== 'message' || message.role !== 'assistant') return { error: 'the answer is not an assistant message' };
  if (message.stop_reason !== 'tool_use') {
    return { error: `the model stopped with ${JSON.stringify(message.stop_reason)} instead of calling ${VERDICT_TOOL_NAME}` };
  }
  if (!Array.isArray(message.content)) return { error: 'the answer has no content list' };

  const calls = message.content.filter((block) => isRecord(block) && block.type === 'tool_use');
  const others = message.content.filter((block) => !isRecord(block) || (block.type !== 'tool_use' && block.type !== 'text'));
  if (others.length > 0) return { error: 'the answer contains unexpected content blocks' };
  if (calls.length !== 1) return { error: `expected exactly one ${VERDICT_TOOL_NAME} call, got ${calls.length}` };
  const call = calls[0] as Record<string, unknown>;
  if (call.name !== VERDICT_TOOL_NAME) return { error: `the model called ${JSON.stringify(call.name)}` };

  const input = call.input;
  if (!isRecord(input)) return { error: 'the verdict input is not an object' };
  const keys = Object.keys(input).sort();
  if (keys.length !== 2 || keys[0] !== 'reason' || keys[1] !== 'verdict') {
    return { error: `the verdict must have exactly "verdict" and "reason", got ${JSON.stringify(keys)}` };
  }
  if (input.verdict !== 'allow' && input.verdict !== 'deny') {
    return { error: `the verdict must be "allow" or "deny", got ${JSON.stringify(input.verdict)}` };
  }
  if (typeof input.reason !== 'string') return { error: 'the reason is not a string' };
  const reason = input.reason.trim();
  if (!reason) return { error: 'the reason is empty' };
  if (reason.length > MAX_JUDGE_REASON) return { error: `the reason is over ${MAX_JUDGE_REASON} characters` };
  return { verdict: input.verdict, reason };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
