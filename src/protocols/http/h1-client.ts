/**
 * The gateway's HTTP/1.1 client towards upstreams: pooled keep-alive
 * connections (TLS or TCP) that carry requests framed by the gateway and
 * responses read by the strict response parser (`Http1ResponseParser`).
 *
 * Why not node:http's client: measured on the benchmark (bench/http/README.md)
 * it costs about twice the CPU per small request of writing the request
 * ourselves, and it delivers a large body one 16 KiB TLS record per callback.
 * It also decides framing from the method: a GET or DELETE body of unknown
 * length was sent with no framing at all, so the upstream read the body as
 * the next request. Here the framing is always explicit — Content-Length when
 * the length is known, chunked otherwise, for every method — and a response
 * is read exactly one way, so a pooled connection cannot fall out of step.
 *
 * A connection goes back to the pool only when its response was read to the
 * end, the request was sent completely, and nothing follows the response.
 * A request without a body that finds its reused connection closed by the
 * upstream before any response byte (the keep-alive race) is retried once
 * on a new connection, if its method is idempotent.
 */
import net, { isIP, type LookupFunction } from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { Http1ResponseParser, isFieldValue, isToken, type ResponseHead } from './h1-parser.js';
import type { FieldList } from './headers.js';
import { drained } from './drain.js';

/** A response body as it arrives: each read returns everything received since the last one. */
export interface BodySource {
  /** One buffer with everything received so far, or null at the end. Rejects when the body is cut off. */
  read(): Promise<Buffer | null>;
  /** The consumer is gone: stop receiving. */
  destroy(): void;
}

export interface OutgoingBody {
  chunks: AsyncIterable<Buffer>;
  /** Sent as Content-Length when known; otherwise the body is chunked. */
  length: number | null;
  /** Trailer fields, asked for once the chunks are done (chunked bodies only); may throw to refuse the request. */
  trailers?: () => FieldList;
}

export interface H1Request {
  method: string;
  /** Origin-form target: path and query as they go on the request line. */
  path: string;
  /** Lower-case names, `host` included; framing fields are the client's business. */
  headers: Record<string, string | string[]>;
  body: OutgoingBody | null;
  /** A WebSocket handshake: a fresh connection, and a 101 hands the socket over. */
  upgrade?: boolean;
}

export interface H1Response {
  status: number;
  headers: FieldList;
  body: BodySource;
  /** Valid once the body has ended. */
  trailers(): FieldList;
  mayHaveTrailers: boolean;
  /** Settles once the request body has been sent (or failed). */
  bodySent: Promise<void>;
  /** A 101 to an upgrade request: the connection is no longer HTTP and belongs to the caller. */
  upgraded?: { socket: Duplex; head: Buffer };
}

export interface H1Origin {
  host: string;
  port: number;
  /** null: plain TCP. */
  tls: { key: string; context: tls.SecureContext } | null;
}

/** The upstream sent something that is not a valid response. */
export class UpstreamProtocolError extends Error {
  override name = 'UpstreamProtocolError';
}

/** The request cannot be written as HTTP/1.1 (a header value with CR/LF, a bad method or path). */
export class InvalidRequestError extends Error {
  override name = 'InvalidRequestError';
}

/** A reused connection closed before any response byte: the request may be sent again. */
class StaleConnectionError extends Error {}

const CRLF = '\r\n';
/** Response bytes held for a slow reader before the upstream socket is paused. */
const BODY_HIGH_WATER = 256 * 1024;
/** Idle pooled connections are closed after this long (upstreams close theirs after 5–120 s). */
const IDLE_MS = 30_000;
const MAX_CONNECTIONS_PER_ORIGIN = 256;
const MAX_IDLE_PER_ORIGIN = 64;
const MAX_TLS_SESSIONS = 256;
/** How long a connection whose response came before the end of its request waits for the request to finish. */
const EARLY_RESPONSE_GRACE_MS = 5_000;
/** Methods that may be sent again after a keep-alive race (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Bodiless requests that still announce their (empty) length, as servers expect (411 otherwise). */
const LENGTH_EXPECTED = new Set(['POST', 'PUT', 'PATCH']);
/** Request-target characters: visible ASCII and obs-text; no space, no controls. */
const PATH = /^[\x21-\x7e\x80-\xff]+$/;

export interface H1PoolOptions {
  lookup?: LookupFunction | undefined;
  connectTimeoutMs: number;
}

export class H1Pool {
  private readonly idle = new Map<string, H1Connection[]>();
  private readonly open = new Map<string, number>();
  private readonly waiting = new Map<string, Array<() => void>>();
  private readonly sessions = new Map<string, Buffer>();
  private readonly all = new Set<H1Connection>();
  private closed = false;

  constructor(private readonly opts: H1PoolOptions) {}

  async request(origin: H1Origin, req: H1Request): Promise<H1Response> {
    const head = requestHead(req);
    const { conn, reused } = await this.acquire(origin, req.upgrade === true);
    try {
      return await conn.send(req, head);
    } catch (err) {
      if (!(err instanceof StaleConnectionError)) throw err;
      if (!reused || req.body !== null || !IDEMPOTENT.has(req.method)) throw new Error('the upstream closed the connection before answering');
      const fresh = await this.acquire(origin, true);
      return fresh.conn.send(req, head).catch((e: unknown) => {
        throw e instanceof StaleConnectionError ? new Error('the upstream closed the connection before answering') : e;
      });
    }
  }

  close(): void {
    this.closed = true;
    for (const c of this.all) c.destroy();
    this.all.clear();
    this.idle.clear();
    for (const queue of this.waiting.values()) for (const wake of queue) wake();
    this.waiting.clear();
  }

  /** A connection was given back after a complete exchange. */
  release(conn: H1Connection): void {
    if (this.closed) return conn.destroy();
    const list = this.idle.get(conn.key) ?? [];
    if (list.length >= MAX_IDLE_PER_ORIGIN) return conn.destroy();
    conn.park(IDLE_MS);
    list.push(conn);
    this.idle.set(conn.key, list);
    this.wake(conn.key);
  }

  /** A connection is gone (closed, failed, or handed over after an upgrade). */
  forget(conn: H1Connection): void {
    if (!this.all.delete(conn)) return;
    const list = this.idle.get(conn.key);
    const at = list ? list.indexOf(conn) : -1;
    if (at !== -1) list!.splice(at, 1);
    this.open.set(conn.key, (this.open.get(conn.key) ?? 1) - 1);
    this.wake(conn.key);
  }

  private wake(key: string): void {
    this.waiting.get(key)?.shift()?.();
  }

  private async acquire(origin: H1Origin, fresh: boolean): Promise<{ conn: H1Connection; reused: boolean }> {
    const key = `${origin.host}:${origin.port}|${origin.tls?.key ?? 'tcp'}`;
    for (;;) {
      if (this.closed) throw new Error('the gateway is shutting down');
      const list = this.idle.get(key);
      if (!fresh && list?.length) {
        // Most recently used first: the likeliest to be still open on the upstream's side.
        const conn = list.pop()!;
        conn.unpark();
        return { conn, reused: true };
      }
      if ((this.open.get(key) ?? 0) < MAX_CONNECTIONS_PER_ORIGIN) break;
      if (fresh && list?.length) {
        list.shift()!.destroy();
        continue;
      }
      await new Promise<void>((resolve) => {
        const queue = this.waiting.get(key) ?? [];
        queue.push(resolve);
        this.waiting.set(key, queue);
      });
    }
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
    let socket: Duplex;
    try {
      socket = await this.connect(origin, key);
    } catch (err) {
      this.open.set(key, (this.open.get(key) ?? 1) - 1);
      this.wake(key);
      throw err;
    }
    const conn = new H1Connection(key, socket, this);
    this.all.add(conn);
    if (this.closed) conn.destroy();
    return { conn, reused: false };
  }

  private connect(origin: H1Origin, key: string): Promise<Duplex> {
    const base: net.TcpNetConnectOpts = { host: origin.host, port: origin.port };
    if (this.opts.lookup) base.lookup = this.opts.lookup;
    let socket: net.Socket;
    if (origin.tls) {
      const options: tls.ConnectionOptions = { ...base, secureContext: origin.tls.context, ALPNProtocols: ['http/1.1'] };
      // The host is what the certificate is checked against; SNI only for names.
      if (isIP(origin.host) === 0) options.servername = origin.host;
      const session = this.sessions.get(key);
      if (session) options.session = session;
      const t = tls.connect(options);
      t.on('session', (s: Buffer) => {
        if (this.sessions.size >= MAX_TLS_SESSIONS && !this.sessions.has(key)) this.sessions.delete(this.sessions.keys().next().value as string);
        this.sessions.set(key, s);
      });
      socket = t;
    } else {
      socket = net.connect(base);
    }
    socket.setNoDelay(true);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => socket.destroy(new Error(`connection to upstream timed out after ${this.opts.connectTimeoutMs} ms`)), this.opts.connectTimeoutMs);
      const onError = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.once('error', onError);
      socket.once(origin.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        resolve(socket);
      });
    });
  }
}

/** One connection to an upstream, carrying one exchange at a time. */
class H1Connection {
  private readonly parser = new Http1ResponseParser();
  private current: Exchange | null = null;
  private served = 0;
  private dead = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private lastError: Error | null = null;

  constructor(
    readonly key: string,
    private readonly socket: Duplex,
    private readonly pool: H1Pool,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  send(req: H1Request, head: string): Promise<H1Response> {
    if (this.dead) return Promise.reject(new StaleConnectionError());
    const ex = new Exchange(this);
    this.current = ex;
    this.served++;
    this.parser.expect(req.method, { upgrade: req.upgrade === true });
    const promise = ex.response();
    this.socket.cork();
    this.socket.write(head, 'latin1');
    if (req.body === null) {
      this.socket.uncork();
      ex.requestSent = true;
      ex.bodySent = Promise.resolve();
    } else {
      ex.bodySent = this.writeBody(ex, req.body);
      ex.bodySent.catch(() => undefined);
    }
    return promise;
  }

  /** Resume reading once a slow consumer has taken what was held. */
  resumeReading(): void {
    if (!this.dead) this.socket.resume();
  }

  /** The consumer stopped reading a response: the connection cannot be reused. */
  abandon(ex: Exchange): void {
    if (this.current === ex) this.destroy();
  }

  park(ms: number): void {
    this.idleTimer = setTimeout(() => this.destroy(), ms);
    this.idleTimer.unref();
    (this.socket as Partial<net.Socket>).unref?.();
  }

  unpark(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    (this.socket as Partial<net.Socket>).ref?.();
  }

  destroy(): void {
    this.socket.destroy();
    this.onClose();
  }

  private async writeBody(ex: Exchange, body: OutgoingBody): Promise<void> {
    const socket = this.socket;
    const chunked = body.length === null;
    // The head and the first body bytes (often all of them) leave together.
    let corked = true;
    const uncork = setImmediate(() => {
      corked = false;
      socket.uncork();
    });
    try {
      for await (const c of body.chunks) {
        if (this.dead) throw new Error('the upstream closed the connection');
        if (c.length === 0) continue;
        if (chunked) {
          socket.write(`${c.length.toString(16)}${CRLF}`);
          socket.write(c);
          socket.write(CRLF);
        } else {
          socket.write(c);
        }
        if ((socket as Partial<net.Socket>).writableNeedDrain) await drained(socket, 'the upstream closed the connection');
      }
      if (chunked) socket.write(`0${CRLF}${fieldLines(body.trailers?.() ?? [])}${CRLF}`);
      ex.requestSent = true;
    } catch (err) {
      // The request fails with the body's error; the upstream must not see a request that looks complete.
      ex.fail(err instanceof Error ? err : new Error(String(err)));
      this.destroy();
      throw err;
    } finally {
      clearImmediate(uncork);
      if (corked) socket.uncork();
    }
  }

  private readonly onData = (chunk: Buffer): void => {
    const ex = this.current;
    if (!ex) {
      // Bytes nobody asked for: the upstream is out of step with us.
      this.destroy();
      return;
    }
    ex.gotBytes = true;
    this.parser.feed(chunk);
    this.drive(ex);
  };

  private readonly onEnd = (): void => {
    this.parser.feedEnd();
    if (this.current) this.drive(this.current);
    else this.destroy();
  };

  private readonly onError = (err: Error): void => {
    this.lastError ??= err;
    this.onClose();
  };

  private readonly onClose = (): void => {
    if (this.dead) return;
    this.dead = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const ex = this.current;
    this.current = null;
    this.pool.forget(this);
    if (!ex) return;
    if (!ex.gotBytes && this.served > 1) ex.fail(new StaleConnectionError());
    else ex.fail(new Error(`the upstream closed the connection before the response was complete${this.lastError ? ` (${this.lastError.message})` : ''}`));
  };

  private drive(ex: Exchange): void {
    for (;;) {
      if (this.current !== ex) return;
      const ev = this.parser.next();
      if (ev === null) return;
      switch (ev.type) {
        case 'head':
          if (ev.head.status === 101) {
            this.handOver(ex, ev.head);
            return;
          }
          ex.head(ev.head);
          break;
        case 'body':
          if (ex.push(ev.data) > BODY_HIGH_WATER) this.socket.pause();
          break;
        case 'end': {
          const reusable = ex.keepAlive && this.parser.bufferedBytes === 0;
          this.current = null;
          ex.end(ev.trailers.map((f) => [f.name, f.value]));
          if (!reusable) this.destroy();
          else if (ex.requestSent) this.pool.release(this);
          else this.afterRequest(ex);
          return;
        }
        case 'error':
          ex.fail(new UpstreamProtocolError(`the upstream sent an invalid response: ${ev.reason}`));
          this.destroy();
          return;
      }
    }
  }

  /**
   * The upstream answered before the request body was all sent (it had every
   * byte it needed, or it answered early). The connection can be reused once
   * the body is through; if that does not happen soon, it is closed.
   */
  private afterRequest(ex: Exchange): void {
    const timer = setTimeout(() => this.destroy(), EARLY_RESPONSE_GRACE_MS);
    ex.bodySent.then(
      () => {
        clearTimeout(timer);
        if (this.dead) return;
        if (ex.requestSent) this.pool.release(this);
        else this.destroy();
      },
      () => clearTimeout(timer),
    );
  }

  private handOver(ex: Exchange, head: ResponseHead): void {
    this.current = null;
    this.dead = true;
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('end', this.onEnd);
    this.socket.removeListener('error', this.onError);
    this.socket.removeListener('close', this.onClose);
    this.pool.forget(this);
    ex.upgrade(head, this.socket, this.parser.takeBuffered());
  }
}

/** One request/response on a connection: the response head promise and the body queue. */
class Exchange implements BodySource {
  requestSent = false;
  bodySent: Promise<void> = Promise.resolve();
  gotBytes = false;
  keepAlive = false;
  private resolveHead!: (r: H1Response) => void;
  private rejectHead!: (err: Error) => void;
  private headDone = false;
  private queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private error: Error | null = null;
  private wakeReader: (() => void) | null = null;
  private trailerFields: FieldList = [];

  constructor(private readonly conn: H1Connection) {}

  response(): Promise<H1Response> {
    return new Promise((resolve, reject) => {
      this.resolveHead = resolve;
      this.rejectHead = reject;
    });
  }

  head(h: ResponseHead): void {
    this.headDone = true;
    this.keepAlive = h.keepAlive;
    this.resolveHead({
      status: h.status,
      headers: h.headers.map((f) => [f.name, f.value]),
      body: this,
      trailers: () => this.trailerFields,
      mayHaveTrailers: h.framing.kind === 'chunked',
      bodySent: this.bodySent,
    });
  }

  upgrade(h: ResponseHead, socket: Duplex, rest: Buffer): void {
    this.headDone = true;
    this.ended = true;
    this.resolveHead({
      status: h.status,
      headers: h.headers.map((f) => [f.name, f.value]),
      body: this,
      trailers: () => [],
      mayHaveTrailers: false,
      bodySent: this.bodySent,
      upgraded: { socket, head: rest },
    });
  }

  /** Queue body bytes; returns how many are waiting for the reader. */
  push(data: Buffer): number {
    this.queue.push(data);
    this.queued += data.length;
    this.wake();
    return this.queued;
  }

  end(trailers: FieldList): void {
    this.trailerFields = trailers;
    this.ended = true;
    this.wake();
  }

  fail(err: Error): void {
    if (!this.headDone) {
      this.headDone = true;
      this.rejectHead(err);
      return;
    }
    if (this.ended) return;
    this.error = err;
    this.wake();
  }

  async read(): Promise<Buffer | null> {
    for (;;) {
      if (this.queued > 0) {
        const out = this.queue.length === 1 ? this.queue[0]! : Buffer.concat(this.queue, this.queued);
        const wasFull = this.queued > BODY_HIGH_WATER;
        this.queue = [];
        this.queued = 0;
        if (wasFull) this.conn.resumeReading();
        return out;
      }
      if (this.error) throw this.error;
      if (this.ended) return null;
      await new Promise<void>((resolve) => {
        this.wakeReader = resolve;
      });
    }
  }

  destroy(): void {
    if (this.ended && this.queued === 0) return;
    this.queue = [];
    this.queued = 0;
    this.conn.abandon(this);
  }

  private wake(): void {
    const w = this.wakeReader;
    this.wakeReader = null;
    w?.();
  }
}

/** The request line and header section, validated: nothing the agent sent can split it. */
function requestHead(req: H1Request): string {
  if (!isToken(req.method)) throw new InvalidRequestError(`invalid method ${JSON.stringify(req.method.slice(0, 32))}`);
  if (!PATH.test(req.path)) throw new InvalidRequestError('the request target contains characters HTTP/1.1 cannot carry');
  let out = `${req.method} ${req.path} HTTP/1.1${CRLF}`;
  for (const [name, value] of Object.entries(req.headers)) {
    if (!isToken(name)) throw new InvalidRequestError(`invalid header name ${JSON.stringify(name.slice(0, 64))}`);
    for (const v of Array.isArray(value) ? value : [value]) {
      // Values go out as latin1, byte for byte as received; CR, LF, NUL and characters past U+00FF cannot.
      if (!isFieldValue(v)) throw new InvalidRequestError(`invalid character in header ${name}`);
      out += `${name}: ${v}${CRLF}`;
    }
  }
  if (req.body === null) {
    if (LENGTH_EXPECTED.has(req.method)) out += `content-length: 0${CRLF}`;
  } else if (req.body.length === null) {
    out += `transfer-encoding: chunked${CRLF}`;
  } else {
    out += `content-length: ${req.body.length}${CRLF}`;
  }
  return out + CRLF;
}

function fieldLines(fields: FieldList): string {
  let out = '';
  for (const [name, value] of fields) {
    if (!isToken(name) || !isFieldValue(value)) throw new InvalidRequestError(`invalid trailer field ${JSON.stringify(name.slice(0, 64))}`);
    out += `${name}: ${value}${CRLF}`;
  }
  return out;
}

/** A body read from a node stream (an HTTP/2 response), with the same coalescing reads. */
export function readableSource(source: import('node:stream').Readable): BodySource {
  return {
    async read() {
      for (;;) {
        const chunk = source.read() as Buffer | null;
        if (chunk !== null) return chunk;
        if (source.readableEnded) return null;
        await readable(source);
      }
    },
    destroy() {
      if (!source.readableEnded) source.destroy();
    },
  };
}

/** Resolves when `source` has data or has ended; rejects when it fails or closes before its end. */
function readable(source: import('node:stream').Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      source.removeListener('readable', onReadable);
      source.removeListener('end', onReadable);
      source.removeListener('error', done);
      source.removeListener('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onReadable = () => done();
    const onClose = () => done(source.readableEnded ? undefined : new Error('the upstream closed the response before its end'));
    if (source.errored) return reject(source.errored);
    if (source.destroyed) return onClose();
    source.on('readable', onReadable);
    source.on('end', onReadable);
    source.on('error', done);
    source.on('close', onClose);
  });
}
