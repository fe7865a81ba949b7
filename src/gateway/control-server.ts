/**
 * The gateway's control server on `gateway.dashboard_listen`: one HTTP
 * server that mounts the control routes (approvals queue, enrolment, Slack
 * interactivity, dashboard data). It owns only the cross-cutting parts:
 * admin-token authentication, bounded request bodies, JSON errors.
 *
 * The admin token lives in `<state_dir>/admin.token` (0600). CLIs on the
 * gateway host read it and send `Authorization: Bearer <token>`; routes see
 * `ctx.admin === true` only for that exact token.
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ControlRoute } from './contracts.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
const DEFAULT_MAX_BODY = 1024 * 1024;

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

export interface ControlServerOptions {
  /** `host:port`; port 0 picks a free port. */
  listen: string;
  adminToken: string;
  routes: ControlRoute[];
  maxBodyBytes?: number;
  log?: (line: string) => void;
}

export interface ControlServer {
  /** Base URL, e.g. `http://127.0.0.1:8080`. */
  url: string;
  server: Server;
  /** Add routes after start (engines that come up later). */
  mount(route: ControlRoute): void;
  close(): Promise<void>;
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

  const server = createServer((req, res) => {
    void handle(req, res);
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://control.invalid');
    const ctx = { url, admin: tokenMatches(req.headers.authorization, opts.adminToken), body: bodyReader(req, limit) };
    try {
      if (url.pathname === '/healthz') {
        sendJson(res, 200, { ok: true });
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

  const { host, port } = parseListen(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;

  return {
    url: `http://${urlHost}:${boundPort}`,
    server,
    mount(route) {
      routes.push(route);
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
