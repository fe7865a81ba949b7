/**
 * The gateway under test (its own process): the real policy loader, vault,
 * gateway CA, enforcer, hash-chained audit log in SQLite, and the HTTP
 * engine with a TLS ingress (as the tunnel transport feeds it) and the
 * explicit proxy listener.
 *
 *   node --import tsx bench/http/gateway.ts <dir> <upstream-ip> <ingress-ip> <port> [<ingress-port>]
 * The TLS ingress listens on <ingress-ip>:<ingress-port> (default <port>; 0: any)
 * and treats every connection as dialed to <upstream-ip>:<port>.
 * Prints `{"proxyPort":…,"ingressPort":…,"caPath":…}` when ready.
 */
import net from 'node:net';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { lookupTo } from '../../test/http/support/gateway.js';
import type { AuditSink } from '../../src/gateway/contracts.js';

// With CLAWPATROL_BENCH_DIST=1 the gateway runs the compiled code in dist/
// (`npm run build` first), as `clawpatrol gateway` does; otherwise the
// TypeScript sources through tsx, whose transform adds a little work per
// closure created (esbuild's keepNames), so CPU per request reads higher.
const root = process.env['CLAWPATROL_BENCH_DIST'] === '1' ? '../../dist/src' : '../../src';
const { loadPolicy, formatDiagnostic } = (await import(`${root}/policy/index.js`)) as typeof import('../../src/policy/index.js');
const { createEnforcer } = (await import(`${root}/gateway/enforcer.js`)) as typeof import('../../src/gateway/enforcer.js');
const { AuditLog, createFactsRedactor } = (await import(`${root}/audit/index.js`)) as typeof import('../../src/audit/index.js');
const { openStore } = (await import(`${root}/store/index.js`)) as typeof import('../../src/store/index.js');
const { openVault, openGatewayCa } = (await import(`${root}/vault/index.js`)) as typeof import('../../src/vault/index.js');
const { createHttpEngine } = (await import(`${root}/protocols/http/index.js`)) as typeof import('../../src/protocols/http/index.js');

const [dir, upstreamIp, ingressIp, portText, ingressPortText] = process.argv.slice(2) as [string, string, string, string, string | undefined];
const port = Number(portText);
const ingressPort = ingressPortText === undefined ? port : Number(ingressPortText);

const loaded = await loadPolicy(join(dir, 'policy.hcl'));
if (!loaded.ok) {
  process.stderr.write(loaded.diagnostics.map(formatDiagnostic).join('\n') + '\n');
  process.exit(2);
}
const policy = loaded.policy;
const stateDir = join(dir, 'state');
const store = await openStore({ stateDir });
const vault = await openVault({ store, stateDir, model: () => policy.model, env: { CLAWPATROL_SECRET_BENCH: 'sk-bench-secret-0123456789abcdef' } });
const ca = await openGatewayCa(vault);
// CLAWPATROL_BENCH_AUDIT=off: records are dropped, to measure what the audit log costs per request.
const audit: AuditSink =
  process.env['CLAWPATROL_BENCH_AUDIT'] === 'off' ? { append: () => undefined, flush: async () => undefined, close: async () => undefined } : new AuditLog({ store });
const enforcer = createEnforcer({
  policy: () => policy,
  secrets: vault,
  approvals: { run: async () => ({ verdict: 'deny', reason: 'no approvals in the benchmark', stages: [] }) },
  audit,
  redactFacts: createFactsRedactor({ model: () => policy.model, secrets: vault }),
});
const lookup = lookupTo(upstreamIp);
const log = process.env['BENCH_LOG'] ? (l: string) => process.stderr.write(`gateway: ${l}\n`) : () => undefined;
const engine = createHttpEngine({ enforcer, policy: () => policy, secrets: vault, ca, lookup, log, audit });
const proxy = await engine.startHttpProxy({ listen: '127.0.0.1:0' });
const ingress = net.createServer((s) => {
  s.setNoDelay(true);
  engine.handleTlsConnection(s, { peer: { id: 'bench' }, profile: 'bench', dialedIp: upstreamIp, dialedPort: port });
});
await new Promise<void>((r) => ingress.listen(ingressPort, ingressIp, r));
const caPath = join(dir, 'gateway-ca.pem');
writeFileSync(caPath, ca.caCertPem);
process.stdout.write(JSON.stringify({ proxyPort: proxy.address.port, ingressPort: (ingress.address() as net.AddressInfo).port, caPath }) + '\n');
process.on('SIGTERM', () => {
  void audit.close().finally(() => process.exit(0));
});
