/**
 * A local stand-in for the Slack Web API (`POST /api/<method>`, form or JSON
 * bodies, `{ ok: … }` JSON answers) so real Bolt can be pointed at it with
 * `clientOptions.slackApiUrl`, plus a helper that signs interactivity
 * payloads the way Slack does (v0 HMAC-SHA256 over `v0:<ts>:<body>`).
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';

export interface SlackCall {
  method: string;
  token: string | undefined;
  args: Record<string, unknown>;
  /** What the fake answered. */
  response?: Record<string, unknown>;
}

export interface FakeSlack {
  /** Base for `slackApiUrl`, ending in `/api/`. */
  apiUrl: string;
  calls: SlackCall[];
  /** Make a method fail: answer `{ ok: false, error }`. */
  failures: Map<string, string>;
  byMethod(method: string): SlackCall[];
  /** Socket Mode: open WebSocket connections (apps.connections.open hands out their URL). */
  sockets: WebSocket[];
  /**
   * Deliver an interactivity payload over Socket Mode as Slack does (an
   * `interactive` envelope) and resolve with the client's acknowledgement.
   */
  sendInteractive(payload: Record<string, unknown>): Promise<Record<string, unknown>>;
  close(): Promise<void>;
}

function decodeArgs(req: IncomingMessage, raw: string): Record<string, unknown> {
  const type = String(req.headers['content-type'] ?? '');
  if (type.startsWith('application/json')) return JSON.parse(raw || '{}') as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of new URLSearchParams(raw)) {
    // The Web API client form-encodes nested arguments (blocks, attachments) as JSON strings.
    out[k] = (k === 'blocks' || k === 'attachments') && v.startsWith('[') ? JSON.parse(v) : v;
  }
  return out;
}

export async function startFakeSlack(): Promise<FakeSlack> {
  let seq = 0;
  const fake: FakeSlack = {
    apiUrl: '',
    calls: [],
    failures: new Map(),
    byMethod: (m) => fake.calls.filter((c) => c.method === m),
    sockets: [],
    sendInteractive: () => Promise.reject(new Error('not started')),
    close: async () => {},
  };
  const acks = new Map<string, (ack: Record<string, unknown>) => void>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const method = (req.url ?? '').replace(/^\/api\//, '').split('?')[0] ?? '';
      const auth = req.headers.authorization;
      const args = decodeArgs(req, Buffer.concat(chunks).toString('utf8'));
      const call: SlackCall = { method, token: auth?.replace(/^Bearer /, ''), args };
      fake.calls.push(call);
      const send = (body: Record<string, unknown>) => {
        call.response = body;
        const text = JSON.stringify(body);
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
        res.end(text);
      };
      const failure = fake.failures.get(method);
      if (failure) return send({ ok: false, error: failure });
      if (!auth) return send({ ok: false, error: 'not_authed' });
      switch (method) {
        case 'auth.test':
          return send({ ok: true, url: 'https://acme.slack.com/', team: 'acme', user: 'clawpatrol', team_id: 'T0ACME', user_id: 'UBOT', bot_id: 'BBOT' });
        case 'chat.postMessage': {
          seq += 1;
          // Slack answers with the channel *id* even when a name was given.
          const channel = String(args.channel).replace(/^#/, '') === 'ops' ? 'C0OPS' : String(args.channel);
          return send({ ok: true, channel, ts: `1700000000.${String(seq).padStart(6, '0')}`, message: { text: args.text } });
        }
        case 'chat.update':
          return send({ ok: true, channel: args.channel, ts: args.ts, text: args.text });
        case 'chat.postEphemeral':
          return send({ ok: true, message_ts: '1700000099.000001' });
        case 'apps.connections.open':
          if (!call.token?.startsWith('xapp-')) return send({ ok: false, error: 'invalid_auth' });
          return send({ ok: true, url: `${fake.apiUrl.replace(/^http/, 'ws').replace(/\/api\/$/, '')}/link?ticket=${randomUUID()}` });
        default:
          return send({ ok: false, error: 'unknown_method' });
      }
    });
  });
  const wss = new WebSocketServer({ server, path: '/link' });
  wss.on('connection', (ws) => {
    fake.sockets.push(ws);
    ws.on('close', () => fake.sockets.splice(fake.sockets.indexOf(ws), 1));
    ws.on('message', (data) => {
      const message = JSON.parse(String(data)) as Record<string, unknown>;
      const done = acks.get(String(message.envelope_id));
      if (done) {
        acks.delete(String(message.envelope_id));
        done(message);
      }
    });
    ws.send(JSON.stringify({ type: 'hello', num_connections: 1, debug_info: { host: 'fake', approximate_connection_time: 18060 }, connection_info: { app_id: 'A0CLAW' } }));
  });
  fake.sendInteractive = (payload) =>
    new Promise((resolve, reject) => {
      const ws = fake.sockets[0];
      if (!ws) return reject(new Error('no Socket Mode connection'));
      const envelope_id = randomUUID();
      acks.set(envelope_id, resolve);
      ws.send(JSON.stringify({ envelope_id, payload, type: 'interactive', accepts_response_payload: false }));
    });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  fake.apiUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/api/`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return fake;
}

/** The interactivity payload Slack sends when a user clicks a button on one of our cards. */
export function blockActionPayload(opts: {
  user: string;
  channel: string;
  messageTs: string;
  actionId: string;
  value: string;
}): Record<string, unknown> {
  return {
    type: 'block_actions',
    user: { id: opts.user, username: opts.user.toLowerCase(), name: opts.user.toLowerCase(), team_id: 'T0ACME' },
    api_app_id: 'A0CLAW',
    token: 'legacy-verification-token',
    container: { type: 'message', message_ts: opts.messageTs, channel_id: opts.channel, is_ephemeral: false },
    trigger_id: '1111.2222.3333',
    team: { id: 'T0ACME', domain: 'acme' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: opts.channel, name: 'ops' },
    message: { type: 'message', ts: opts.messageTs, text: 'Approval needed', user: 'UBOT', bot_id: 'BBOT' },
    state: { values: {} },
    response_url: 'https://hooks.slack.invalid/actions/T0ACME/1/xyz',
    actions: [
      {
        type: 'button',
        action_id: opts.actionId,
        block_id: 'clawpatrol_decision',
        text: { type: 'plain_text', text: opts.actionId.endsWith('approve') ? 'Approve' : 'Deny' },
        value: opts.value,
        action_ts: '1700000001.000001',
      },
    ],
  };
}

export function signedRequest(
  payload: Record<string, unknown>,
  signingSecret: string,
  timestampSec = Math.floor(Date.now() / 1000),
): { body: string; headers: Record<string, string> } {
  const body = `payload=${encodeURIComponent(JSON.stringify(payload))}`;
  const signature = `v0=${createHmac('sha256', signingSecret).update(`v0:${timestampSec}:${body}`).digest('hex')}`;
  return {
    body,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': String(timestampSec),
      'x-slack-signature': signature,
    },
  };
}
