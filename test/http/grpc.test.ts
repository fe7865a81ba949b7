/**
 * HTTP/2 end to end with gRPC (@grpc/grpc-js on both sides, TLS both hops):
 * unary and server-streaming calls pass with trailers intact and the token
 * injected; a denied method gets PERMISSION_DENIED with the policy's reason.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { CANARY, startEnv, type Env } from './support/env.js';
import { GATEWAY_IP, UPSTREAM_IP } from './support/gateway.js';
import { agentMetadata, bindThings, deleteAsAgent, getAsAgent, loadThings, thingsServer, type ThingsClient, type ThingsClientClass } from './support/grpc-things.js';

let env: Env;
let server: grpc.Server;
let port: number;
let Things: ThingsClientClass;
const seenAuth: string[] = [];

beforeAll(async () => {
  env = await startEnv();
  Things = loadThings(env.dir);
  server = thingsServer(Things, { servedBy: 'upstream', seenAuth });
  port = await bindThings(
    server,
    UPSTREAM_IP,
    grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(env.pki.serverCertPem), private_key: Buffer.from(env.pki.serverKeyPem) }]),
  );
  await env.gw.tlsIngress(port);
});
afterAll(async () => {
  server?.forceShutdown();
  await env?.close();
});

function client(): ThingsClient {
  return new Things(`${GATEWAY_IP}:${port}`, grpc.credentials.createSsl(Buffer.from(env.gw.ca.caCertPem)), {
    'grpc.ssl_target_name_override': 'h2.test',
    'grpc.default_authority': `h2.test:${port}`,
  });
}

describe('gRPC through the gateway', () => {
  it('unary call: token injected, reply scrubbed, trailers delivered', async () => {
    const c = client();
    const res = await getAsAgent(c, 'agent');
    expect(seenAuth.at(-1)).toBe(`Bearer ${CANARY}`);
    expect(res.message).toMatch(/^hello agent, token Bearer \*+$/);
    expect(res.trailers?.get('x-served-by')).toEqual(['upstream']);
    c.close();
  });

  it('server streaming passes every message', async () => {
    const c = client();
    const call = c['Watch']!({ name: 'x' }, agentMetadata()) as grpc.ClientReadableStream<{ message: string }>;
    const got: string[] = [];
    for await (const m of call) got.push(m.message);
    expect(got).toEqual(['event 0', 'event 1', 'event 2']);
    c.close();
  });

  it('a denied method returns PERMISSION_DENIED with the reason', async () => {
    const c = client();
    const err = await deleteAsAgent(c);
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(err.details).toContain('deleting things over gRPC is not allowed');
    c.close();
    const rec = await env.gw.audit.waitForRecord((r) => r.rule === 'no-grpc-delete');
    expect(rec).toMatchObject({ outcome: 'deny', status: '403' });
  });
});
