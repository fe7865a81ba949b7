/**
 * Which secret slots each credential type has (policy-language.md, "Credential
 * types"), which of them an injection needs, and which may hold multi-line
 * PEM. The vault, the CLI and the policy loader share this one table.
 */
import type { CredentialType } from '../policy/types.js';

export interface SlotSpec {
  /** Every slot the type accepts, primary slot first. */
  slots: readonly string[];
  /** Slots that must be set before the credential can be injected. */
  required: readonly string[];
}

export const CREDENTIAL_SLOTS: Readonly<Record<CredentialType, SlotSpec>> = {
  bearer_token: { slots: ['token'], required: ['token'] },
  header_token: { slots: ['token'], required: ['token'] },
  basic_auth: { slots: ['password'], required: ['password'] },
  anthropic_manual_key: { slots: ['token'], required: ['token'] },
  // signing_secret (HTTP interactivity) or app (an app-level token, for Socket Mode) is only needed by the
  // Slack approver's interactive cards; it checks for one of them itself.
  slack_tokens: { slots: ['bot', 'signing_secret', 'app'], required: ['bot'] },
  postgres_credential: { slots: ['password'], required: ['password'] },
  clickhouse_credential: { slots: ['password'], required: ['password'] },
  // ca is optional: without it the upstream is verified against the system roots / endpoint ca_cert.
  mtls_credential: { slots: ['cert', 'key', 'ca'], required: ['cert', 'key'] },
  passthrough: { slots: [], required: [] },
};

/** Slots whose values are PEM text and may span lines; every other slot ends up in a header or handshake field. */
const PEM_SLOTS = new Set(['cert', 'key', 'ca']);

/**
 * Slack's app-level tokens start with `xapp-`. Checked when stored because a
 * bot token (`xoxb-`) put here by mistake would only fail later, when Socket
 * Mode tries to connect in the middle of an approval.
 */
const SLACK_APP_TOKEN = /^xapp-/;

export function slotSpec(type: CredentialType): SlotSpec {
  return CREDENTIAL_SLOTS[type] ?? { slots: [], required: [] };
}

/**
 * Why a value cannot be stored in a slot, or null when it is acceptable.
 * Single-line slots reject CR, LF and NUL: they are written into HTTP
 * headers and protocol handshakes, where a line break would let a value
 * inject a header of its own.
 */
export function invalidSlotValue(slot: string, value: string): string | null {
  if (value.length === 0) return 'the value is empty';
  if (value.includes('\0')) return 'the value contains a NUL byte';
  if (PEM_SLOTS.has(slot)) {
    if (!/-----BEGIN [A-Z0-9 ]+-----/.test(value)) return `slot ${slot} expects PEM text (-----BEGIN …-----)`;
    return null;
  }
  if (/[\r\n]/.test(value)) return `slot ${slot} takes a single line; the value contains a line break`;
  if (slot === 'app' && !SLACK_APP_TOKEN.test(value)) return 'slot app expects a Slack app-level token (xapp-…)';
  return null;
}

/**
 * Normalise what a user typed or a file held: strip the trailing line
 * break(s) `echo` and editors add. Inner content is kept as is.
 */
export function normaliseSecretInput(raw: string): string {
  // A scan from the end, not /[\r\n]+$/: that regex retries from every line break of a run not at
  // the end, so a value (or an @file read on every use) with many line breaks inside cost quadratic time.
  let end = raw.length;
  while (end > 0 && (raw[end - 1] === '\n' || raw[end - 1] === '\r')) end--;
  return raw.slice(0, end);
}
