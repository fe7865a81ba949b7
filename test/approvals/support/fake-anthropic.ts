/**
 * A local stand-in for the Anthropic Messages API that speaks its wire format
 * (POST /v1/messages, JSON message objects, JSON error envelopes), so the real
 * `@anthropic-ai/sdk` can be driven against it. Each test scripts the reply.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface RecordedCall {
  headers: IncomingMessage['headers'];
  body: {
    model: string;
    system: string;
    messages: Array<{ role: string; content: string }>;
    tools: Array<{ name: string }>;
    tool_choice: { type: string; name?: string };
    max_tokens: number;
  };
}

export type Reply =
  | { kind: 'message'; message: Record<string, unknown> }
  | { kind: 'error'; status: number; type?: string; message?: string }
  | { kind: 'hang' };

export interface FakeAnthropic {
  url: string;
  calls: RecordedCall[];
  /** How the next calls are answered (default: allow). */
  reply: (call: RecordedCall) => Reply | Promise<Reply>;
  /** Requests whose connection the client closed before the reply. */
  aborted: number;
  close(): Promise<void>;
}

let counter = 0;

export function toolMessage(input: unknown, extra: Record<string, unknown> = {}): Reply {
  return assistantMessage((n) => [{ type: 'tool_use', id: `toolu_fake${n}`, name: 'record_verdict', input }], 'tool_use', extra);
}

export function textMessage(text: string): Reply {
  return assistantMessage(() => [{ type: 'text', text }], 'end_turn');
}

/** A Messages API reply envelope around `content` (given the message's sequence number). */
function assistantMessage(content: (n: number) => unknown[], stopReason: string, extra: Record<string, unknown> = {}): Reply {
  counter += 1;
  return {
    kind: 'message',
    message: {
      id: `msg_fake${counter}`,
      type: 'message',
      role: 'assistant',
      model: 'claude-test',
      content: content(counter),
      stop_reason: stopReason,
      stop_sequence: null,
      usage: { input_tokens: 100, output_tokens: 20 },
      ...extra,
    },
  };
}

export async function startFakeAnthropic(): Promise<FakeAnthropic> {
  const hanging = new Set<ServerResponse>();
  const fake: FakeAnthropic = {
    url: '',
    calls: [],
    aborted: 0,
    reply: () => toolMessage({ verdict: 'allow', reason: 'fine' }),
    close: async () => {},
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => void answer());
    async function answer(): Promise<void> {
      if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/messages') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'not_found_error', message: 'no such route' } }));
        return;
      }
      const call: RecordedCall = { headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
      fake.calls.push(call);
      let closed = false;
      res.on('close', () => {
        if (!res.writableEnded) {
          closed = true;
          fake.aborted += 1;
        }
        hanging.delete(res);
      });
      const reply = await fake.reply(call);
      if (closed) return;
      if (reply.kind === 'hang') {
        hanging.add(res);
        return;
      }
      if (reply.kind === 'error') {
        res.writeHead(reply.status, { 'content-type': 'application/json', 'request-id': 'req_fake' });
        res.end(
          JSON.stringify({ type: 'error', error: { type: reply.type ?? 'api_error', message: reply.message ?? 'Internal server error' } }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_fake' });
      res.end(JSON.stringify(reply.message));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  fake.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const res of hanging) res.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return fake;
}
