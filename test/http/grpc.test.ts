/**
 * HTTP/2 end to end with gRPC (@grpc/grpc-js on both sides, TLS both hops):
 * unary and server-streaming calls pass with trailers intact and the token
 * injected; a denied method gets PERMISSION_DENIED with the policy's reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { CANARY, PLACEHOLDER, startEnv, type Env } from './support/env.js';
import { GATEWAY_IP, UPSTREAM_IP } from './support/gateway.js';

const PROTO = `
syntax = "proto3";
package test;
message Req { string name = 1; }
message Res { string message = 1; }
service Things {
  rpc Get (Req) returns (Res);
  rpc Delete (Req) returns (Res);
  rpc Watch (Req) returns (stream Res);
}
`;

let env: Env;
let server: grpc.Server;
let port: number;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let Things: any;
const seenAuth: string[] = [];

beforeAll(async () => {
  env = await startEnv();
  const protoPath = join(env.dir, 'things.proto');
  writeFileSync(protoPath, PROTO);
  const def = protoLoader.loadSync(protoPath, { keepCase: true });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  Things = (grpc.loadPackageDefinition(def) as any).test.Things;
  server = new grpc.Server();
  const auth = (call: { metadata: grpc.Metadata }) => String(call.metadata.get('authorization')[0] ?? '');
  server.addService(Things.service, {
    Get: (call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      seenAuth.push(auth(call));
      const trailer = new grpc.Metadata();
      trailer.set('x-served-by', 'upstream');
      cb(null, { message: `hello ${call.request.name}, token ${auth(call)}` }, trailer);
    },
    Delete: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { message: 'deleted!' }),
    Watch: (call: grpc.ServerWritableStream<{ name: string }, unknown>) => {
      for (let i = 0; i < 3; i++) call.write({ message: `event ${i}` });
      call.end();
    },
  });
  port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${UPSTREAM_IP}:0`,
      grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(env.pki.serverCertPem), private_key: Buffer.from(env.pki.serverKeyPem) }]),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  await env.gw.tlsIngress(port);
});
afterAll(async () => {
  server?.forceShutdown();
  await env?.close();
});

function client(): grpc.Client & Record<string, (...a: unknown[]) => unknown> {
  return new Things(`${GATEWAY_IP}:${port}`, grpc.credentials.createSsl(Buffer.from(env.gw.ca.caCertPem)), {
    'grpc.ssl_target_name_override': 'h2.test',
    'grpc.default_authority': `h2.test:${port}`,
  });
}

function meta(): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${PLACEHOLDER}`);
  return m;
}

describe('gRPC through the gateway', () => {
  it('unary call: token injected, reply scrubbed, trailers delivered', async () => {
    const c = client();
    let trailers: grpc.Metadata | undefined;
    const res = await new Promise<{ message: string }>((resolve, reject) => {
      const call = c['Get']!({ name: 'agent' }, meta(), (err: Error | null, r: { message: string }) => (err ? reject(err) : resolve(r))) as grpc.ClientUnaryCall;
      call.on('status', (s: grpc.StatusObject) => {
        trailers = s.metadata;
      });
    });
    expect(seenAuth.at(-1)).toBe(`Bearer ${CANARY}`);
    expect(res.message).toMatch(/^hello agent, token Bearer \*+$/);
    await new Promise((r) => setTimeout(r, 20));
    expect(trailers?.get('x-served-by')).toEqual(['upstream']);
    c.close();
  });

  it('server streaming passes every message', async () => {
    const c = client();
    const call = c['Watch']!({ name: 'x' }, meta()) as grpc.ClientReadableStream<{ message: string }>;
    const got: string[] = [];
    for await (const m of call) got.push(m.message);
    expect(got).toEqual(['event 0', 'event 1', 'event 2']);
    c.close();
  });

  it('a denied method returns PERMISSION_DENIED with the reason', async () => {
    const c = client();
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      c['Delete']!({ name: 'x' }, meta(), (e: grpc.ServiceError) => resolve(e)),
    );
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toContain('deleting things over gRPC is not allowed');
    c.close();
    const rec = await env.gw.audit.waitForRecord((r) => r.rule === 'no-grpc-delete');
    expect(rec).toMatchObject({ outcome: 'deny', status: '403' });
  });
});
