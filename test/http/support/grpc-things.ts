/**
 * The gRPC service the HTTP/2 tests call through the gateway (grpc.test.ts
 * over TLS, h2c.test.ts in cleartext): @grpc/grpc-js on both sides, an
 * upstream that echoes the token it received (the gateway must scrub it) and
 * names itself in a trailer.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PLACEHOLDER } from './env.js';

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

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ThingsClientClass = any;
export type ThingsClient = grpc.Client & Record<string, (...a: unknown[]) => unknown>;

/** The Things client class, from the proto written into `dir`. */
export function loadThings(dir: string): ThingsClientClass {
  const protoPath = join(dir, 'things.proto');
  writeFileSync(protoPath, PROTO);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return (grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { keepCase: true })) as any).test.Things;
}

/**
 * A server for Things: `Get` records the authorization it received in
 * `seenAuth`, answers with it and sends the trailer `x-served-by: servedBy`;
 * `Delete` answers (the policy must stop it first); `Watch` streams three events.
 */
export function thingsServer(Things: ThingsClientClass, o: { servedBy: string; seenAuth: string[] }): grpc.Server {
  const server = new grpc.Server();
  server.addService(Things.service, {
    Get: (call: grpc.ServerUnaryCall<{ name: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const auth = String(call.metadata.get('authorization')[0] ?? '');
      o.seenAuth.push(auth);
      const trailer = new grpc.Metadata();
      trailer.set('x-served-by', o.servedBy);
      cb(null, { message: `hello ${call.request.name}, token ${auth}` }, trailer);
    },
    Delete: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { message: 'deleted!' }),
    Watch: (call: grpc.ServerWritableStream<{ name: string }, unknown>) => {
      for (let i = 0; i < 3; i++) call.write({ message: `event ${i}` });
      call.end();
    },
  });
  return server;
}

/** Bind `server` on `host` (any free port) and return the port. */
export function bindThings(server: grpc.Server, host: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(`${host}:0`, credentials, (err, port) => (err ? reject(err) : resolve(port))));
}

/** Call metadata with the agent's placeholder token. */
export function agentMetadata(): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${PLACEHOLDER}`);
  return m;
}

/** A unary `Get` as the agent: the reply, and the trailers once the status has arrived. */
export async function getAsAgent(c: ThingsClient, name: string): Promise<{ message: string; trailers: grpc.Metadata | undefined }> {
  let trailers: grpc.Metadata | undefined;
  const res = await new Promise<{ message: string }>((resolve, reject) => {
    const call = c['Get']!({ name }, agentMetadata(), (err: Error | null, r: { message: string }) => (err ? reject(err) : resolve(r))) as grpc.ClientUnaryCall;
    call.on('status', (s: grpc.StatusObject) => {
      trailers = s.metadata;
    });
  });
  // The status (with the trailers) can follow the reply by a moment.
  await new Promise((r) => setTimeout(r, 20));
  return { message: res.message, trailers };
}

/** A `Delete` as the agent, which the policy denies: the error it gets. */
export function deleteAsAgent(c: ThingsClient): Promise<grpc.ServiceError> {
  return new Promise((resolve) => c['Delete']!({ name: 'x' }, agentMetadata(), (e: grpc.ServiceError) => resolve(e)));
}
