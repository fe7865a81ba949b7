/**
 * Slack approvals (`human_approver` with a `slack_tokens` credential), with
 * `@slack/bolt`.
 *
 * A card goes to the approver's `channel` — always that channel, top level,
 * never a thread, whatever the action contains. Interactive cards carry
 * Approve / Deny buttons whose value is the queue entry id. Clicks arrive on
 * the gateway's control server (`POST /slack/interactivity`), signed by Slack:
 * the route rejects stale/future timestamps and wrong signatures with 401
 * before Bolt sees anything. Only the approver's `approvers` may decide
 * (others get an ephemeral refusal); `require_approvers = N` needs N distinct
 * users. The card is updated as approvals arrive and with the final outcome.
 *
 * Socket Mode instead of HTTP: when the credential also holds an app-level
 * token (`app` slot, `xapp-…`), the gateway connects to Slack over a
 * WebSocket and clicks arrive there (authenticated by that token) — for
 * gateways without a public URL.
 *
 * One Bolt `App` per `slack_tokens` credential, rebuilt when its secrets
 * change in the vault.
 */
import { App, LogLevel, verifySlackRequest, type BlockAction, type ButtonAction, type Logger } from '@slack/bolt';
import type { HumanApprover, PolicyModel } from '../../policy/types.js';
import type { ControlRoute, SecretResolver } from '../../gateway/contracts.js';
import { sendJson } from '../../gateway/control-server.js';
import { withoutBidiControls } from '../action-view.js';
import { sha256Hex } from '../canonical.js';
import type { ApprovalQueue, PendingApproval } from '../queue.js';
import { quorumOf } from '../queue-stage.js';
import { abortKind, type StageAnswer, type StageDriver, type StageQuestion } from '../stages.js';
import { APPROVE_ACTION_ID, DENY_ACTION_ID, outcomeCard, pendingCard, type Card, type CardOutcome } from './card.js';
import { ControlRouteReceiver } from './receiver.js';

export const SLACK_INTERACTIVITY_PATH = '/slack/interactivity';
export const DEFAULT_SLACK_API_URL = 'https://slack.com/api/';
/** Slack's replay window for signed requests, in seconds, applied in both directions. */
export const SLACK_MAX_SKEW_SEC = 300;

export interface SlackApprovalsOptions {
  policy: () => PolicyModel;
  secrets: SecretResolver;
  queue: ApprovalQueue;
  /** A vault scrubber for one card (called once per card). */
  scrubSession: () => (text: string) => string;
  /** Slack Web API base (tests point it at a fake). */
  slackApiUrl?: string;
  now?: () => number;
  log?: (line: string) => void;
}

interface SlackApp {
  key: string;
  credentialId: string;
  app: App;
  /**
   * `http`: clicks arrive signed on the control server. `socket`: Socket
   * Mode — the gateway holds a WebSocket to Slack (no public URL needed);
   * chosen when the credential has an app-level token (`app` slot).
   */
  mode: 'http' | 'socket';
  /** HTTP mode only. */
  receiver?: ControlRouteReceiver;
  signingSecret?: string;
  /** Resolves once the app can receive clicks (Socket Mode: connected). */
  ready: Promise<void>;
}

/** Where a card was posted, so a click is only accepted from that very message. */
interface Binding {
  credentialId: string;
  channel: string;
  ts: string;
}

export class SlackApprovals implements StageDriver {
  private readonly apps = new Map<string, SlackApp>();
  private readonly bindings = new Map<string, Binding>();
  private readonly now: () => number;
  private readonly log: (line: string) => void;

  constructor(private readonly opts: SlackApprovalsOptions) {
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? (() => {});
  }

  async ask(question: StageQuestion, signal: AbortSignal): Promise<StageAnswer> {
    const approver = question.plan.approver as HumanApprover;
    if (!approver.credential) throw new Error(`${approver.id} has no Slack credential`);
    if (!approver.channel) throw new Error(`${approver.id} has no channel`);
    const slack = this.appFor(approver.credential);
    if (slack.mode === 'socket') await slack.ready; // a card nobody can click is no question at all
    const interactive = approver.interactive !== false;
    const opened = this.opts.queue.open(
      question,
      { channel: interactive ? 'slack' : 'queue', quorum: quorumOf(question), allowedSlackUsers: approver.approvers },
      signal,
    );
    const entry = this.opts.queue.get(opened.id);
    if (!entry) return opened.result; // aborted before it was asked

    let posted: Binding | undefined;
    let final: CardOutcome | undefined;
    const finish = async () => {
      if (!posted || !final) return;
      this.bindings.delete(entry.id);
      await this.update(slack, posted, outcomeCard(entry, final));
    };
    opened.events.on('progress', (view: PendingApproval) => {
      if (posted && !final) void this.update(slack, posted, pendingCard({ entry: view, interactive }));
    });
    opened.events.once('settled', (answer: StageAnswer | null) => {
      final = answer
        ? { kind: 'decided', verdict: answer.verdict, decidedBy: answer.decidedBy, reason: answer.reason }
        : abortKind(signal) === 'timeout'
          ? { kind: 'timeout', verdict: question.plan.onTimeout }
          : { kind: 'withdrawn' };
      void finish();
    });

    try {
      const card = this.clean(pendingCard({ entry, interactive }));
      const response = await slack.app.client.chat.postMessage({
        channel: approver.channel,
        text: card.text,
        blocks: card.blocks as never,
        unfurl_links: false,
        unfurl_media: false,
      });
      if (!response.ok || !response.channel || !response.ts) throw new Error(response.error ?? 'no message id in the response');
      posted = { credentialId: slack.credentialId, channel: response.channel, ts: response.ts };
      if (!final) this.bindings.set(entry.id, posted);
      void finish(); // settled while posting (timeout, hang-up): show it
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.opts.queue.cancel(entry.id, new Error(`could not post the approval card to Slack: ${message}`));
    }
    return opened.result;
  }

  /** `POST /slack/interactivity` on the control server. */
  readonly route: ControlRoute = async (req, res, ctx) => {
    if (ctx.url.pathname !== SLACK_INTERACTIVITY_PATH) return false;
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      sendJson(res, 405, { error: 'use POST' });
      return true;
    }
    const raw = (await ctx.body()).toString('utf8');
    const verified = this.verify(raw, req.headers['x-slack-request-timestamp'], req.headers['x-slack-signature']);
    if (!verified) {
      sendJson(res, 401, { error: 'invalid Slack signature' });
      return true;
    }
    const payload = parseSlackBody(raw, String(req.headers['content-type'] ?? ''));
    if (!payload) {
      sendJson(res, 400, { error: 'unreadable Slack payload' });
      return true;
    }
    if (payload.type === 'url_verification' && typeof payload.challenge === 'string') {
      sendJson(res, 200, { challenge: payload.challenge });
      return true;
    }
    if (payload.ssl_check !== undefined) {
      res.writeHead(200, { 'content-length': 0 });
      res.end();
      return true;
    }
    await verified.receiver!.dispatch(payload, res, this.log);
    return true;
  };

  /** Disconnect Socket Mode apps and forget every card. */
  async close(): Promise<void> {
    const apps = [...this.apps.values()];
    this.apps.clear();
    this.bindings.clear();
    await Promise.all(apps.map((slack) => this.stopApp(slack)));
  }

  private async stopApp(slack: SlackApp): Promise<void> {
    if (slack.mode !== 'socket') return;
    try {
      await slack.ready.catch(() => {});
      await slack.app.stop();
    } catch (err) {
      this.log(`slack: stopping Socket Mode for ${slack.credentialId} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** The app whose signing secret signed this request, or null (→ 401). */
  private verify(raw: string, tsHeader: unknown, sigHeader: unknown): SlackApp | null {
    if (typeof tsHeader !== 'string' || typeof sigHeader !== 'string' || !/^\d{1,12}$/.test(tsHeader)) return null;
    const ts = Number(tsHeader);
    const nowMs = this.now();
    // Bolt's helper only rejects old timestamps; a future one is a replay set up in advance.
    if (Math.abs(nowMs / 1000 - ts) > SLACK_MAX_SKEW_SEC) return null;
    for (const credentialId of this.slackCredentials()) {
      // Read the secret directly: an unauthenticated request must not build apps or open sockets.
      const material = this.opts.secrets.resolve(credentialId);
      if ('missing' in material) continue;
      const signingSecret = material.slots.signing_secret;
      if (!signingSecret || material.slots.app) continue; // Socket Mode credentials take no HTTP clicks
      try {
        verifySlackRequest({
          signingSecret,
          body: raw,
          headers: { 'x-slack-signature': sigHeader, 'x-slack-request-timestamp': ts },
          nowMilliseconds: nowMs,
        });
      } catch {
        continue; // not signed with this credential's secret; try the next
      }
      try {
        return this.appFor(credentialId);
      } catch {
        return null;
      }
    }
    return null;
  }

  private slackCredentials(): string[] {
    const ids = new Set<string>();
    for (const approver of this.opts.policy().approvers.values()) {
      if (approver.type === 'human_approver' && approver.credential) ids.add(approver.credential);
    }
    return [...ids];
  }

  private appFor(credentialId: string): SlackApp {
    const material = this.opts.secrets.resolve(credentialId);
    if ('missing' in material) throw new Error(material.missing);
    const bot = material.slots.bot;
    const appToken = material.slots.app;
    const signingSecret = material.slots.signing_secret;
    if (!bot) throw new Error(`credential ${credentialId} has no bot token`);
    if (!appToken && !signingSecret) {
      throw new Error(`credential ${credentialId} has no signing_secret (HTTP interactivity) or app token (Socket Mode)`);
    }
    const key = sha256Hex(`${bot}\u0000${appToken ?? ''}\u0000${signingSecret ?? ''}`);
    const existing = this.apps.get(credentialId);
    if (existing?.key === key) return existing;
    if (existing) void this.stopApp(existing);

    const clientOptions = { slackApiUrl: this.opts.slackApiUrl ?? DEFAULT_SLACK_API_URL };
    const common = {
      token: bot,
      clientOptions,
      // auth.test runs on the first click, not at startup: a Slack outage must not stop the gateway.
      tokenVerificationEnabled: false,
      logger: boltLogger(this.log),
      logLevel: LogLevel.WARN,
    };
    let slack: SlackApp;
    if (appToken) {
      const app = new App({ ...common, appToken, socketMode: true, installerOptions: { clientOptions } });
      slack = { key, credentialId, app, mode: 'socket', ready: app.start().then(() => undefined) };
      slack.ready.catch((err: unknown) => {
        this.log(`slack: Socket Mode for ${credentialId} failed to connect: ${err instanceof Error ? err.message : String(err)}`);
        // Forget the app so the next question tries to connect again, and stop its reconnect loop.
        if (this.apps.get(credentialId) === slack) this.apps.delete(credentialId);
        app.stop().catch(() => {});
      });
    } else {
      const receiver = new ControlRouteReceiver();
      const app = new App({ ...common, receiver });
      slack = { key, credentialId, app, mode: 'http', receiver, signingSecret: signingSecret!, ready: Promise.resolve() };
    }
    const { app } = slack;
    app.action<BlockAction<ButtonAction>>({ type: 'block_actions', action_id: APPROVE_ACTION_ID }, async (args) => {
      await args.ack();
      await this.onClick(slack, args.body, args.action, 'allow');
    });
    app.action<BlockAction<ButtonAction>>({ type: 'block_actions', action_id: DENY_ACTION_ID }, async (args) => {
      await args.ack();
      await this.onClick(slack, args.body, args.action, 'deny');
    });
    app.error(async (err) => this.log(`slack: ${err.message}`));
    this.apps.set(credentialId, slack);
    return slack;
  }

  private async onClick(slack: SlackApp, body: BlockAction<ButtonAction>, action: ButtonAction, verdict: 'allow' | 'deny'): Promise<void> {
    const user = body.user?.id;
    const channel = body.channel?.id;
    if (!user || !channel) return;
    const id = action.value ?? '';
    const binding = this.bindings.get(id);
    const refuse = (text: string) =>
      slack.app.client.chat.postEphemeral({ channel, user, text }).catch((err: unknown) => {
        this.log(`slack: ephemeral refusal failed: ${err instanceof Error ? err.message : String(err)}`);
      });
    if (
      !binding ||
      binding.credentialId !== slack.credentialId ||
      binding.channel !== channel ||
      binding.ts !== body.message?.ts
    ) {
      await refuse('This approval is no longer pending.');
      return;
    }
    const result = this.opts.queue.decide(id, verdict, { via: 'slack', user });
    if (!result.ok) await refuse(result.error);
  }

  private async update(slack: SlackApp, at: Binding, card: Card): Promise<void> {
    const clean = this.clean(card);
    try {
      await slack.app.client.chat.update({ channel: at.channel, ts: at.ts, text: clean.text, blocks: clean.blocks as never });
    } catch (err) {
      this.log(`slack: updating the approval card failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /**
   * Every string of the card through the vault scrubber (the view already is; this covers our own
   * text too), and with bidi controls made visible: Slack renders them, so agent text could reorder
   * how a statement or path reads on the card.
   */
  private clean(card: Card): Card {
    const scrub = this.opts.scrubSession();
    return deepMapStrings(card, (text) => withoutBidiControls(scrub(text))) as Card;
  }
}

/** Bolt's warnings and errors into the gateway log (prefixed); its chatter dropped. */
function boltLogger(log: (line: string) => void): Logger {
  let level = LogLevel.WARN;
  let name = 'bolt';
  const rank = { [LogLevel.DEBUG]: 0, [LogLevel.INFO]: 1, [LogLevel.WARN]: 2, [LogLevel.ERROR]: 3 };
  const at = (l: LogLevel) => (...msg: unknown[]) => {
    if (rank[l] >= rank[level]) log(`slack: ${name} ${l}: ${msg.map((m) => (m instanceof Error ? m.message : String(m))).join(' ')}`);
  };
  return {
    debug: at(LogLevel.DEBUG),
    info: at(LogLevel.INFO),
    warn: at(LogLevel.WARN),
    error: at(LogLevel.ERROR),
    setLevel: (l) => {
      level = l;
    },
    getLevel: () => level,
    setName: (n) => {
      name = n;
    },
  };
}

function deepMapStrings(value: unknown, fn: (text: string) => string): unknown {
  if (typeof value === 'string') return fn(value);
  if (Array.isArray(value)) return value.map((v) => deepMapStrings(v, fn));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, deepMapStrings(v, fn)]));
  }
  return value;
}

/** Interactivity posts `payload=<json>` form-encoded; the Events API posts JSON. */
export function parseSlackBody(raw: string, contentType: string): Record<string, unknown> | null {
  try {
    let value: unknown;
    if (contentType.startsWith('application/json')) {
      value = JSON.parse(raw);
    } else {
      const form = new URLSearchParams(raw);
      const payload = form.get('payload');
      value = payload !== null ? JSON.parse(payload) : Object.fromEntries(form);
    }
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
