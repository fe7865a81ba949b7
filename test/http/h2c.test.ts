/**
 * HTTP/2 over cleartext with prior knowledge (h2c, RFC 9113 §3.3) on the
 * plain ingress paths, with real clients: gRPC with insecure credentials
 * (@grpc/grpc-js on both sides) and `curl --http2-prior-knowledge`. The same
 * rules decide, the same credential is injected, and upstream the gateway
 * speaks h2c to an origin that does, HTTP/1.1 to one that does not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { CANARY, PLACEHOLDER, curl, rawExchange, startEnv, type Env } from './support/env.js';
import { GATEWAY_IP, UPSTREAM_IP } from './support/gateway.js';
import { bindThings, deleteAsAgent, getAsAgent, loadThings, thingsServer, type ThingsClient, type ThingsClientClass } from './support/grpc-things.js';
import { H2_PREFACE, cleartextProtocol, servePlainHttp } from '../../src/protocols/http/plain-ingress.js';

interface SeenH2 {
  path: string;
  scheme: string;
  authority: string;
  authorization: string | undefined;
}

let env: Env;
let grpcServer: grpc.Server;
let grpcPort: number;
let Things: ThingsClientClass;
const grpcAuth: string[] = [];
let h2cOrigin: http2.Http2Server;
let h2cPort: number;
const h2cSeen: SeenH2[] = [];

beforeAll(async () => {
  env = await startEnv();
  Things = loadThings(env.dir);
  grpcServer = thingsServer(Things, { servedBy: 'h2c-upstream', seenAuth: grpcAuth });
  grpcPort = await bindThings(grpcServer, UPSTREAM_IP, grpc.ServerCredentials.createInsecure());
  await env.gw.plainIngress(grpcPort);

  // A plain HTTP/2 origin that echoes what it was sent, the token included (the gateway must scrub it).
  h2cOrigin = http2.createServer();
  h2cOrigin.on('stream', (stream, headers) => {
    const seen: SeenH2 = {
      path: String(headers[':path']),
      scheme: String(headers[':scheme']),
      authority: String(headers[':authority']),
      authorization: headers['authorization'] as string | undefined,
    };
    h2cSeen.push(seen);
    stream.respond({ ':status': 200, 'content-type': 'application/json' });
    stream.end(JSON.stringify({ ...seen, protocol: 'h2c' }));
  });
  await new Promise<void>((r) => h2cOrigin.listen(0, UPSTREAM_IP, r));
  h2cPort = (h2cOrigin.address() as AddressInfo).port;
  await env.gw.plainIngress(h2cPort);
});

afterAll(async () => {
  grpcServer?.forceShutdown();
  // The gateway first: its pooled h2c session to the origin would hold the origin's close.
  await env?.close();
  await new Promise<void>((r) => (h2cOrigin ? h2cOrigin.close(() => r()) : r()));
});

function grpcClient(): ThingsClient {
  return new Things(`${GATEWAY_IP}:${grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': `h2.test:${grpcPort}` });
}

describe('telling h2c from HTTP/1.1 by the first bytes', () => {
  it('the whole preface is h2; any HTTP/1.1 method parts ways at once; a strict prefix waits', () => {
    expect(cleartextProtocol(H2_PREFACE)).toBe('h2');
    expect(cleartextProtocol(Buffer.concat([H2_PREFACE, Buffer.from([0, 0, 0, 4])]))).toBe('h2');
    for (const m of ['GET', 'POST', 'PUT', 'PATCH', 'OPTIONS', 'CONNECT']) expect(cleartextProtocol(Buffer.from(`${m} / HTTP/1.1\r\n`)), m).toBe('h1');
    expect(cleartextProtocol(Buffer.from('P'))).toBe('more');
    expect(cleartextProtocol(H2_PREFACE.subarray(0, 23))).toBe('more');
    // An HTTP/1-looking "PRI" request that is not the preface is HTTP/1.1 (and refused by its parser).
    expect(cleartextProtocol(Buffer.from('PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n'))).toBe('h1');
  });
});

describe('gRPC with insecure credentials (h2c both hops)', () => {
  it('unary call: decided, token injected, reply scrubbed, trailers delivered', async () => {
    const c = grpcClient();
    const res = await getAsAgent(c, 'agent');
    expect(grpcAuth.at(-1)).toBe(`Bearer ${CANARY}`);
    expect(res.message).toMatch(/^hello agent, token Bearer \*+$/);
    expect(res.trailers?.get('x-served-by')).toEqual(['h2c-upstream']);
    c.close();
  });

  it('a denied method gets PERMISSION_DENIED with the reason and never reaches the upstream', async () => {
    const c = grpcClient();
    const before = grpcAuth.length;
    const err = await deleteAsAgent(c);
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toContain('deleting things over gRPC is not allowed');
    expect(grpcAuth.length).toBe(before);
    c.close();
    const rec = await env.gw.audit.waitForRecord((r) => r.rule === 'no-grpc-delete' && (r.facts as { http?: { host?: string } }).http?.host === 'h2.test');
    expect(rec).toMatchObject({ outcome: 'deny', status: '403' });
  });
});

describe('curl --http2-prior-knowledge on the plain ingress', () => {
  const h2c = (host: string, port: number, path: string, extra: string[] = []) =>
    curl(['--http2-prior-knowledge', '-i', '--resolve', `${host}:${port}:${GATEWAY_IP}`, ...extra, `http://${host}:${port}${path}`]);

  it('to an h2c origin: HTTP/2 both hops, :scheme http, token injected, echo scrubbed', async () => {
    const r = await h2c('h2.test', h2cPort, '/v1/items', ['-H', `Authorization: Bearer ${PLACEHOLDER}`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^HTTP\/2 200/);
    const seen = h2cSeen.at(-1)!;
    expect(seen).toMatchObject({ path: '/v1/items', scheme: 'http', authority: `h2.test:${h2cPort}`, authorization: `Bearer ${CANARY}` });
    expect(r.stdout).not.toContain(CANARY);
    expect(r.stdout).toContain('"protocol":"h2c"');
  });

  it('inside a CONNECT tunnel of the explicit proxy, too', async () => {
    const before = h2cSeen.length;
    const r = await curl(['--http2-prior-knowledge', '-i', '-p', '-x', `http://127.0.0.1:${env.gw.proxyPort}`, '-H', `Authorization: Bearer ${PLACEHOLDER}`, `http://h2.test:${h2cPort}/v1/tunnelled`]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/HTTP\/2 200/);
    expect(h2cSeen.slice(before)).toEqual([expect.objectContaining({ path: '/v1/tunnelled', scheme: 'http', authorization: `Bearer ${CANARY}` })]);
    expect(r.stdout).not.toContain(CANARY);
  });

  it('the same rules: a denied path is 403 with the reason, nothing sent', async () => {
    const before = h2cSeen.length;
    const r = await h2c('h2.test', h2cPort, '/admin/x');
    expect(r.stdout).toMatch(/^HTTP\/2 403/);
    expect(r.stdout).toContain('agents may not use the admin API');
    expect(h2cSeen.length).toBe(before);
  });

  it('to an HTTP/1.1-only origin: the agent keeps HTTP/2, the origin gets HTTP/1.1', async () => {
    const port = env.plain.port;
    for (let i = 0; i < 2; i++) {
      const before = env.plain.seen.length;
      const r = await h2c('plain.test', port, `/v1/items?n=${i}`, ['-H', `Authorization: Bearer ${PLACEHOLDER}`]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^HTTP\/2 200/);
      const seen = env.plain.seen.slice(before);
      expect(seen).toHaveLength(1);
      expect(seen[0]!.httpVersion).toBe('1.1');
      expect(seen[0]!.headers['authorization']).toBe(`Bearer ${CANARY}`);
      expect(r.stdout).not.toContain(CANARY);
    }
  });

  it('a preface that stops half-way is not served (no answer, nothing sent upstream); HTTP/1.1 still works on the plain ingress', async () => {
    const before = h2cSeen.length;
    const partial = await rawExchange(() => net.connect(h2cPort, GATEWAY_IP), H2_PREFACE.subarray(0, 10), 300);
    expect(partial).toBe('');
    expect(h2cSeen.length).toBe(before);
    const h1 = await curl(['-i', '--resolve', `plain.test:${env.plain.port}:${GATEWAY_IP}`, '-H', `Authorization: Bearer ${PLACEHOLDER}`, `http://plain.test:${env.plain.port}/v1/h1`]);
    expect(h1.stdout).toMatch(/^HTTP\/1\.1 200/);
  });
});

describe('a cleartext connection that stalls before saying which protocol it speaks', () => {
  /** A bare `servePlainHttp` on a real socket, with short timeouts; resolves with how long the gateway kept it open. */
  async function heldFor(send: Buffer | null, timeouts: { firstBytesMs: number; prefaceMs: number }): Promise<number> {
    const core = { sockets: new Set(), log: () => undefined } as unknown as Parameters<typeof servePlainHttp>[0];
    const conn = { peer: { id: 'stalling' }, profile: 'agent', scheme: 'http', identity: null, port: 80, endpointId: undefined, proxy: false } as unknown as Parameters<typeof servePlainHttp>[2];
    const server = net.createServer((s) => void servePlainHttp(core, s, conn, Buffer.alloc(0), timeouts));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      return await new Promise<number>((resolve) => {
        const started = performance.now();
        const c = net.connect((server.address() as AddressInfo).port, '127.0.0.1', () => {
          if (send) c.write(send);
        });
        c.on('error', () => undefined);
        c.on('close', () => resolve(performance.now() - started));
      });
    } finally {
      server.close();
    }
  }

  it('is closed after the first-bytes timeout when it sends nothing, and after the shorter preface timeout once a preface has started', async () => {
    const silent = await heldFor(null, { firstBytesMs: 300, prefaceMs: 5000 });
    expect(silent).toBeGreaterThanOrEqual(250);
    expect(silent).toBeLessThan(4000);
    const partial = await heldFor(H2_PREFACE.subarray(0, 10), { firstBytesMs: 5000, prefaceMs: 300 });
    expect(partial).toBeGreaterThanOrEqual(250);
    expect(partial).toBeLessThan(4000);
  });
});
