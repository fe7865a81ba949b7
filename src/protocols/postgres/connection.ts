/**
 * The socket adapter: one agent connection from accept to close.
 *
 *   startup   SSLRequest → TLS with a gateway-CA leaf for the endpoint host
 *             (or 'N'), GSSENCRequest → 'N', CancelRequest → mapped to the
 *             session it belongs to, StartupMessage → the session start
 *             resolves endpoint and credential (no rules: every statement
 *             is decided on its own) and is audited;
 *   login     the gateway logs in upstream with the vault password and
 *             answers the agent with AuthenticationOk, the server's
 *             parameters, its own BackendKeyData and ReadyForQuery;
 *   session   PostgresSession (sans-I/O) does the rest; this file only moves
 *             bytes, calls the enforcer, and applies backpressure.
 *
 * The agent never sends a password and never receives one: it is asked for
 * none, and the scrubber redacts the vault password from server bytes.
 */
import type { Socket } from 'node:net';
import { TLSSocket, createSecureContext } from 'node:tls';
import type { Action, Endpoint, Peer } from '../../policy/types.js';
import type { Enforcement, Enforcer } from '../../gateway/contracts.js';
import { postgresLogin } from '../../vault/inject.js';
import { scrubberFor, type Scrubber } from '../../vault/scrub.js';
import {
  SSL_ACCEPT,
  SSL_REFUSE,
  authenticationOk,
  backendKeyData,
  errorResponse,
  negotiateProtocolVersion,
  parameterStatus,
  readyForQuery,
} from './backend-messages.js';
import { CancelRegistry, defaultCancelRegistry } from './cancel.js';
import { FrontendDecoder, FrontendProtocolError, type StartupPacket } from './frontend-decoder.js';
import { AGENT_HIGH_WATER, PostgresSession } from './session.js';
import { initSqlParser } from './sql.js';
import { credentialMismatch, sessionStartAction, startupOptionsAction, type ActionContext } from './statements.js';
import { StartupRefused, optionsToSql, planStartup } from './startup-params.js';
import { cancelUpstream, loginUpstream, type UpstreamConnection, type UpstreamTarget } from './upstream.js';
import { UpstreamLoginError } from './upstream-login.js';
import { SQLSTATE, isAsciiUnsafeClientEncoding } from './wire.js';

/** The policy as the engine sees it (a CompiledPolicy satisfies it). */
export interface PostgresPolicyView {
  readonly model: { gateway: { limits: { bodyBuffer: number } }; endpoints: Map<string, Endpoint> };
  findEndpoint(host: string, port: number | undefined, profile?: string): Endpoint | null;
  needsFact(endpointId: string, fact: string): boolean;
}

/** Where the agent-side TLS certificate comes from (the gateway CA's `leaf`). */
export interface LeafProvider {
  leaf(host: string): Promise<{ certPem: string; keyPem: string }> | { certPem: string; keyPem: string };
}

export interface PostgresEngineDeps {
  enforcer: Enforcer;
  /** The policy in force now (called per connection and per oversized statement). */
  policy: () => PostgresPolicyView;
  /** Answer SSLRequest with TLS when set; 'N' otherwise. */
  ca?: LeafProvider | null;
  cancels?: CancelRegistry;
  /**
   * Every secret the vault may inject (`SecretResolver.allValues`): redacted
   * from what the agent receives besides the session's own password.
   */
  scrubValues?: () => string[];
  /** Upstream TCP/TLS connect timeout (default 10 s). */
  connectTimeoutMs?: number;
  /** The agent must finish its startup packets within this time (default 30 s). */
  startupTimeoutMs?: number;
  log?: (level: 'info' | 'warn', message: string, fields?: Record<string, unknown>) => void;
}

export interface PostgresConnectionContext extends PostgresEngineDeps {
  peer: Peer;
  /** The device's profile (the local listener's `gateway.local_profile`). */
  profile?: string;
  /** Endpoint id when the transport already knows it (VIP, `listen`). */
  endpointId?: string;
  dialedHost?: string;
  dialedIp?: string;
  dialedPort?: number;
  /** Bytes the transport already read from the socket (fed to the decoder first). */
  initial?: Buffer;
}

const UPSTREAM_DEFAULT_PORT = 5432;

function fatalBytes(code: string, message: string): Buffer {
  return errorResponse({ severity: 'FATAL', code, message });
}

/** The endpoint the agent is connecting to, for the TLS certificate (the session start then decides for real). */
function resolveEndpoint(ctx: PostgresConnectionContext): Endpoint | null {
  const policy = ctx.policy();
  if (ctx.endpointId) return policy.model.endpoints.get(ctx.endpointId) ?? null;
  const host = ctx.dialedHost ?? ctx.dialedIp;
  if (!host) return null;
  return policy.findEndpoint(host, ctx.dialedPort, ctx.profile);
}

/** Wait for the next startup-phase packet on `stream`. */
function nextStartupPacket(
  stream: Socket,
  decoder: FrontendDecoder,
  deadline: number,
): Promise<{ packet: StartupPacket; raw: Buffer } | null> {
  const ready = decoder.next();
  if (ready?.kind === 'startup') return Promise.resolve({ packet: ready.packet, raw: ready.raw });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new FrontendProtocolError('timed out waiting for the startup packet')), Math.max(0, deadline - Date.now()));
    const finish = (err: Error | null, v?: { packet: StartupPacket; raw: Buffer } | null): void => {
      clearTimeout(timer);
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onEnd);
      stream.pause();
      if (err) reject(err);
      else resolve(v ?? null);
    };
    const onData = (d: Buffer): void => {
      decoder.push(d);
      try {
        const ev = decoder.next();
        if (ev?.kind === 'startup') finish(null, { packet: ev.packet, raw: ev.raw });
      } catch (err) {
        finish(err as Error);
      }
    };
    const onEnd = (): void => finish(null, null);
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onEnd);
    stream.resume();
  });
}

/**
 * TLS with the agent, or null when the agent did not complete the handshake
 * by `deadline`. The startup deadline covers the handshake too (PostgreSQL's
 * authentication_timeout does): an agent that is answered 'S' and then sends
 * nothing, or half a ClientHello, must not hold its socket for ever.
 */
async function upgradeToTls(socket: Socket, provider: LeafProvider, host: string, deadline: number): Promise<TLSSocket | null> {
  const leaf = await provider.leaf(host);
  const tls = new TLSSocket(socket, {
    isServer: true,
    secureContext: createSecureContext({ cert: leaf.certPem, key: leaf.keyPem }),
  });
  const done = await new Promise<boolean>((resolve, reject) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()));
    tls.once('secure', () => {
      clearTimeout(timer);
      resolve(true);
    });
    tls.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    tls.once('close', () => {
      clearTimeout(timer);
      reject(new Error('the agent closed the connection during the TLS handshake'));
    });
  });
  if (done) return tls;
  tls.on('error', () => {});
  tls.destroy();
  return null;
}

/**
 * Serve one agent connection. Resolves when the connection is over; never
 * rejects (every failure becomes a protocol-native error to the agent).
 */
export async function handlePostgresConnection(socket: Socket, ctx: PostgresConnectionContext): Promise<void> {
  socket.setNoDelay(true);
  socket.on('error', () => {
    /* handled through 'close' */
  });
  let agent: Socket = socket;
  const log = ctx.log ?? (() => {});
  const endWith = (bytes: Buffer | null): void => {
    if (bytes && agent.writable) agent.end(bytes);
    else agent.end();
    setTimeout(() => agent.destroy(), 5000).unref();
  };

  try {
    await initSqlParser();
    const endpoint = resolveEndpoint(ctx);
    const policy = ctx.policy();
    const decoder = new FrontendDecoder({ maxBuffered: policy.model.gateway.limits.bodyBuffer });
    if (ctx.initial) decoder.push(ctx.initial);
    const deadline = Date.now() + (ctx.startupTimeoutMs ?? 30_000);

    // ── startup packets ──
    let tls = false;
    let startup: { packet: Extract<StartupPacket, { type: 'Startup' }>; raw: Buffer } | null = null;
    while (!startup) {
      const next = await nextStartupPacket(agent, decoder, deadline);
      if (!next) return endWith(null);
      const p = next.packet;
      if (p.type === 'CancelRequest') {
        (ctx.cancels ?? defaultCancelRegistry).cancel(p.processId, p.secretKey, ctx.peer.id);
        return endWith(null);
      }
      if (p.type === 'SSLRequest' || p.type === 'GSSENCRequest') {
        if (decoder.bufferedBytes > 0) {
          // Bytes sent before the encryption answer would be read as if they came through TLS.
          return endWith(fatalBytes(SQLSTATE.protocolViolation, 'received unencrypted data after the SSL request'));
        }
        if (p.type === 'SSLRequest' && !tls && ctx.ca && endpoint) {
          agent.write(SSL_ACCEPT);
          const secured = await upgradeToTls(agent, ctx.ca, endpoint.hosts[0]?.host ?? ctx.dialedHost ?? 'localhost', deadline);
          if (!secured) return; // mid-handshake: there is no way left to send the agent an error
          agent = secured;
          agent.on('error', () => {});
          tls = true;
        } else {
          if (p.type === 'SSLRequest' && tls) {
            return endWith(fatalBytes(SQLSTATE.protocolViolation, 'SSL request inside an SSL connection'));
          }
          agent.write(SSL_REFUSE);
        }
        continue;
      }
      startup = { packet: p, raw: next.raw };
    }

    let plan;
    try {
      plan = planStartup(startup.packet.params);
    } catch (err) {
      if (err instanceof StartupRefused) return endWith(fatalBytes(err.code, err.message));
      throw err;
    }
    await serveSession(agent, decoder, ctx, plan, startup, tls, log);
  } catch (err) {
    if (err instanceof FrontendProtocolError) return endWith(fatalBytes(SQLSTATE.protocolViolation, err.message));
    log('warn', 'postgres connection failed', { error: err instanceof Error ? err.message : String(err) });
    endWith(fatalBytes(SQLSTATE.internalError, 'internal error in the gateway'));
  }
}

/** Where an endpoint's server is (its first host pattern). */
function upstreamTarget(endpoint: Endpoint, ctx: PostgresConnectionContext): UpstreamTarget {
  const hostPattern = endpoint.hosts[0];
  return {
    host: hostPattern?.host ?? 'localhost',
    port: hostPattern?.port ?? UPSTREAM_DEFAULT_PORT,
    sslmode: endpoint.sslmode ?? 'prefer',
    ...(endpoint.caCert ? { caCert: endpoint.caCert } : {}),
    ...(ctx.connectTimeoutMs ? { connectTimeoutMs: ctx.connectTimeoutMs } : {}),
  };
}

/**
 * What the session start is about: the endpoint the transport named, else
 * the address the agent dialed (the policy looks the endpoint up by host).
 */
function sessionStartContext(ctx: PostgresConnectionContext, plan: ReturnType<typeof planStartup>): ActionContext {
  const known = ctx.endpointId ? ctx.policy().model.endpoints.get(ctx.endpointId) : undefined;
  const target = known ? upstreamTarget(known, ctx) : null;
  return {
    endpointId: ctx.endpointId ?? '',
    host: target?.host ?? ctx.dialedHost ?? ctx.dialedIp ?? '',
    port: target?.port ?? ctx.dialedPort ?? UPSTREAM_DEFAULT_PORT,
    ...(ctx.profile !== undefined ? { profile: ctx.profile } : {}),
    peer: ctx.peer,
    user: plan.user,
    database: plan.database ?? known?.database ?? '',
  };
}

async function serveSession(
  agent: Socket,
  decoder: FrontendDecoder,
  ctx: PostgresConnectionContext,
  plan: ReturnType<typeof planStartup>,
  startup: { packet: Extract<StartupPacket, { type: 'Startup' }>; raw: Buffer },
  agentTls: boolean,
  log: NonNullable<PostgresEngineDeps['log']>,
): Promise<void> {
  const actx = sessionStartContext(ctx, plan);
  const abort = new AbortController();
  let agentGone = false;
  const onEarlyClose = (): void => {
    agentGone = true;
    abort.abort();
  };
  agent.once('close', onEarlyClose);
  const endWith = (bytes: Buffer | null): void => {
    agent.off('close', onEarlyClose);
    if (bytes && agent.writable) agent.end(bytes);
    else agent.end();
    setTimeout(() => agent.destroy(), 5000).unref();
  };

  // ── the session start resolves endpoint and credential (no rules) and is audited on its own ──
  const connectEnf = await ctx.enforcer.enforce(sessionStartAction(actx), abort.signal);
  if (agentGone) {
    connectEnf.finish({ bytesIn: startup.raw.length, status: 'closed' });
    return;
  }
  /** End the login with this error; the session start's audit record carries it. */
  const refuseWith = (reply: Buffer, status: string): void => {
    connectEnf.finish({ bytesIn: startup.raw.length, bytesOut: reply.length, status });
    endWith(reply);
  };
  const refuse = (code: string, message: string): void => refuseWith(fatalBytes(code, message), code);
  const decided = connectEnf.decision;
  if (!connectEnf.allowed) {
    return refuse(decided.endpoint ? SQLSTATE.insufficientPrivilege : SQLSTATE.invalidAuthorization, connectEnf.reason || 'connection denied by policy');
  }
  const endpoint = decided.endpoint ? ctx.policy().model.endpoints.get(decided.endpoint) : undefined;
  if (!endpoint || endpoint.type !== 'postgres') {
    // An unknown host the policy would pass through: the tunnel relays those before
    // they reach an engine; this engine only speaks for postgres endpoints.
    const what = ctx.endpointId ?? ctx.dialedHost ?? ctx.dialedIp ?? 'this address';
    return refuse(SQLSTATE.invalidAuthorization, `no postgres endpoint for ${what} in profile "${ctx.profile ?? '(any)'}"`);
  }
  const target = upstreamTarget(endpoint, ctx);
  actx.endpointId = endpoint.id;
  actx.host = target.host;
  actx.port = target.port;
  const credentialId = decided.credential;
  if (credentialId !== null) actx.credential = credentialId;
  actx.loggedIn = true;
  const login = connectEnf.material ? postgresLogin(connectEnf.material, plan.user) : { user: plan.user, password: null };
  const database = plan.database ?? endpoint.database ?? connectEnf.material?.credential.database ?? login.user;
  actx.database = database;
  const toScrub = [...(ctx.scrubValues?.() ?? []), ...(login.password ? [login.password] : [])];
  const scrubber: Scrubber | null = toScrub.length > 0 ? scrubberFor(toScrub) : null;

  // ── startup `options` only when a rule allows the SET statements they amount to ──
  const extra = [...plan.forward];
  if (plan.options !== undefined) {
    let sql: string;
    try {
      sql = optionsToSql(plan.options);
    } catch (err) {
      const e = err as StartupRefused;
      return refuse(e.code ?? SQLSTATE.featureNotSupported, e.message);
    }
    const optEnf = await ctx.enforcer.enforce(startupOptionsAction(actx, sql), abort.signal);
    const mismatch = optEnf.allowed ? credentialMismatch(optEnf, credentialId) : null;
    if (!optEnf.allowed || mismatch || agentGone) {
      const reply = fatalBytes(SQLSTATE.insufficientPrivilege, `startup options (${sql}) refused: ${mismatch ?? optEnf.reason}`);
      optEnf.finish({ bytesIn: 0, bytesOut: reply.length, status: SQLSTATE.insufficientPrivilege });
      return refuseWith(reply, SQLSTATE.insufficientPrivilege);
    }
    optEnf.finish({ status: 'ok' });
    extra.push(['options', plan.options]);
  }

  // ── log in upstream ──
  let up: UpstreamConnection;
  try {
    up = await loginUpstream(target, { user: login.user, password: login.password, database, extra }, abort.signal);
  } catch (err) {
    const e = err instanceof UpstreamLoginError ? err : new UpstreamLoginError(String(err), SQLSTATE.connectionFailure);
    const text = e.serverError ? e.serverError.message : e.message;
    const reply = errorResponse({
      severity: 'FATAL',
      code: e.serverError?.code ?? e.code,
      message: scrubber ? scrubber.scrubText(text) : text,
      detail: `the gateway could not log in to ${endpoint.id} as ${login.user}`,
    });
    log('warn', 'postgres upstream login failed', { endpoint: endpoint.id, error: e.message });
    return refuseWith(reply, e.serverError?.code ?? e.code);
  }
  const upstream = up.socket;
  upstream.on('error', () => {});
  if (agentGone) {
    upstream.destroy();
    connectEnf.finish({ bytesIn: startup.raw.length, status: 'closed' });
    return;
  }
  const params = new Map(up.parameters.map(([k, v]) => [k.toLowerCase(), v]));
  const unsafe =
    (params.get('standard_conforming_strings') ?? 'on') !== 'on'
      ? 'the server has standard_conforming_strings off'
      : isAsciiUnsafeClientEncoding(params.get('client_encoding') ?? 'UTF8')
        ? `the server uses client_encoding ${params.get('client_encoding')}`
        : null;
  if (unsafe) {
    upstream.destroy();
    return refuse(SQLSTATE.featureNotSupported, `${unsafe}; the gateway cannot inspect SQL the way the server would parse it`);
  }

  // ── answer the agent as its server ──
  const cancels = ctx.cancels ?? defaultCancelRegistry;
  let session: PostgresSession | null = null;
  let pendingAbort: AbortController | null = null;
  const key = cancels.register({
    peerId: ctx.peer.id,
    cancel: () => {
      // PostgreSQL cancels whatever it is running. Behind the gateway a pipeline can have a
      // statement running upstream and a later one waiting for its decision at the same
      // time: cancel both, else the running one goes on to its end.
      const heldForDecision = session?.cancelPending() ?? false;
      if (heldForDecision) pendingAbort?.abort();
      if ((!heldForDecision || session?.upstreamBusy) && up.backendKey) void cancelUpstream(target, up.backendKey);
    },
  });
  const hello: Buffer[] = [];
  if (startup.packet.minor > 0 || plan.protocolOptions.length > 0) hello.push(negotiateProtocolVersion(0, plan.protocolOptions));
  hello.push(authenticationOk());
  for (const [k, v] of up.parameters) hello.push(parameterStatus(k, v));
  hello.push(backendKeyData(key.processId, key.secretKey), ...up.notices, readyForQuery(up.txStatus));
  const helloBytes = Buffer.concat(hello);
  agent.write(helloBytes);
  connectEnf.finish({ bytesIn: startup.raw.length, bytesOut: helloBytes.length, status: 'ok' });
  log('info', 'postgres session started', { endpoint: endpoint.id, peer: ctx.peer.id, user: login.user, database, tls: agentTls, upstreamTls: up.tls });

  // ── the session ──
  await new Promise<void>((resolve) => {
    let closed = false;
    const policyNow = ctx.policy;
    const s = new PostgresSession(
      {
        ...actx,
        maxBuffered: policyNow().model.gateway.limits.bodyBuffer,
        credentialId,
        scrubber,
        txStatus: up.txStatus,
        clientEncoding: params.get('client_encoding') ?? 'UTF8',
        serverEncoding: params.get('server_encoding') ?? 'UTF8',
      },
      {
        toAgent: (data) => {
          if (!agent.write(data)) upstream.pause();
        },
        toUpstream: (data) => {
          if (!upstream.write(data)) agent.pause();
        },
        decide: (action: Action) => {
          // No approval needed (the common case): answered at once, no promise, no abort controller.
          let now: Enforcement | null | undefined;
          try {
            now = ctx.enforcer.enforceNow?.(action);
          } catch (err) {
            log('warn', 'enforcer failed', { error: err instanceof Error ? err.message : String(err) });
            queueMicrotask(() => corked(() => s.shutdown('enforcer failed')));
            return;
          }
          if (now) return now;
          const ac = new AbortController();
          pendingAbort = ac;
          ctx.enforcer.enforce(action, ac.signal).then(
            (enf: Enforcement) => {
              pendingAbort = null;
              corked(() => s.decided(enf));
              relieve();
            },
            (err: unknown) => {
              pendingAbort = null;
              log('warn', 'enforcer failed', { error: err instanceof Error ? err.message : String(err) });
              corked(() => s.shutdown('enforcer failed'));
            },
          );
        },
        close: () => {
          if (closed) return;
          closed = true;
          key.release();
          pendingAbort?.abort();
          agent.off('close', onEarlyClose);
          if (agent.writable) agent.end();
          if (upstream.writable) upstream.end();
          setTimeout(() => {
            agent.destroy();
            upstream.destroy();
          }, 2000).unref();
          resolve();
        },
      },
      decoder,
    );
    session = s;
    const corked = (fn: () => void): void => {
      agent.cork();
      upstream.cork();
      try {
        fn();
      } finally {
        agent.uncork();
        upstream.uncork();
      }
    };
    /** Resume reading the agent once its queued messages have drained. */
    const relieve = (): void => {
      if (s.queuedBytes < AGENT_HIGH_WATER && agent.isPaused() && upstream.writableLength < AGENT_HIGH_WATER) agent.resume();
    };
    agent.on('data', (d: Buffer) => {
      corked(() => s.fromAgent(d));
      if (s.queuedBytes >= AGENT_HIGH_WATER) agent.pause();
    });
    upstream.on('data', (d: Buffer) => {
      corked(() => s.fromUpstream(d));
      relieve();
    });
    upstream.on('drain', relieve);
    agent.on('drain', () => upstream.resume());
    agent.on('close', () => s.shutdown('the agent closed the connection'));
    upstream.on('close', () => {
      if (!s.isClosed) s.shutdown('the server closed the connection');
    });
    agent.on('end', () => s.shutdown('the agent closed the connection'));
    // Bytes the agent pipelined behind its StartupMessage.
    if (decoder.bufferedBytes > 0) corked(() => s.fromAgent(Buffer.alloc(0)));
    agent.resume();
    upstream.resume();
  });
}
