/**
 * threats.md class 14 — upgrades and streams: SSE is streamed (the first
 * event reaches the agent while the upstream is still writing), WebSocket
 * upgrades are decided, frames relayed through the hook, secrets scrubbed,
 * compression never negotiated.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import https from 'node:https';
import http2 from 'node:http2';
import tls from 'node:tls';
import WebSocket from 'ws';
import { CANARY, PLACEHOLDER, startEnv, type Env } from './support/env.js';
import { GATEWAY_IP, lookupTo } from './support/gateway.js';
import type { WsFrame } from '../../src/protocols/http/websocket.js';

let env: Env;
const frames: Array<{ direction: string; text: string }> = [];
beforeAll(async () => {
  env = await startEnv({
    frameHook: (frame: WsFrame & { direction: string }) => {
      const text = frame.payload.toString('utf8');
      frames.push({ direction: frame.direction, text });
      if (frame.direction === 'agent-to-upstream' && text.includes('rm -rf')) return { close: 'destructive command refused' };
      return undefined;
    },
  });
});
afterAll(async () => {
  await env?.close();
});

describe('SSE', () => {
  it('HTTP/1.1: the first event arrives before the upstream finishes', async () => {
    const events: string[] = [];
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      https
        .get(
          {
            host: 'api.test',
            port: env.api.port,
            path: '/sse',
            ca: env.gw.ca.caCertPem,
            lookup: lookupTo(GATEWAY_IP),
            headers: { accept: 'text/event-stream', authorization: `Bearer ${PLACEHOLDER}` },
          },
          resolve,
        )
        .on('error', reject);
    });
    expect(res.headers['content-type']).toBe('text/event-stream');
    res.setEncoding('utf8');
    const first = await new Promise<string>((resolve) => res.once('data', resolve));
    events.push(first);
    expect(first).toContain('data: first');
    // Only now let the upstream write the second event and finish.
    env.api.releaseSse();
    for await (const chunk of res) events.push(chunk as string);
    expect(events.join('')).toContain('data: second');
  });

  it('HTTP/2: the first event arrives before the upstream finishes', async () => {
    const session = http2.connect(`https://h2.test:${env.h2.port}`, { ca: env.gw.ca.caCertPem, lookup: lookupTo(GATEWAY_IP) } as http2.SecureClientSessionOptions);
    const stream = session.request({ ':path': '/sse', accept: 'text/event-stream' });
    stream.setEncoding('utf8');
    const first = await new Promise<string>((resolve) => stream.once('data', resolve));
    expect(first).toContain('data: first');
    env.h2.releaseSse();
    let rest = '';
    for await (const c of stream) rest += c as string;
    expect(rest).toContain('data: second');
    session.close();
  });
});

function openWs(path: string, extra: WebSocket.ClientOptions = {}): WebSocket {
  return new WebSocket(`wss://ws.test:${env.api.port}${path}`, {
    ca: env.gw.ca.caCertPem,
    lookup: lookupTo(GATEWAY_IP),
    headers: { authorization: `Bearer ${PLACEHOLDER}` },
    ...extra,
  } as WebSocket.ClientOptions);
}

describe('WebSocket', () => {
  it('the upgrade is decided and injected; frames flow both ways; the echoed secret is scrubbed; no compression', async () => {
    const ws = openWs('/ws');
    const got: string[] = [];
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => ws.send('ping from agent'));
      ws.on('message', (d) => {
        got.push(String(d));
        if (got.length === 2) resolve();
      });
      ws.on('error', reject);
    });
    expect(ws.extensions).toBe('');
    ws.close();
    expect(got[0]).toMatch(/^hello, your token is \*+$/);
    expect(got.join('')).not.toContain(CANARY);
    expect(got[1]).toBe('echo: ping from agent');
    const upgrade = env.api.seen.filter((s) => s.url === '/ws').at(-1)!;
    expect(upgrade.headers['authorization']).toBe(`Bearer ${CANARY}`);
    expect(upgrade.headers['sec-websocket-extensions']).toBeUndefined();
    expect(frames.some((f) => f.direction === 'agent-to-upstream' && f.text === 'ping from agent')).toBe(true);
    expect(frames.some((f) => f.direction === 'upstream-to-agent' && f.text === 'echo: ping from agent')).toBe(true);
    const rec = await env.gw.audit.waitForRecord((r) => r.status === '101');
    expect(rec).toMatchObject({ outcome: 'allow', endpoint: 'https.api' });
  });

  it('a secret split across two frames of one message is scrubbed; so is a ping carrying it', async () => {
    const ws = openWs('/ws-split');
    const [message, ping] = await Promise.all([
      new Promise<string>((resolve, reject) => {
        ws.on('message', (d) => resolve(String(d)));
        ws.on('error', reject);
      }),
      new Promise<string>((resolve) => ws.on('ping', (d) => resolve(String(d)))),
    ]);
    ws.close();
    expect(message).toBe(`split: ${'*'.repeat(CANARY.length)} end`);
    expect(ping).toBe(`ping ${'*'.repeat(CANARY.length)}`);
    // The upstream really did split it: each frame it sent held only part of the token.
    expect(env.api.seen.some((s) => s.url === '/ws-split' && s.headers['authorization'] === `Bearer ${CANARY}`)).toBe(true);
    const seenByHook = frames.filter((f) => f.direction === 'upstream-to-agent' && (f.text.startsWith('split: ') || f.text.endsWith(' end')));
    expect(seenByHook.map((f) => f.text).join('')).toBe(`split: ${'*'.repeat(CANARY.length)} end`);
  });

  it('a compressed (RSV1) frame from the agent cannot be inspected: the session closes with 1002', async () => {
    const sock = tls.connect({ host: GATEWAY_IP, port: env.api.port, servername: 'ws.test', ca: env.gw.ca.caCertPem, ALPNProtocols: ['http/1.1'] });
    await new Promise((r) => sock.once('secureConnect', r));
    sock.write(
      `GET /ws HTTP/1.1\r\nHost: ws.test:${env.api.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n`,
    );
    let got = Buffer.alloc(0);
    const closeCode = await new Promise<number>((resolve) => {
      sock.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        const headEnd = got.indexOf('\r\n\r\n');
        if (headEnd === -1) return;
        const head = got.subarray(0, headEnd).toString();
        if (!sentFrame) {
          expect(head).toMatch(/^HTTP\/1\.1 101 /);
          expect(head.toLowerCase()).not.toContain('sec-websocket-extensions');
          sentFrame = true;
          // FIN + RSV1 + text, masked, payload "hi" (deflate-looking garbage)
          const key = Buffer.from([1, 2, 3, 4]);
          const payload = Buffer.from('hi').map((b, i) => b ^ key[i % 4]!);
          sock.write(Buffer.concat([Buffer.from([0xc1, 0x82]), key, payload]));
        }
        // Look for a close frame (opcode 8) from the gateway after the upstream's greeting.
        let off = headEnd + 4;
        while (off + 2 <= got.length) {
          const op = got[off]! & 0x0f;
          const len = got[off + 1]! & 0x7f;
          if (op === 8 && off + 4 <= got.length) return resolve(got.readUInt16BE(off + 2));
          off += 2 + len;
        }
      });
      let sentFrame = false;
      sock.on('close', () => resolve(-1));
    });
    sock.destroy();
    expect(closeCode).toBe(1002);
  });

  it('the frame hook can end a session with 1008', async () => {
    const ws = openWs('/ws');
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
      ws.on('open', () => ws.send('please rm -rf /'));
      ws.on('close', (code, reason) => resolve({ code, reason: String(reason) }));
    });
    expect(closed).toEqual({ code: 1008, reason: 'destructive command refused' });
  });

  it('an upgrade the policy denies gets a 403 and never reaches the upstream', async () => {
    const before = env.api.seen.length;
    const ws = openWs('/admin/ws');
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => undefined);
    });
    expect(status).toBe(403);
    expect(env.api.seen.length).toBe(before);
  });
});
