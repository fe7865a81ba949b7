/**
 * Real clients: undici fetch through the explicit proxy (ProxyAgent, CONNECT)
 * and over HTTP/2, and the Anthropic SDK (baseURL) against a local TLS fake of
 * the Messages API — plain and streaming calls, the placeholder key replaced
 * by the vault's, a denied model surfacing as the SDK's PermissionDeniedError.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Agent, ProxyAgent, fetch as undiciFetch } from 'undici';
import Anthropic, { PermissionDeniedError } from '@anthropic-ai/sdk';
import { ANTHROPIC_CANARY, CANARY, PLACEHOLDER, startEnv, type Env } from './support/env.js';
import { GATEWAY_IP, UPSTREAM_IP, lookupTo } from './support/gateway.js';

let env: Env;
let fake: https.Server;
let fakePort: number;
const fakeSeen: Array<{ path: string; headers: Record<string, unknown>; body: unknown }> = [];

/** A small but real Messages API: checks the key, answers JSON or SSE, and echoes the key it got. */
function startFakeAnthropic(cert: string, key: string): Promise<void> {
  fake = https.createServer({ cert, key }, (req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (raw += c));
    req.on('end', () => {
      const body = raw ? JSON.parse(raw) : {};
      fakeSeen.push({ path: req.url ?? '', headers: req.headers, body });
      const apiKey = String(req.headers['x-api-key'] ?? '');
      if (apiKey !== ANTHROPIC_CANARY) {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: `invalid x-api-key ${apiKey}` } }));
        return;
      }
      const text = `hello; you authenticated with ${apiKey}`;
      const message = {
        id: 'msg_test',
        type: 'message',
        role: 'assistant',
        model: body.model,
        content: [{ type: 'text', text }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 3, output_tokens: 7 },
      };
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_1' });
        res.end(JSON.stringify(message));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const ev = (type: string, data: unknown) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`);
      ev('message_start', { message: { ...message, content: [], stop_reason: null } });
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      for (const part of [text.slice(0, 10), text.slice(10, 30), text.slice(30)]) {
        ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: part } });
      }
      ev('content_block_stop', { index: 0 });
      ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 7 } });
      ev('message_stop', {});
      res.end();
    });
  });
  return new Promise((resolve) =>
    fake.listen(0, UPSTREAM_IP, () => {
      fakePort = (fake.address() as AddressInfo).port;
      resolve();
    }),
  );
}

beforeAll(async () => {
  env = await startEnv();
  await startFakeAnthropic(env.pki.serverCertPem, env.pki.serverKeyPem);
  await env.gw.tlsIngress(fakePort);
});
afterAll(async () => {
  fake?.closeAllConnections();
  fake?.close();
  await env?.close();
});

describe('undici fetch', () => {
  it('through the explicit proxy with ProxyAgent (CONNECT)', async () => {
    const dispatcher = new ProxyAgent({ uri: `http://127.0.0.1:${env.gw.proxyPort}`, requestTls: { ca: env.gw.ca.caCertPem } });
    const ok = await undiciFetch(`https://api.test:${env.api.port}/v1/items`, { dispatcher, headers: { authorization: `Bearer ${PLACEHOLDER}` } });
    expect(ok.status).toBe(200);
    expect((await ok.json()) as { url: string }).toMatchObject({ url: '/v1/items' });
    expect(env.api.seen.at(-1)!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    const denied = await undiciFetch(`https://api.test:${env.api.port}/admin`, { dispatcher, headers: { accept: 'application/json' } });
    expect(denied.status).toBe(403);
    expect(await denied.json()).toMatchObject({ rule: 'no-admin' });
    await dispatcher.close();
  });

  it('plain http:// through the same proxy (absolute-form)', async () => {
    const dispatcher = new ProxyAgent({ uri: `http://127.0.0.1:${env.gw.proxyPort}` });
    const ok = await undiciFetch(`http://plain.test:${env.plain.port}/v1/items`, { dispatcher });
    expect(ok.status).toBe(200);
    expect(env.plain.seen.at(-1)!.headers['authorization']).toBe(`Bearer ${CANARY}`);
    await dispatcher.close();
  });

  it('over HTTP/2 on the TLS ingress', async () => {
    const dispatcher = new Agent({ allowH2: true, connect: { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP) } });
    const r = await undiciFetch(`https://h2.test:${env.h2.port}/v1/items`, { dispatcher, method: 'POST', body: 'x=1' });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { httpVersion: string; body: string };
    // End to end in HTTP/2: agent → gateway and gateway → upstream.
    expect(body.httpVersion).toBe('2.0');
    expect(body.body).toBe('x=1');
    await dispatcher.close();
  });
});

describe('Anthropic SDK with baseURL', () => {
  function client(): Anthropic {
    const dispatcher = new Agent({ connect: { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP) } });
    return new Anthropic({
      apiKey: PLACEHOLDER,
      baseURL: `https://anthropic.test:${fakePort}`,
      maxRetries: 0,
      fetch: ((url: string, init?: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher })) as unknown as typeof fetch,
    });
  }

  it('messages.create: the placeholder is replaced with the vault key; the echoed key is scrubbed', async () => {
    const msg = await client().messages.create({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
    const seen = fakeSeen.at(-1)!;
    expect(seen.headers['x-api-key']).toBe(ANTHROPIC_CANARY);
    expect(JSON.stringify(seen.headers)).not.toContain(PLACEHOLDER);
    expect(msg.content[0]).toMatchObject({ type: 'text' });
    const text = (msg.content[0] as { text: string }).text;
    expect(text).toMatch(/^hello; you authenticated with \*+$/);
    expect(JSON.stringify(msg)).not.toContain(ANTHROPIC_CANARY);
  });

  it('streaming: events arrive and are scrubbed', async () => {
    const stream = client().messages.stream({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
    const deltas: string[] = [];
    stream.on('text', (t) => deltas.push(t));
    const final = await stream.finalMessage();
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toMatch(/^hello; you authenticated with \*+$/);
    expect(JSON.stringify(final)).not.toContain(ANTHROPIC_CANARY);
  });

  it('a denied request surfaces as PermissionDeniedError with the reason', async () => {
    const err = await client()
      .messages.create({ model: 'claude-forbidden', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermissionDeniedError);
    expect(String((err as Error).message)).toContain('that model is not allowed');
  });
});
