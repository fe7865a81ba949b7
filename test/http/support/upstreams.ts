/**
 * Real local upstream servers (node:https, node:http2, ws) that speak the
 * real protocols, with routes that echo what they received — including the
 * injected secret, so tests can prove it never reaches the agent.
 */
import https from 'node:https';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import zlib from 'node:zlib';
import { WebSocketServer } from 'ws';

export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  httpVersion: string;
  /** Request trailers as received (name lower-cased by Node). */
  trailers?: Record<string, string | string[] | undefined>;
  /** False when the request ended without its end (an aborted HTTP/2 stream still ends the compat request). */
  complete?: boolean;
}

export interface Upstream {
  port: number;
  host: string;
  seen: SeenRequest[];
  /** Resolves the paused SSE stream's second event. */
  releaseSse(): void;
  close(): Promise<void>;
}

function authOf(h: http.IncomingHttpHeaders): string {
  return String(h['authorization'] ?? h['x-api-key'] ?? '');
}

/** The token part of the credential the gateway injected. */
function tokenOf(h: http.IncomingHttpHeaders): string {
  return authOf(h).replace(/^Bearer /, '');
}

type Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse, body: Buffer, up: { sse: Promise<void> }) => void;

const routes: Record<string, Handler> = {
  '/echo-secret': (req, res) => {
    const token = tokenOf(req.headers);
    res.setHeader('x-echo-auth', authOf(req.headers));
    res.setHeader('set-cookie', ['session=abc; HttpOnly', 'other=def']);
    res.setHeader('www-authenticate', `Bearer realm="api", error="invalid_token", token="${token}"`);
    res.setHeader('alt-svc', 'h3=":443"; ma=86400');
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ auth: authOf(req.headers), b64: Buffer.from(token).toString('base64'), hex: Buffer.from(token).toString('hex') }));
  },
  '/401': (req, res) => {
    res.statusCode = 401;
    res.setHeader('www-authenticate', 'Basic realm="api"');
    res.setHeader('content-type', 'text/html');
    res.end(`<html><body>Invalid credentials: ${tokenOf(req.headers)} was rejected</body></html>`);
  },
  '/split': (req, res) => {
    const token = tokenOf(req.headers);
    const half = Math.floor(token.length / 2);
    res.setHeader('content-type', 'text/plain');
    (res as http.ServerResponse).write(`token starts ${token.slice(0, half)}`);
    setTimeout(() => res.end(`${token.slice(half)} and ends\n`), 30);
  },
  '/sse': (_req, res, _body, up) => {
    res.setHeader('content-type', 'text/event-stream');
    res.setHeader('cache-control', 'no-cache');
    (res as http.ServerResponse).write('event: message\ndata: first\n\n');
    void up.sse.then(() => res.end('event: message\ndata: second\n\n'));
  },
  '/gzip': (_req, res) => {
    res.setHeader('content-encoding', 'gzip');
    res.setHeader('content-type', 'application/json');
    res.end(zlib.gzipSync('{"compressed":true}'));
  },
  '/big': (req, res) => {
    const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('n') ?? '1048576');
    res.setHeader('content-type', 'application/octet-stream');
    res.setHeader('content-length', String(n));
    res.end(Buffer.alloc(n, 0x78));
  },
  '/cookie-and-basic': (_req, res) => {
    res.setHeader('www-authenticate', 'Basic realm="files", charset="UTF-8"');
    res.setHeader('set-cookie', 'a=b');
    res.end('ok');
  },
};

function echo(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse, body: Buffer): void {
  res.setHeader('content-type', 'application/json');
  res.end(
    JSON.stringify({
      method: req.method,
      url: req.url,
      httpVersion: req.httpVersion,
      headers: req.headers,
      bodyLength: body.length,
      bodySha256: createHash('sha256').update(body).digest('hex'),
      body: body.length <= 4096 ? body.toString('utf8') : undefined,
    }),
  );
}

function makeHandler(seen: SeenRequest[], up: { sse: Promise<void> }) {
  return (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body, httpVersion: req.httpVersion, trailers: { ...req.trailers }, complete: req.complete && !req.aborted });
      const path = (req.url ?? '/').split('?')[0]!;
      const route = routes[path];
      if (route) route(req, res, body, up);
      else echo(req, res, body);
    });
  };
}

function control(): { up: { sse: Promise<void> }; release: () => void } {
  let release!: () => void;
  const sse = new Promise<void>((r) => {
    release = r;
  });
  return { up: { sse }, release };
}

/**
 * HTTPS/1.1 upstream (plain HTTP without `cert`) with a WebSocket echo at /ws
 * that first sends the token it received, to test scrubbing.
 */
export async function startH1Upstream(opts: { host: string; port?: number; cert?: string; key?: string; requestCert?: { ca: string } }): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const { up, release } = control();
  const server: http.Server = opts.cert
    ? https.createServer(
        {
          cert: opts.cert,
          key: opts.key,
          ...(opts.requestCert ? { requestCert: true, rejectUnauthorized: true, ca: opts.requestCert.ca } : {}),
        },
        makeHandler(seen, up),
      )
    : http.createServer(makeHandler(seen, up));
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: true });
  server.on('upgrade', (req, socket, head) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0), httpVersion: req.httpVersion });
    wss.handleUpgrade(req, socket, head, (ws) => {
      const token = tokenOf(req.headers);
      if (req.url === '/ws-split') {
        // The token split across two frames of one message, then a ping carrying it.
        const half = token.length >> 1;
        ws.send(`split: ${token.slice(0, half)}`, { fin: false });
        ws.send(`${token.slice(half)} end`, { fin: true });
        ws.ping(`ping ${token}`);
        return;
      }
      ws.send(`hello, your token is ${token}`);
      ws.on('message', (data, isBinary) => ws.send(isBinary ? (data as Buffer) : `echo: ${String(data)}`));
    });
  });
  return listening(server, opts, seen, release, () => {
    for (const c of wss.clients) c.terminate();
    server.closeAllConnections();
  });
}

/** Listen, then hand out the Upstream; `drop` cuts the connections still open when it closes. */
async function listening(server: http.Server | http2.Http2SecureServer, opts: { host: string; port?: number }, seen: SeenRequest[], release: () => void, drop: () => void): Promise<Upstream> {
  await new Promise<void>((r) => server.listen(opts.port ?? 0, opts.host, r));
  return {
    port: (server.address() as AddressInfo).port,
    host: opts.host,
    seen,
    releaseSse: release,
    close: () =>
      new Promise((r) => {
        drop();
        server.close(() => r());
      }),
  };
}

/** HTTP/2 (and 1.1) upstream; responses carry a trailer so end-to-end trailers can be checked. */
export async function startH2Upstream(opts: { host: string; port?: number; cert: string; key: string }): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const { up, release } = control();
  const handler = makeHandler(seen, up);
  const server = http2.createSecureServer({ cert: opts.cert, key: opts.key, allowHTTP1: true }, (req, res) => {
    if (req.httpVersion === '2.0') {
      res.addTrailers({ 'x-upstream-trailer': 'done' });
    }
    handler(req, res);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  return listening(server, opts, seen, release, () => {
    for (const s of sessions) s.destroy();
  });
}
