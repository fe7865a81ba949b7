/**
 * One shared setup for the end-to-end HTTP tests: test PKI for the upstreams,
 * the upstream servers, a gateway with a policy exercising every decision,
 * and small client helpers (curl, raw sockets).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { makeTestPki, type TestPki } from './certs.js';
import { startH1Upstream, startH2Upstream, type Upstream } from './upstreams.js';
import { GATEWAY_IP, UPSTREAM_IP, startTestGateway, type TestGateway } from './gateway.js';
import type { WebSocketFrameHook } from '../../../src/protocols/http/websocket.js';

/** The secret the vault injects; it must never appear in anything the agent receives. */
export const CANARY = 'sk-canary-7f3a9c2e5b1d4068a2f1';
export const ANTHROPIC_CANARY = 'sk-ant-canary-0c4d2b9e8f7a6135';
export const PLACEHOLDER = 'cp_ph_api';

export interface Env {
  dir: string;
  pki: TestPki;
  api: Upstream;
  h2: Upstream;
  /** Plain HTTP upstream (for plain ingress and absolute-form proxy requests). */
  plain: Upstream;
  /** Requires a client certificate (mTLS credential). */
  mtls: Upstream;
  gw: TestGateway;
  gatewayCaPath: string;
  close(): Promise<void>;
}

export function policyText(opts: { unknownHost?: 'passthrough' | 'deny'; bodyBuffer?: string; bodyIdleTimeout?: string; apiPort?: number } = {}): string {
  return `
schema_version = 1

gateway {
  local_profile = "agent"
  limits {
    body_buffer = "${opts.bodyBuffer ?? '64KiB'}"
${opts.bodyIdleTimeout ? `    body_idle_timeout = "${opts.bodyIdleTimeout}"\n` : ''}  }
  proxy {
    listen = "127.0.0.1:0"
  }
}

defaults {
  unknown_host = "${opts.unknownHost ?? 'passthrough'}"
}

endpoint "https" "api" {
  hosts   = ["api.test", "plain.test", "ws.test", "${UPSTREAM_IP}"]
  ca_cert = "<<file:upstream-ca.pem>>"
}

endpoint "https" "h2" {
  hosts   = ["h2.test"]
  ca_cert = "<<file:upstream-ca.pem>>"
}

endpoint "https" "anthropic" {
  hosts   = ["anthropic.test"]
  ca_cert = "<<file:upstream-ca.pem>>"
}

endpoint "https" "untrusted" {
  hosts = ["untrusted.test"]
}

endpoint "https" "mtls" {
  hosts   = ["mtls.test"]
  ca_cert = "<<file:upstream-ca.pem>>"
}

endpoint "https" "sidecar" {
  hosts   = ["sidecar.test:${opts.apiPort ?? 443}"]
  ca_cert = "<<file:upstream-ca.pem>>"
}

credential "bearer_token" "api" {
  endpoints = [https.api, https.h2, https.untrusted, https.sidecar]
}

credential "mtls_credential" "mtls" {
  endpoint = https.mtls
}

credential "anthropic_manual_key" "claude" {
  endpoint = https.anthropic
}

profile "agent" {
  credentials = [bearer_token.api, anthropic_manual_key.claude, mtls_credential.mtls]
}

rule "no-admin" {
  endpoints = [https.api, https.h2, https.sidecar]
  condition = "http.path.startsWith('/admin')"
  verdict   = "deny"
  reason    = "agents may not use the admin API"
}

rule "refunds-need-approval" {
  endpoint  = https.api
  condition = "http.method == 'POST' && http.path == '/v1/refunds'"
  approve   = [builtin.dashboard]
  reason    = "refunds need a person"
}

rule "no-big-transfers" {
  endpoint  = https.api
  condition = "http.method in ['POST', 'PUT'] && http.path == '/v1/transfers' && http.body_json.amount > 1000"
  verdict   = "deny"
  reason    = "transfers over 1000 are not allowed"
}

rule "no-delete-with-body-flag" {
  endpoint  = https.api
  condition = "http.method in ['GET', 'DELETE'] && http.path == '/v1/things' && http.body.contains('purge')"
  verdict   = "deny"
  reason    = "purge is not allowed"
}

rule "no-forbidden-model" {
  endpoint  = https.anthropic
  condition = "has(http.body_json.model) && http.body_json.model == 'claude-forbidden'"
  verdict   = "deny"
  reason    = "that model is not allowed"
}

rule "no-grpc-delete" {
  endpoint  = https.h2
  condition = "http.path == '/test.Things/Delete'"
  verdict   = "deny"
  reason    = "deleting things over gRPC is not allowed"
}
`;
}

export async function startEnv(
  opts: { unknownHost?: 'passthrough' | 'deny'; bodyBuffer?: string; bodyIdleTimeout?: string; frameHook?: WebSocketFrameHook; bodyIdleTimeoutMs?: number } = {},
): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'clawpatrol-http-'));
  const pki = makeTestPki(
    dir,
    ['api.test', 'plain.test', 'ws.test', 'h2.test', 'anthropic.test', 'grpc.test', 'unknown.test', 'untrusted.test', 'mtls.test', 'sidecar.test'],
    [UPSTREAM_IP],
  );
  const api = await startH1Upstream({ host: UPSTREAM_IP, cert: pki.serverCertPem, key: pki.serverKeyPem });
  const h2 = await startH2Upstream({ host: UPSTREAM_IP, cert: pki.serverCertPem, key: pki.serverKeyPem });
  const plain = await startH1Upstream({ host: UPSTREAM_IP });
  const mtls = await startH1Upstream({ host: UPSTREAM_IP, cert: pki.serverCertPem, key: pki.serverKeyPem, requestCert: { ca: pki.caPem } });
  writeFileSync(join(dir, 'client.pem'), pki.clientCertPem);
  writeFileSync(join(dir, 'client.key'), pki.clientKeyPem);
  const gw = await startTestGateway({
    dir: join(dir, 'gw'),
    policy: policyText({ ...opts, apiPort: api.port }),
    env: {
      CLAWPATROL_SECRET_API: CANARY,
      CLAWPATROL_SECRET_CLAUDE: ANTHROPIC_CANARY,
      CLAWPATROL_SECRET_MTLS_CERT: `@${join(dir, 'client.pem')}`,
      CLAWPATROL_SECRET_MTLS_KEY: `@${join(dir, 'client.key')}`,
    },
    files: { 'upstream-ca.pem': pki.caPem },
    ...(opts.frameHook ? { frameHook: opts.frameHook } : {}),
    ...(opts.bodyIdleTimeoutMs !== undefined ? { bodyIdleTimeoutMs: opts.bodyIdleTimeoutMs } : {}),
  });
  await gw.tlsIngress(api.port);
  await gw.tlsIngress(h2.port);
  await gw.tlsIngress(mtls.port);
  await gw.plainIngress(plain.port);
  const gatewayCaPath = join(dir, 'gateway-ca.pem');
  writeFileSync(gatewayCaPath, gw.ca.caCertPem);
  return {
    dir,
    pki,
    api,
    h2,
    plain,
    mtls,
    gw,
    gatewayCaPath,
    async close() {
      api.releaseSse();
      h2.releaseSse();
      await gw.close();
      await Promise.all([api.close(), h2.close(), plain.close(), mtls.close()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface CurlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function curl(args: string[], timeoutMs = 15_000): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', String(timeoutMs / 1000), ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** curl options that send `name:port` to the gateway's TLS ingress and trust the gateway CA. */
export function viaTunnel(env: Env, name: string, port: number): string[] {
  return ['--cacert', env.gatewayCaPath, '--resolve', `${name}:${port}:${GATEWAY_IP}`];
}

/** Send raw bytes to a socket and collect everything until it closes (or the timeout). */
export function rawExchange(connect: () => net.Socket | tls.TLSSocket, bytes: Buffer | string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect();
    let out = '';
    const done = () => {
      clearTimeout(timer);
      resolve(out);
    };
    const timer = setTimeout(() => {
      s.destroy();
      done();
    }, timeoutMs);
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      out += d;
    });
    s.on('close', done);
    s.on('error', () => undefined);
    const send = () => s.write(bytes);
    if (s instanceof tls.TLSSocket) s.once('secureConnect', send);
    else s.once('connect', send);
  });
}

/** A TLS socket to the gateway's ingress for `name` at `port` (trusting the gateway CA). */
export function tlsToGateway(env: Env, name: string, port: number, extra: tls.ConnectionOptions = {}): tls.TLSSocket {
  return tls.connect({ host: GATEWAY_IP, port, servername: name, ca: env.gw.ca.caCertPem, ALPNProtocols: ['http/1.1'], ...extra });
}
