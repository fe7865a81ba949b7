/**
 * The composition root: `clawpatrol gateway <config>` builds every service
 * once and wires them into the single Action → Decision path.
 *
 *   policy watcher ─┐
 *   store → vault ──┼─► enforcer ─► engines (HTTPS, Postgres) ◄─ ingress (proxy, listen, WireGuard)
 *   approvals ──────┤
 *   audit ──────────┘
 *
 * Only what the file declares is started: a policy without `wireguard {}`
 * runs without root. `gateway {}` values are read once; a reload that changes
 * them is reported as needing a restart by the watcher.
 */
import type { PolicyModel, Endpoint, GatewayConfig } from '../policy/types.js';
import { PolicyWatcher, type CompiledPolicy } from '../policy/index.js';
import { openStoreFor, stateDirFor, type Store } from '../store/index.js';
import { openVault, openGatewayCa, type Vault, type GatewayCa } from '../vault/index.js';
import { AuditBacklogFullError, AuditLog, AUDIT_KEY_PURPOSE, createFactsRedactor } from '../audit/index.js';
import { createApprovalService, type ApprovalService } from '../approvals/index.js';
import { createHttpEngine, type HttpEngine } from '../protocols/http/index.js';
import { createPostgresEngine, type PostgresEngine } from '../protocols/postgres/index.js';
import { initSqlParser } from '../protocols/postgres/sql.js';
import { createEnforcer } from './enforcer.js';
import type { Enforcer } from './contracts.js';
import { controlTlsNames, ensureAdminToken, startControlServer, type ControlServer, type GatewayHealth } from './control-server.js';
import { policyDirectory } from './directory.js';
import { startWireguardTransport, type TransportLimits, type WireguardTransport } from '../net/transport.js';
import type { ConnectionEvent } from '../net/types.js';
import type { AuditSink } from './contracts.js';

export interface GatewayOptions {
  configPath: string;
  env?: NodeJS.ProcessEnv;
  log?: (line: string) => void;
  /** Test seams for services that cannot exist here (Slack, Anthropic) and upstream DNS. */
  wireguard?: { dnsUpstream?: string[]; dnsPort?: number; interfaceName?: string };
  slackApiUrl?: string;
  anthropicBaseUrl?: string;
  httpLookup?: import('node:net').LookupFunction;
}

/** One listening ingress, for the startup banner and tests. */
export interface Ingress {
  kind: 'control' | 'proxy' | 'endpoint' | 'wireguard';
  endpointId?: string;
  address: string;
}

export interface RunningGateway {
  controlUrl: string;
  ingress: Ingress[];
  policy(): CompiledPolicy;
  stateDir: string;
  ca: GatewayCa;
  vault: Vault;
  store: Store;
  audit: AuditLog;
  approvals: ApprovalService;
  enforcer: Enforcer;
  /** Present when the policy has a `wireguard {}` block. */
  wireguard: WireguardTransport | null;
  close(): Promise<void>;
}

export class GatewayConfigError extends Error {
  override name = 'GatewayConfigError';
}

/** A gateway needs at least one way in; `validate` only warns, `gateway` refuses. */
export function assertHasIngress(model: PolicyModel): void {
  const listening = [...model.endpoints.values()].some((e) => e.listen);
  if (!model.gateway.wireguard && !model.gateway.proxy && !listening) {
    throw new GatewayConfigError(
      'the gateway has no way in: add a `wireguard {}` or `proxy { listen = "127.0.0.1:3128" }` block to `gateway {}`, ' +
        'or `listen = "127.0.0.1:15432"` to an endpoint',
    );
  }
}

export async function startGateway(opts: GatewayOptions): Promise<RunningGateway> {
  const env = opts.env ?? process.env;
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const cleanups: Array<() => Promise<void> | void> = [];
  let closing = false;
  const closeAll = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        log(`gateway: shutdown step failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  };

  try {
    const watcher = await PolicyWatcher.start(opts.configPath, { log });
    cleanups.push(() => watcher.close());
    watcher.on('reload', () => log(`policy: reloaded ${opts.configPath}`));
    watcher.on('restart-needed', (message: string) => log(`policy: ${message}`));
    // The watcher already logs diagnostics of a rejected edit; nothing more to do here.
    watcher.on('invalid', () => {});

    const initial = watcher.current().model;
    assertHasIngress(initial);
    const gateway: GatewayConfig = initial.gateway;
    const currentModel = (): PolicyModel => watcher.current().model;

    const stateDir = stateDirFor(gateway, env);
    const store = await openStoreFor(gateway, env);
    cleanups.push(() => store.close());
    const vault = await openVault({ store, stateDir, model: currentModel, env, key: 'create' });
    cleanups.push(() => vault.close());
    const ca = await openGatewayCa(vault);

    const audit = new AuditLog({
      store,
      key: vault.subkey(AUDIT_KEY_PURPOSE),
      ...(gateway.actionsKeep ? { retention: gateway.actionsKeep } : {}),
      ...(gateway.auditBacklog !== undefined ? { maxQueued: gateway.auditBacklog } : {}),
      onError: (err) =>
        log(err instanceof AuditBacklogFullError ? `audit: ${err.message}` : `audit: write failed (records kept in memory, retrying): ${err.message}`),
    });
    // Registered before the engines' cleanups so it runs after them: drains every record.
    cleanups.push(() => audit.close());

    const approvals = createApprovalService({
      policy: currentModel,
      secrets: vault,
      log,
      ...(opts.slackApiUrl ? { slackApiUrl: opts.slackApiUrl } : {}),
      ...(opts.anthropicBaseUrl ? { anthropicBaseUrl: opts.anthropicBaseUrl } : {}),
    });
    cleanups.push(() => approvals.close());

    const enforcer = createEnforcer({
      policy: () => watcher.current(),
      secrets: vault,
      approvals: approvals.runner,
      audit,
      redactFacts: createFactsRedactor({ model: currentModel, secrets: vault }),
    });

    const adminToken = ensureAdminToken(stateDir);
    const control: ControlServer = await startControlServer({
      listen: gateway.dashboardListen,
      adminToken,
      routes: [approvals.route],
      health: () => auditHealth(audit),
      // TLS on the same port, leaves from the gateway CA: what `join`, `status`, `leave` and `run` talk to.
      tls: { secureContextFor: (host) => ca.secureContextFor(host), names: controlTlsNames(gateway.publicUrl) },
      log,
    });
    cleanups.push(() => control.close());
    const ingress: Ingress[] = [{ kind: 'control', address: control.url }];

    const http: HttpEngine = createHttpEngine({
      enforcer,
      policy: () => watcher.current(),
      secrets: vault,
      ca,
      audit,
      log,
      ...(opts.httpLookup ? { lookup: opts.httpLookup } : {}),
    });
    cleanups.push(() => http.close());

    await initSqlParser();
    const postgres: PostgresEngine = createPostgresEngine({
      enforcer,
      policy: () => watcher.current(),
      ca,
      scrubValues: () => vault.allValues(),
      log: (level, message, fields) => log(`postgres: ${level}: ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`),
    });
    cleanups.push(() => postgres.close());
    const engines = { http, postgres };

    if (gateway.proxy) {
      const proxy = await http.startHttpProxy({ listen: gateway.proxy.listen });
      ingress.push({ kind: 'proxy', address: formatAddress(proxy.address) });
    }
    for (const endpoint of initial.endpoints.values()) {
      if (!endpoint.listen) continue;
      ingress.push(await startEndpointIngress(endpoint, engines, gateway.localProfile));
    }

    let wireguard: WireguardTransport | null = null;
    if (gateway.wireguard) {
      wireguard = await startWireguardTransport({
        wireguard: gateway.wireguard,
        stateDir,
        kv: store.kv,
        directory: policyDirectory(() => watcher.current()),
        engines: {
          postgres: (socket, ctx) => postgres.handleConnection(socket, ctx),
          tls: (socket, ctx) => http.handleTlsConnection(socket, ctx),
          http: (socket, ctx) => http.handlePlainHttpConnection(socket, ctx),
        },
        ca: { certPem: ca.caCertPem, fingerprintSha256: ca.fingerprintSha256 },
        events: { onConnection: (event) => auditConnection(audit, event) },
        limits: transportLimits(gateway),
        log,
        ...(opts.wireguard?.dnsUpstream ? { dnsUpstream: opts.wireguard.dnsUpstream } : {}),
        ...(opts.wireguard?.dnsPort !== undefined ? { dnsPort: opts.wireguard.dnsPort } : {}),
        ...(opts.wireguard?.interfaceName ? { interfaceName: opts.wireguard.interfaceName } : {}),
      });
      const wg = wireguard;
      // Tunnel connections are handed to the engines: close the tunnel before them.
      cleanups.push(() => wg.close());
      control.mount(wg.route);
      ingress.push({ kind: 'wireguard', address: `udp ${gateway.wireguard.listenPort} (${wg.interfaceName} ${wg.gatewayAddress4})` });
      void wg.wireguardExited.then((why) => {
        if (!closing) log(`gateway: wireguard-go exited (${why}); the tunnel is down and agents have no network until restart`);
      });
    }

    for (const i of ingress) {
      log(`gateway: ${i.kind}${i.endpointId ? ` ${i.endpointId}` : ''} listening on ${i.address}`);
    }
    log(`gateway: CA fingerprint (SHA-256) ${ca.fingerprintSha256}`);

    return {
      controlUrl: control.url,
      ingress,
      policy: () => watcher.current(),
      stateDir,
      ca,
      vault,
      store,
      audit,
      approvals,
      enforcer,
      wireguard,
      close: async () => {
        closing = true;
        await closeAll();
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

async function startEndpointIngress(
  endpoint: Endpoint,
  engines: { http: HttpEngine; postgres: PostgresEngine },
  localProfile: string,
): Promise<Ingress> {
  const listen = endpoint.listen!;
  switch (endpoint.type) {
    case 'https': {
      const l = await engines.http.startEndpointListener({ endpointId: endpoint.id, listen });
      return { kind: 'endpoint', endpointId: endpoint.id, address: formatAddress(l.address) };
    }
    case 'postgres': {
      const l = await engines.postgres.startEndpointListener({ endpointId: endpoint.id, listen, profile: localProfile });
      return { kind: 'endpoint', endpointId: endpoint.id, address: formatAddress(l.address) };
    }
    default:
      throw new GatewayConfigError(
        `${endpoint.pos.file}:${endpoint.pos.line}:${endpoint.pos.col}: endpoint ${endpoint.id} has listen = "${listen}", ` +
          `but ${endpoint.type} endpoints cannot be served on a local listener yet`,
      );
  }
}

function formatAddress(a: import('node:net').AddressInfo | string): string {
  if (typeof a === 'string') return a;
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** Passthrough relays and refusals of the tunnel are actions too: one audit record each. */
function auditConnection(audit: AuditSink, e: ConnectionEvent): void {
  audit.append({
    time: e.time,
    peer: e.peer.id,
    profile: e.profile,
    endpoint: null,
    family: 'tcp',
    host: e.dialedHost ?? e.sni ?? e.dialedIp,
    facts: { tcp: { ip: e.dialedIp, port: e.dialedPort, ...(e.sni ? { sni: e.sni } : {}), ...(e.dialedHost ? { host: e.dialedHost } : {}) } },
    rule: '',
    verdict: e.outcome === 'relayed' ? 'allow' : 'deny',
    outcome: e.outcome === 'relayed' ? 'allow' : 'deny',
    reason: e.reason,
    mode: 'enforce',
    failClosed: false,
    credential: null,
    approvals: [],
    latencyMs: e.durationMs,
    bytesIn: e.bytesIn,
    bytesOut: e.bytesOut,
  });
}

/**
 * `/healthz`: unhealthy while the audit log refuses every action (its
 * backlog is full); healthy but with a problem named while writes fail and
 * records wait in memory.
 */
export function auditHealth(audit: Pick<AuditLog, 'stats' | 'unavailable'>): GatewayHealth {
  const refusal = audit.unavailable();
  if (refusal !== null) return { ok: false, problems: [refusal] };
  const st = audit.stats();
  if (!st.failing) return { ok: true, problems: [] };
  return {
    ok: true,
    problems: [`the audit log cannot write (${st.lastError ?? 'unknown error'}); ${st.queued} records wait in memory, and at ${st.backlogLimit} every action is denied`],
  };
}

/** The tunnel's per-device limits from `gateway { limits { … } }`; the transport's defaults where unset. */
export function transportLimits(gateway: Pick<GatewayConfig, 'limits'>): TransportLimits {
  const { connectionsPerDevice, wildcardNamesPerDevice } = gateway.limits;
  return {
    ...(connectionsPerDevice !== undefined ? { maxConnectionsPerDevice: connectionsPerDevice } : {}),
    ...(wildcardNamesPerDevice !== undefined ? { maxWildcardNamesPerDevice: wildcardNamesPerDevice } : {}),
  };
}
