/**
 * Attackers on the path between `clawpatrol join` and the gateway, for the
 * control-API attack tests:
 *
 * - `startWiretap`: a passive TCP relay that records every byte both ways
 *   (what anyone on the network sees);
 * - `startFakeGateway`: a control server that is not the gateway — it serves
 *   whatever CA it likes on `/api/enrol/ca` and terminates TLS with its own
 *   CA, recording every request that reaches it.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { startControlServer, sendJson, type ControlServer } from '../../../src/gateway/control-server.js';
import type { GatewayCa } from '../../../src/vault/index.js';

export interface Wiretap {
  port: number;
  /** Everything that crossed the wire so far, both directions. */
  captured(): Buffer;
  close(): Promise<void>;
}

export async function startWiretap(target: { host: string; port: number }): Promise<Wiretap> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (d: Buffer) => {
      chunks.push(Buffer.from(d));
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      chunks.push(Buffer.from(d));
      client.write(d);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    captured: () => Buffer.concat(chunks),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface FakeGateway {
  port: number;
  url: string;
  /** `METHOD path secure? body` of every request that reached it. */
  requests: Array<{ method: string; path: string; secure: boolean; body: string; authorization?: string }>;
  close(): Promise<void>;
}

/** A control server that serves `servedCaPem` as "the gateway CA" and, with `tlsCa`, speaks TLS with leaves of that CA. */
export async function startFakeGateway(opts: { servedCaPem: string; servedFingerprint: string; tlsCa?: GatewayCa }): Promise<FakeGateway> {
  const requests: FakeGateway['requests'] = [];
  const server: ControlServer = await startControlServer({
    listen: '127.0.0.1:0',
    adminToken: 'not-the-gateway',
    ...(opts.tlsCa ? { tls: { secureContextFor: (h: string) => opts.tlsCa!.secureContextFor(h) } } : {}),
    routes: [
      async (req, res, ctx) => {
        const body = (await ctx.body()).toString('utf8');
        requests.push({
          method: req.method ?? '',
          path: ctx.url.pathname,
          secure: ctx.secure === true,
          body,
          ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        });
        if (ctx.url.pathname === '/api/enrol/ca') sendJson(res, 200, { caPem: opts.servedCaPem, fingerprint: opts.servedFingerprint });
        else sendJson(res, 500, { error: 'the fake gateway only wanted to see what you send' });
        return true;
      },
    ],
  });
  const port = (server.server.address() as { port: number }).port;
  return { port, url: `http://127.0.0.1:${port}`, requests, close: () => server.close() };
}
