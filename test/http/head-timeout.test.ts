/**
 * threats.md (slow clients): a request head has a deadline from its first
 * byte. A connection that idles first and then drips its head a byte at a
 * time gets 408 once the head has taken longer than the deadline — the idle
 * time before it does not reset or disarm the deadline — and the refusal
 * is audited.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { serveHttp1 } from '../../src/protocols/http/h1-server.js';
import type { ConnectionInfo, EngineCore } from '../../src/protocols/http/types.js';
import type { AuditRecordInput } from '../../src/gateway/contracts.js';

const HEAD_DEADLINE_MS = 400;
let server: net.Server | null = null;
afterEach(() => {
  server?.close();
  server = null;
});

/** The HTTP/1.1 server alone: a refusal before any request reaches the policy needs nothing else of the engine. */
async function start(records: AuditRecordInput[]): Promise<number> {
  const core = {
    log: () => {},
    sockets: new Set(),
    secrets: { allValues: () => [] },
    audit: { append: (r: AuditRecordInput) => records.push(r) },
  } as unknown as EngineCore;
  const conn = { peer: { id: 'slow-agent' }, profile: 'default', scheme: 'http', identity: null, endpointId: null } as unknown as ConnectionInfo;
  server = net.createServer((socket) => serveHttp1(core, socket, conn, { headersTimeoutMs: HEAD_DEADLINE_MS, keepAliveMs: 10_000 }));
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

describe('request head deadline', () => {
  it('an idle connection that then drips its head gets 408 one deadline after the first byte', async () => {
    const records: AuditRecordInput[] = [];
    const port = await start(records);
    const sock = net.connect(port, '127.0.0.1');
    let out = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (out += d));
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('error', () => {});
    await new Promise((r) => sock.once('connect', r));
    // Idle for longer than the head deadline: nothing is due yet, the keep-alive limit is what applies.
    await new Promise((r) => setTimeout(r, HEAD_DEADLINE_MS * 2));
    expect(out).toBe('');
    const head = 'GET /v1/items HTTP/1.1\r\nHost: api.test\r\nX-Slow: ' + 'a'.repeat(200) + '\r\n\r\n';
    const firstByte = Date.now();
    let sent = 0;
    const drip = setInterval(() => {
      if (sock.destroyed || sent >= head.length) return;
      sock.write(head[sent++]!);
    }, 20);
    await closed;
    clearInterval(drip);
    const tookMs = Date.now() - firstByte;
    expect(out).toMatch(/^HTTP\/1\.1 408 /);
    expect(out).toContain('request head not received in time');
    expect(sent).toBeLessThan(head.length); // refused mid-head, not answered
    expect(tookMs).toBeGreaterThanOrEqual(HEAD_DEADLINE_MS - 50);
    expect(records).toEqual([expect.objectContaining({ peer: 'slow-agent', status: '408', outcome: 'deny', reason: 'request head not received in time' })]);
  });
});
