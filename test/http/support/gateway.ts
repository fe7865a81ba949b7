/**
 * A real gateway for HTTP tests: the policy loaded from HCL, the real vault
 * (secrets from CLAWPATROL_SECRET_* in a private env map), the real gateway
 * CA, the real enforcer, an in-memory audit sink, and the HTTP engine.
 *
 * Addresses: upstreams listen on 127.0.0.2, the gateway's TLS ingress on
 * 127.0.0.3 *at the same port*, so a client that resolves a test name to
 * 127.0.0.3 talks to the gateway exactly as it would to the real host, and
 * the gateway (whose `lookup` resolves test names to 127.0.0.2) reaches the
 * upstream on the port the client dialed.
 */
import net, { type LookupFunction } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPolicy, formatDiagnostic, type CompiledPolicy } from '../../../src/policy/index.js';
import { createEnforcer } from '../../../src/gateway/enforcer.js';
import type { ApprovalRunner, AuditRecordInput, AuditSink } from '../../../src/gateway/contracts.js';
import { openStore, type Store } from '../../../src/store/index.js';
import { openVault, openGatewayCa, type GatewayCa, type Vault } from '../../../src/vault/index.js';
import { createFactsRedactor } from '../../../src/audit/redact.js';
import { createHttpEngine, type HttpEngine, type TransportContext } from '../../../src/protocols/http/index.js';
import type { WebSocketFrameHook } from '../../../src/protocols/http/websocket.js';

export const UPSTREAM_IP = '127.0.0.2';
export const GATEWAY_IP = '127.0.0.3';

/** Resolve every name to one address (both lookup call shapes). */
export function lookupTo(address: string): LookupFunction {
  return ((hostname: string, options: unknown, callback?: unknown) => {
    const cb = (typeof options === 'function' ? options : callback) as (...args: unknown[]) => void;
    const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all;
    if (all) cb(null, [{ address, family: 4 }]);
    else cb(null, address, 4);
  }) as LookupFunction;
}

export class MemoryAudit implements AuditSink {
  records: AuditRecordInput[] = [];
  append(r: AuditRecordInput): void {
    this.records.push(r);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
  /** Wait until `n` records exist (finish may run just after the response). */
  async waitFor(n: number, ms = 3000): Promise<AuditRecordInput[]> {
    const until = Date.now() + ms;
    while (this.records.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    return this.records;
  }
  /** Wait for a record matching `pred` (the audit write follows the response). */
  async waitForRecord(pred: (r: AuditRecordInput) => boolean, ms = 3000): Promise<AuditRecordInput | undefined> {
    const until = Date.now() + ms;
    for (;;) {
      const hit = this.records.find(pred);
      if (hit || Date.now() > until) return hit;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Approvals for tests: the test decides each pending request by hand. */
export class ManualApprovals implements ApprovalRunner {
  pending: Array<{ host: string; path: string; resolve: (v: 'allow' | 'deny', reason?: string) => void }> = [];
  async run(action: import('../../../src/policy/types.js').Action): Promise<import('../../../src/gateway/contracts.js').ApprovalOutcome> {
    const [verdict, reason] = await new Promise<['allow' | 'deny', string | undefined]>((resolve) => {
      this.pending.push({ host: action.host, path: action.facts.http?.path ?? '', resolve: (v, r) => resolve([v, r]) });
    });
    return {
      verdict,
      reason: reason ?? (verdict === 'allow' ? 'approved by the test' : 'rejected by the test'),
      stages: [{ approver: 'builtin.dashboard', verdict, reason: 'test', decidedBy: 'test', durationMs: 1 }],
    };
  }
  async waitPending(n: number, ms = 3000): Promise<void> {
    const until = Date.now() + ms;
    while (this.pending.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    if (this.pending.length < n) throw new Error(`expected ${n} pending approvals, have ${this.pending.length}`);
  }
}

export interface TestGateway {
  engine: HttpEngine;
  policy: CompiledPolicy;
  ca: GatewayCa;
  vault: Vault;
  audit: MemoryAudit;
  approvals: ManualApprovals;
  logs: string[];
  proxyPort: number;
  /** Serve TLS ingress (like the tunnel transport) on GATEWAY_IP:port. */
  tlsIngress(port: number, ctx?: Partial<TransportContext>): Promise<void>;
  /** Serve plain-HTTP ingress on GATEWAY_IP:port. */
  plainIngress(port: number, ctx?: Partial<TransportContext>): Promise<void>;
  close(): Promise<void>;
}

export async function startTestGateway(opts: {
  dir: string;
  policy: string;
  env: Record<string, string>;
  frameHook?: WebSocketFrameHook;
  files?: Record<string, string>;
  bodyIdleTimeoutMs?: number;
}): Promise<TestGateway> {
  mkdirSync(opts.dir, { recursive: true });
  for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(opts.dir, name), text);
  const policyPath = join(opts.dir, 'policy.hcl');
  writeFileSync(policyPath, opts.policy);
  const loaded = await loadPolicy(policyPath);
  if (!loaded.ok) throw new Error(loaded.diagnostics.map(formatDiagnostic).join('\n'));
  const policy = loaded.policy;
  const stateDir = join(opts.dir, 'state');
  const store: Store = await openStore({ stateDir });
  const vault = await openVault({ store, stateDir, model: () => policy.model, env: opts.env, refreshMs: 0 });
  const ca = await openGatewayCa(vault);
  const audit = new MemoryAudit();
  const approvals = new ManualApprovals();
  const enforcer = createEnforcer({
    policy: () => policy,
    secrets: vault,
    approvals,
    audit,
    redactFacts: createFactsRedactor({ model: () => policy.model, secrets: vault }),
  });
  const logs: string[] = [];
  const engine = createHttpEngine({
    enforcer,
    policy: () => policy,
    secrets: vault,
    ca,
    lookup: lookupTo(UPSTREAM_IP),
    audit,
    log: (l) => logs.push(l),
    ...(opts.frameHook ? { onWebSocketFrame: opts.frameHook } : {}),
    bodyIdleTimeoutMs: opts.bodyIdleTimeoutMs,
  });
  const proxy = await engine.startHttpProxy({ listen: '127.0.0.1:0' });
  const servers: net.Server[] = [];
  const listen = async (port: number, handler: (s: net.Socket) => void) => {
    const server = net.createServer(handler);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, GATEWAY_IP, () => resolve());
    });
    servers.push(server);
  };
  const peer = { id: 'test-agent', name: 'test agent' };
  return {
    engine,
    policy,
    ca,
    vault,
    audit,
    approvals,
    logs,
    proxyPort: proxy.address.port,
    tlsIngress: (port, ctx = {}) =>
      // Like the tunnel transport: it knows the original destination (the upstream's address).
      listen(port, (s) => engine.handleTlsConnection(s, { peer, profile: 'agent', dialedIp: UPSTREAM_IP, dialedPort: port, ...ctx })),
    plainIngress: (port, ctx = {}) =>
      listen(port, (s) => engine.handlePlainHttpConnection(s, { peer, profile: 'agent', dialedPort: port, ...ctx })),
    async close() {
      for (const p of approvals.pending) p.resolve('deny');
      for (const s of servers) s.close();
      await engine.close();
      await store.close();
    },
  };
}
