/**
 * The gateway's control server on `gateway.dashboard_listen`: one listener
 * that mounts the control routes (approvals queue, enrolment, Slack
 * interactivity, dashboard data). It owns only the cross-cutting parts:
 * admin-token authentication, bounded request bodies, JSON errors, and the
 * transport — plain HTTP and TLS on the same port.
 *
 * TLS is told apart from HTTP by the first byte a client sends (0x16, a TLS
 * handshake record), so `public_url` stays one URL: `clawpatrol join` fetches
 * the CA over it unauthenticated, pins its fingerprint, and sends everything
 * else over TLS verified against that CA alone. The certificate is a leaf of
 * the gateway CA for the SNI name when it is one of `tls.names` (public_url's
 * host), else for the address the client connected to — so a stranger's SNI
 * can never make the gateway mint certificates at will.
 *
 * The admin token lives in `<state_dir>/admin.token` (0600). CLIs on the
 * gateway host read it and send `Authorization: Bearer <token>`; routes see
 * `ctx.admin === true` only for that exact token. With TLS on, the token is
 * refused over plain HTTP from anywhere but loopback: it must not cross a
 * network in clear text.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, isIP, type Server, type Socket } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ControlRoute } from './contracts.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
const DEFAULT_MAX_BODY = 1024 * 1024;
/** A client that connects must send its first byte (request line or ClientHello) and finish a TLS handshake within this. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Connections idle this long are closed. */
const IDLE_TIMEOUT_MS = 120_000;
/** A request's headers must arrive within this, the whole request within REQUEST_TIMEOUT_MS (slow clients hold no socket for ever). */
const HEADERS_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 60_000;
const TLS_HANDSHAKE_RECORD = 0x16;

/** Read the admin token, creating it (0600) on first use. */
export function ensureAdminToken(stateDir: string): string {
  const path = join(stateDir, ADMIN_TOKEN_FILE);
  if (existsSync(path)) return readFileSync(path, 'utf8').trim();
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(32).toString('base64url');
  writeFileSync(path, token + '\n', { mode: 0o600, flag: 'wx' });
  return token;
}

/** Read an existing admin token; a clear error when the gateway never ran here. */
export function readAdminToken(stateDir: string): string {
  const path = join(stateDir, ADMIN_TOKEN_FILE);
  if (!existsSync(path)) {
    throw new Error(
      `no admin token at ${path} — start the gateway once (clawpatrol gateway <config>) or pass --token`,
    );
  }
  return readFileSync(path, 'utf8').trim();
}

export class BodyTooLargeError extends Error {
  constructor(limit: number) {
    super(`request body over ${limit} bytes`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function tokenMatches(header: string | undefined, token: string): boolean {
  if (!header) return false;
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!m?.[1]) return false;
  const given = Buffer.from(m[1]);
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

function bodyReader(req: IncomingMessage, limit: number): () => Promise<Buffer> {
  let cached: Promise<Buffer> | undefined;
  return () => {
    cached ??= new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let overflowed = false;
      req.on('data', (chunk: Buffer) => {
        if (overflowed) return; // keep draining so the 413 can still be written
        size += chunk.length;
        if (size > limit) {
          overflowed = true;
          chunks.length = 0;
          reject(new BodyTooLargeError(limit));
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
    return cached;
  };
}

export interface ControlTls {
  /** A TLS context whose certificate names `hostOrIp`, from the gateway CA (`GatewayCa.secureContextFor`). */
  secureContextFor(hostOrIp: string): Promise<SecureContext>;
  /** Host names clients may ask for by SNI (public_url's host); any other name gets the certificate of the address it dialed. */
  names?: string[];
}

export interface ControlServerOptions {
  /** `host:port`; port 0 picks a free port. */
  listen: string;
  adminToken: string;
  routes: ControlRoute[];
  /** Also speak TLS on the same port. Without it the server is plain HTTP only. */
  tls?: ControlTls;
  maxBodyBytes?: number;
  /** Time for a request's headers (default 20 s); a client slower than that gets 408 and is closed. */
  headersTimeoutMs?: number;
  /**
   * What `GET /healthz` reports (default: always healthy). Not `ok` → 503, for load balancers and
   * probes; the problems are shown only to a request with the admin token.
   */
  health?: () => GatewayHealth;
  log?: (line: string) => void;
}

/** The gateway's health: `ok` false when it refuses every action; `problems` say why, or what is degraded. */
export interface GatewayHealth {
  ok: boolean;
  problems: string[];
}

export interface ControlServer {
  /** Base URL for CLIs on this host, e.g. `http://127.0.0.1:8080` (the same port also speaks TLS when enabled). */
  url: string;
  /** The listening socket server. */
  server: Server;
  /** Add routes after start (engines that come up later). */
  mount(route: ControlRoute): void;
  close(): Promise<void>;
}

/** `::ffff:10.0.0.1` → `10.0.0.1`: the form a certificate's IP SAN and a client's URL use. */
function plainAddress(address: string | undefined): string | null {
  if (!address) return null;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped?.[1] ?? (isIP(address) ? address : null);
}

export function isLoopbackAddress(address: string | undefined): boolean {
  const a = plainAddress(address);
  return a !== null && (a === '::1' || /^127\./.test(a));
}

/** The SNI names the control server answers with their own certificate: `public_url`'s host when it is a name. */
export function controlTlsNames(publicUrl: string | undefined): string[] {
  if (!publicUrl) return [];
  try {
    const host = new URL(publicUrl).hostname.replace(/^\[|\]$/g, '');
    return host && !isIP(host) ? [host] : [];
  } catch {
    return [];
  }
}

function normaliseSni(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
  if (!m || m[1] === undefined || m[2] === undefined) {
    throw new Error(`invalid listen address "${listen}" (want host:port)`);
  }
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`invalid port in "${listen}"`);
  return { host: m[1] || '0.0.0.0', port };
}

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const routes = [...opts.routes];
  const limit = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const log = opts.log ?? (() => {});
  const tls = opts.tls;
  const sniNames = new Set((tls?.names ?? []).map(normaliseSni));

  // Never listens itself: the net listener below hands it each connection, plain or decrypted.
  const headersTimeout = opts.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
  const http = createHttpServer(
    { headersTimeout, requestTimeout: Math.max(REQUEST_TIMEOUT_MS, headersTimeout), connectionsCheckingInterval: Math.min(1000, headersTimeout) },
    (req, res) => {
      void handle(req, res);
    },
  );
  // 'listening' is what starts the server's checks of headersTimeout / requestTimeout on its
  // connections; this server gets its connections handed over, so it never emits it itself.
  http.emit('listening');

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://control.invalid');
    } catch {
      // A target like `//[` is no URL. This runs before any try below, and `handle` is not awaited:
      // a throw here was an unhandled rejection, which ends the gateway — for anyone who can connect.
      sendJson(res, 400, { error: 'invalid request target' });
      return;
    }
    const secure = req.socket instanceof TLSSocket;
    const admin = tokenMatches(req.headers.authorization, opts.adminToken);
    if (admin && tls && !secure && !isLoopbackAddress(req.socket.remoteAddress)) {
      sendJson(res, 403, {
        error: 'the admin token was sent in clear text over the network: use https:// (TLS on the same port) or run the command on the gateway host; consider the token exposed',
      });
      return;
    }
    const ctx = { url, admin, body: bodyReader(req, limit), secure };
    try {
      if (url.pathname === '/healthz') {
        const health = opts.health?.() ?? { ok: true, problems: [] };
        // The status is for anyone (load balancers, probes); what went wrong (a store's error text can
        // name hosts and paths) only for the admin token.
        sendJson(res, health.ok ? 200 : 503, admin && health.problems.length ? health : { ok: health.ok });
        return;
      }
      for (const route of routes) {
        if (await route(req, res, ctx)) return;
      }
      sendJson(res, 404, { error: `no such endpoint: ${req.method} ${url.pathname}` });
    } catch (err) {
      if (err instanceof BodyTooLargeError) {
        if (!res.headersSent) {
          // Do not keep reading an oversized body on a kept-alive connection.
          res.setHeader('connection', 'close');
          res.on('finish', () => req.socket.destroy());
          sendJson(res, 413, { error: err.message });
        }
        return;
      }
      log(`control: ${req.method} ${url.pathname} failed: ${err instanceof Error ? err.stack : String(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    }
  }

  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };

  /** Give the HTTP server a socket whose first bytes were already read (and put back). */
  const serveHttp = (s: Socket): void => {
    s.setTimeout(IDLE_TIMEOUT_MS, () => s.destroy());
    http.emit('connection', s);
    // The server consumes the socket's handle; what we read and put back still has to flow to it.
    s.resume();
  };

  const serveTls = async (raw: Socket, t: ControlTls): Promise<void> => {
    let byAddress: SecureContext;
    try {
      const local = plainAddress(raw.localAddress);
      if (!local) throw new Error(`no local address for ${String(raw.localAddress)}`);
      byAddress = await t.secureContextFor(local);
    } catch (err) {
      log(`control: no TLS certificate: ${err instanceof Error ? err.message : String(err)}`);
      raw.destroy();
      return;
    }
    if (raw.destroyed) return;
    const secured = new TLSSocket(raw, {
      isServer: true,
      secureContext: byAddress,
      ALPNProtocols: ['http/1.1'],
      SNICallback: (servername, cb) => {
        const name = normaliseSni(servername);
        if (!sniNames.has(name)) {
          cb(null, byAddress);
          return;
        }
        t.secureContextFor(name).then(
          (ctx) => cb(null, ctx),
          (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
        );
      },
    });
    track(secured);
    secured.on('error', () => secured.destroy());
    secured.once('secure', () => {
      raw.setTimeout(0);
      serveHttp(secured);
    });
  };

  const listener = createNetServer((socket) => {
    track(socket);
    socket.on('error', () => socket.destroy());
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (tls && first[0] === TLS_HANDSHAKE_RECORD) {
        void serveTls(socket, tls);
        return;
      }
      socket.setTimeout(0);
      serveHttp(socket);
    });
  });

  const { host, port } = parseListen(opts.listen);
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(port, host, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  const addr = listener.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;

  return {
    url: `http://${urlHost}:${boundPort}`,
    server: listener,
    mount(route) {
      routes.push(route);
    },
    close() {
      return new Promise((resolve) => {
        listener.close(() => resolve());
        // Stops the timeout checks; the error (it was never listening) is expected.
        http.close(() => {});
        for (const s of sockets) s.destroy();
      });
    },
  };
}
