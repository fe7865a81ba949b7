/**
 * Block Kit cards for Slack approvals — pure functions, no Slack calls.
 *
 * Agent-controlled text never goes through Slack's mrkdwn parser unescaped:
 * it is shown as `plain_text` or inside `rich_text` preformatted elements
 * (which Slack does not parse for mentions or links), and where mrkdwn is
 * needed `&`, `<`, `>` are escaped, so content cannot ping `<!channel>`,
 * forge a link, or fake a button label.
 */
import { clamp, describeAction, marked } from '../action-view.js';
import { defaultReason, type PendingApproval } from '../queue.js';

export const APPROVE_ACTION_ID = 'clawpatrol_approve';
export const DENY_ACTION_ID = 'clawpatrol_deny';

/** Slack's block limits (section text 3000, header 150, fields 2000) with margin. */
const MAX_PREFORMATTED = 2500;
const MAX_FIELD = 1900;
const MAX_HEADER = 150;

type Block = Record<string, unknown>;
export interface Card {
  /** Fallback text for notifications. */
  text: string;
  blocks: Block[];
}

export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** `<@U123>` for a real Slack user id; anything else as escaped text. */
export function mention(decidedBy: string): string {
  const m = /^slack:([UW][A-Z0-9]{1,20})$/.exec(decidedBy);
  return m ? `<@${m[1]}>` : escapeMrkdwn(decidedBy);
}

function field(label: string, value: string): Block {
  return { type: 'mrkdwn', text: cut(`*${label}*\n${escapeMrkdwn(value || '—')}`, MAX_FIELD) };
}

function preformatted(text: string): Block {
  // The view holds up to 8000 characters of a statement; a card shows less. Say how much: a bare "…"
  // let padding push the part that matters off the card without the approver noticing.
  const shown = marked(clamp(text || ' ', MAX_PREFORMATTED - 60), '\n');
  return {
    type: 'rich_text',
    elements: [{ type: 'rich_text_preformatted', elements: [{ type: 'text', text: shown }] }],
  };
}

export interface CardInput {
  entry: PendingApproval;
  interactive: boolean;
}

export function pendingCard({ entry, interactive }: CardInput): Card {
  const view = entry.action;
  const what = describeAction(view);
  const progress =
    entry.requiredApprovals > 1
      ? `${entry.approvals.length} of ${entry.requiredApprovals} approvals${entry.approvals.length ? `: ${entry.approvals.map(mention).join(', ')}` : ''}`
      : '';
  const blocks: Block[] = [
    { type: 'header', text: { type: 'plain_text', text: cut(`Approval needed: ${what.title}`, MAX_HEADER), emoji: false } },
    ...common(entry, what),
    {
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: escapeMrkdwn(
            `${entry.approver} · expires ${entry.expiresAt} (then ${entry.onTimeout}) · id ${entry.id}${
              interactive ? '' : ' · decide with: clawpatrol approvals approve|deny ' + entry.id
            }`,
          ),
        },
      ],
    },
  ];
  if (progress) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: progress } });
  if (interactive) {
    blocks.push({
      type: 'actions',
      block_id: 'clawpatrol_decision',
      elements: [
        { type: 'button', action_id: APPROVE_ACTION_ID, style: 'primary', text: { type: 'plain_text', text: 'Approve' }, value: entry.id },
        { type: 'button', action_id: DENY_ACTION_ID, style: 'danger', text: { type: 'plain_text', text: 'Deny' }, value: entry.id },
      ],
    });
  }
  // `text` is the notification (mobile shows only it) and Slack reads it as mrkdwn: the title holds
  // agent text (an HTTP path, a pod name), so it is escaped like every other mrkdwn string here.
  return { text: cut(escapeMrkdwn(`Approval needed: ${what.title} (rule ${entry.rule})`), 300), blocks };
}

export type CardOutcome =
  | { kind: 'decided'; verdict: 'allow' | 'deny'; decidedBy: string; reason: string }
  | { kind: 'timeout'; verdict: 'allow' | 'deny' }
  | { kind: 'withdrawn' };

export function outcomeCard(entry: PendingApproval, outcome: CardOutcome): Card {
  const what = describeAction(entry.action);
  let line: string;
  if (outcome.kind === 'decided') {
    const who = outcome.decidedBy.split(',').map(mention).join(', ');
    line = `${outcome.verdict === 'allow' ? ':white_check_mark: Approved' : ':no_entry: Denied'} by ${who}${
      outcome.reason && outcome.reason !== defaultReason(outcome.verdict, outcome.decidedBy)
        ? ` — ${escapeMrkdwn(cut(outcome.reason, 500))}`
        : ''
    }`;
  } else if (outcome.kind === 'timeout') {
    line = `:hourglass: No decision in time — ${outcome.verdict === 'allow' ? 'allowed' : 'denied'} (on_timeout = ${outcome.verdict})`;
  } else {
    line = ':leftwards_arrow_with_hook: Withdrawn — the agent stopped waiting';
  }
  const blocks: Block[] = [
    { type: 'header', text: { type: 'plain_text', text: cut(what.title, MAX_HEADER), emoji: false } },
    ...common(entry, what),
    { type: 'section', block_id: 'clawpatrol_outcome', text: { type: 'mrkdwn', text: line } },
    { type: 'context', elements: [{ type: 'mrkdwn', text: escapeMrkdwn(`${entry.approver} · id ${entry.id}`) }] },
  ];
  return { text: cut(`${escapeMrkdwn(what.title)}: ${line}`, 300), blocks };
}

function common(entry: PendingApproval, what: ReturnType<typeof describeAction>): Block[] {
  const view = entry.action;
  const agent = view.peer ? `${view.peer.name ?? view.peer.id}${view.peer.name ? ` (${view.peer.id})` : ''}` : 'local';
  return [
    {
      type: 'section',
      fields: [
        field('Rule', entry.rule),
        field('Agent', `${agent}${view.profile ? `, profile ${view.profile}` : ''}`),
        field('Endpoint', view.endpoint ?? view.host),
        field('Credential', view.credential ?? '—'),
      ],
    },
    ...(entry.reason ? [{ type: 'section', text: { type: 'mrkdwn', text: cut(`*Why*\n${escapeMrkdwn(entry.reason)}`, MAX_FIELD) } }] : []),
    preformatted(what.body),
    ...(what.details.length
      ? [{ type: 'context', elements: [{ type: 'plain_text', text: cut(what.details.join(' · '), MAX_FIELD), emoji: false }] }]
      : []),
    ...(view.content?.findings.length
      ? [{ type: 'context', elements: [{ type: 'plain_text', text: cut(`findings: ${view.content.findings.join(', ')}`, MAX_FIELD), emoji: false }] }]
      : []),
  ];
}
