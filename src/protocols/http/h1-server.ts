/**
 * The HTTP/1.1 ingress adapter: binds the strict parser to a socket (plain,
 * TLS-terminated, or a proxy tunnel), runs one exchange at a time
 * (pipelined requests wait their turn), writes responses with the gateway's
 * own framing, and closes the connection whenever the byte stream can no
 * longer be trusted.
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { Http1RequestParser, HttpParseError, isFieldValue, isToken, type ParseEvent, type RequestHead, type HeaderField } from './h1-parser.js';
import { exchange } from './exchange.js';
import { recordRefusal } from './refusals.js';
import { drained } from './drain.js';
import type { FieldList } from './headers.js';
import type { BodyLength, ConnectionInfo, EngineCore, IncomingRequest, ResponseSink } from './types.js';

export interface Http1Options {
  /** Bytes already read from the socket (after a CONNECT, a peeked ClientHello that was not TLS…). */
  initial?: Buffer | undefined;
  /** Called for CONNECT (proxy listener only); the handler owns the socket from then on. */
  onConnect?: ((head: RequestHead, socket: Duplex, rest: Buffer) => void) | undefined;
  /** Idle time allowed between requests (default 60 s). */
  keepAliveMs?: number | undefined;
  /** Time allowed for a request head once it has started (default 30 s). */
  headersTimeoutMs?: number | undefined;
}

/** Reads a socket chunk by chunk without ever losing bytes (paused mode). */
class SocketReader {
  /** Bytes read so far. */
  bytes = 0;
  private ended = false;
  private waiter: (() => void) | null = null;

  constructor(private readonly socket: Duplex) {
    const wake = () => {
      const w = this.waiter;
      this.waiter = null;
      w?.();
    };
    socket.on('readable', wake);
    const end = () => {
      this.ended = true;
      wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  async read(): Promise<Buffer | null> {
    for (;;) {
      const chunk = this.socket.read() as Buffer | null;
      if (chunk !== null) {
        this.bytes += chunk.length;
        return chunk;
      }
      if (this.ended || this.socket.destroyed) return null;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
    }
  }

  detach(): void {
    this.socket.removeAllListeners('readable');
  }
}

export function serveHttp1(core: EngineCore, socket: Duplex, conn: ConnectionInfo, opts: Http1Options = {}): void {
  core.sockets.add(socket);
  socket.on('close', () => core.sockets.delete(socket));
  socket.on('error', () => undefined);
  run(core, socket, conn, opts).catch((err: unknown) => {
    core.log(`http: connection from ${conn.peer.id} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    socket.destroy();
  });
}

async function run(core: EngineCore, socket: Duplex, conn: ConnectionInfo, opts: Http1Options): Promise<void> {
  const parser = new Http1RequestParser();
  const reader = new SocketReader(socket);
  const keepAliveMs = opts.keepAliveMs ?? 60_000;
  const headersTimeoutMs = opts.headersTimeoutMs ?? 30_000;
  if (opts.initial?.length) parser.feed(opts.initial);
  const setIdle = (ms: number) => (socket as Duplex & { setTimeout?: (ms: number, cb?: () => void) => void }).setTimeout?.(ms);
  socket.on('timeout', () => socket.destroy());
  // Requests on one connection run one at a time: one signal serves them all
  // (it fires when the agent goes away, cancelling a pending approval).
  const goneController = new AbortController();
  const gone = goneController.signal;
  socket.once('close', () => goneController.abort());
  /** Bytes of the connection that belong to requests already handled. */
  let handledBytes = 0;
  /** Answer and record a request refused before it became an exchange; the connection then closes. */
  const refuse = (status: number, reason: string, request?: { method: string; target: string; host: string | null }) => {
    reader.detach();
    const bytesOut = writeLocal(socket, status, reason);
    recordRefusal(core, {
      peer: conn.peer,
      profile: conn.profile,
      endpoint: conn.endpointId ?? null,
      host: request?.host ?? conn.identity ?? conn.upstream?.host ?? '',
      method: request?.method,
      target: request?.target,
      status: String(status),
      reason,
      bytesIn: reader.bytes + (opts.initial?.length ?? 0) - handledBytes - parser.bufferedBytes,
      bytesOut,
    });
  };

  /** Next parser event, reading more bytes as needed (`onBytes` after each read); null when the agent closed. */
  const nextEvent = async (onBytes?: () => void): Promise<ParseEvent | null> => {
    for (;;) {
      const ev = parser.next();
      if (ev) return ev;
      const chunk = await reader.read();
      if (chunk === null) return null;
      parser.feed(chunk);
      onBytes?.();
    }
  };

  /**
   * The next request head. Timers are armed only when the head is not
   * already buffered: an idle keep-alive limit while nothing has arrived, and
   * a deadline for the whole head from its first byte (a head dripped a byte
   * at a time must not hold the connection for longer, however long the
   * connection was idle before it started).
   */
  const nextHead = async (): Promise<ParseEvent | null> => {
    const ready = parser.next();
    if (ready) return ready;
    setIdle(keepAliveMs);
    let headTimer: NodeJS.Timeout | undefined;
    const headStarted = () => {
      headTimer ??= setTimeout(() => refuse(408, 'request head not received in time'), headersTimeoutMs);
    };
    if (parser.midMessage) headStarted();
    try {
      return await nextEvent(headStarted);
    } finally {
      clearTimeout(headTimer);
      setIdle(0);
    }
  };

  for (;;) {
    // ── wait for a request head ──
    const ev = await nextHead();
    if (ev === null) {
      socket.end();
      return;
    }
    if (ev.type === 'error') {
      refuse(ev.status, ev.reason);
      return;
    }
    if (ev.type !== 'head') throw new Error(`parser produced ${ev.type} before a head`);
    const head = ev.head;

    if (head.method === 'CONNECT') {
      if (!opts.onConnect) {
        refuse(405, 'CONNECT is only accepted by the proxy listener', { method: head.method, target: head.target, host: hostOf(head.headers) });
        return;
      }
      reader.detach();
      opts.onConnect(head, socket, parser.takeBuffered());
      return;
    }

    // ── one exchange ──
    let continued = false;
    let trailersSeen = false;
    let trailers: HeaderField[] = [];
    const body: AsyncIterator<Buffer> = {
      next: async () => {
        if (trailersSeen) return { done: true, value: undefined };
        if (head.expectContinue && !continued && !sink.started) {
          continued = true;
          socket.write('HTTP/1.1 100 Continue\r\n\r\n');
        }
        const e = await nextEvent();
        if (e === null) throw new HttpParseError(400, 'connection closed in the middle of the request body');
        if (e.type === 'body') return { done: false, value: e.data };
        if (e.type === 'end') {
          trailersSeen = true;
          trailers = e.trailers;
          return { done: true, value: undefined };
        }
        if (e.type === 'error') throw new HttpParseError(e.status, e.reason);
        throw new Error('unexpected parser event in a body');
      },
    };
    const hasBody = head.framing.kind !== 'none';
    if (!hasBody) {
      // Consume the zero-length body's `end` now so the next head can follow.
      const end = parser.next();
      if (end?.type !== 'end') throw new Error('bodyless request without end event');
      trailersSeen = true;
    }
    const sink = new H1Sink(socket, head, () => {
      reader.detach();
      return parser.takeBuffered();
    });
    const req: IncomingRequest = {
      protocol: 'h1',
      method: head.method,
      target: head.target,
      authority: hostOf(head.headers),
      headers: head.headers,
      contentLength: head.framing.kind === 'length' ? head.framing.length : hasBody ? null : 0,
      hasBody,
      body,
      trailers: () => trailers,
      headBytes: head.headBytes,
      upgrade: head.upgrade,
      acceptsTrailers: acceptsTrailers(head.headers),
      signal: gone,
    };
    const result = await exchange(core, conn, req, sink);
    handledBytes = reader.bytes + (opts.initial?.length ?? 0) - parser.bufferedBytes;
    if (result.upgraded) return;
    if (result.close || sink.mustClose || !head.keepAlive || !result.bodyDone || socket.destroyed) {
      reader.detach();
      lingeringClose(socket);
      return;
    }
  }
}

/** Whether `TE` lists `trailers` (RFC 9110 §10.1.4); most requests carry no TE at all. */
function acceptsTrailers(headers: readonly HeaderField[]): boolean {
  let te: string[] | null = null;
  for (const h of headers) if (h.name.length === 2 && h.name.toLowerCase() === 'te') (te ??= []).push(h.value);
  return te !== null && /(?:^|,)\s*trailers\s*(?:,|$)/i.test(te.join(','));
}

function hostOf(headers: readonly HeaderField[]): string | null {
  const h = headers.find((f) => f.name.toLowerCase() === 'host');
  return h ? h.value : null;
}

/** A response the gateway writes itself before closing (parse errors, timeouts); returns the bytes written. */
function writeLocal(socket: Duplex, status: number, reason: string): number {
  const body = `clawpatrol: ${reason}\n`;
  const out =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\nx-clawpatrol: bad_request\r\n\r\n${body}`;
  socket.write(out);
  lingeringClose(socket);
  return Buffer.byteLength(out);
}

/**
 * Close after a final response while the agent may still be sending (a body
 * the gateway refused to read): half-close, then read and discard for a
 * moment. Closing with unread bytes in the receive buffer makes the kernel
 * send a reset, which can destroy the response before the agent reads it.
 */
function lingeringClose(socket: Duplex): void {
  socket.end();
  if (socket.destroyed) return;
  socket.on('data', () => undefined);
  socket.resume();
  // Counted from when everything written has left, so a slow reader still gets all of it.
  socket.once('finish', () => setTimeout(() => socket.destroy(), 2000).unref());
}

const CRLF = '\r\n';

/**
 * Field lines for a response head or trailer section. Names and values come
 * from our parsers or from us; one that HTTP/1.1 cannot carry byte for byte
 * (CR, LF, NUL, characters past U+00FF) is left out rather than split the head.
 */
function fieldLines(fields: FieldList): string {
  let out = '';
  for (const [name, value] of fields) if (isToken(name) && isFieldValue(value)) out += `${name}: ${value}${CRLF}`;
  return out;
}

/**
 * Bytes a response may queue on the socket within one turn of the event
 * loop before it waits for the agent to take them. Well above one TLS
 * record (16 KiB), so that the records an upstream delivers one callback at
 * a time leave as one write.
 */
const COALESCE_BYTES = 256 * 1024;

/**
 * Writes one response with the gateway's own framing. The head leaves with
 * the first body bytes (or the end), at once. After that, everything written
 * in one turn of the event loop — the body chunks the upstream delivered in
 * that turn, the end — is corked and leaves at the end of the turn as one
 * write: one TLS write (several records when large) and one system call,
 * instead of one per piece. Nothing waits longer than that turn, so an SSE
 * event still reaches the agent at once.
 */
class H1Sink implements ResponseSink {
  started = false;
  bytesOut = 0;
  /** The connection cannot carry another response (close-delimited body, framing unknown). */
  mustClose = false;
  private chunked = false;
  private ended = false;
  /** Set while the socket is corked until the end of this turn. */
  private release: NodeJS.Immediate | null = null;
  private bodyStarted = false;

  constructor(
    private readonly socket: Duplex,
    private readonly request: RequestHead,
    private readonly releaseSocket: () => Buffer,
  ) {}

  head(status: number, fields: FieldList, length: BodyLength): void {
    this.started = true;
    let out = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}${CRLF}`;
    out += fieldLines(fields);
    if (typeof length === 'number') {
      out += `content-length: ${length}${CRLF}`;
    } else if (length === null) {
      if (this.request.version === '1.1') {
        this.chunked = true;
        out += `transfer-encoding: chunked${CRLF}`;
      } else {
        this.mustClose = true;
      }
    }
    if (this.mustClose || !this.request.keepAlive) out += `connection: close${CRLF}`;
    else if (this.request.version === '1.0') out += `connection: keep-alive${CRLF}`;
    out += CRLF;
    this.bytesOut += out.length;
    this.hold();
    // Field values are latin1 strings (bytes as received); write them back byte for byte.
    this.socket.write(out, 'latin1');
  }

  write(chunk: Buffer): Promise<void> {
    if (chunk.length === 0 || this.ended) return Promise.resolve();
    this.hold();
    if (this.chunked) {
      const size = `${chunk.length.toString(16)}${CRLF}`;
      this.bytesOut += size.length + chunk.length + 2;
      this.socket.write(size);
      this.socket.write(chunk);
      this.socket.write(CRLF);
    } else {
      this.bytesOut += chunk.length;
      this.socket.write(chunk);
    }
    // The head and the first body bytes leave at once (time to first byte, the
    // first SSE event); what follows in the same turn is coalesced.
    if (!this.bodyStarted) {
      this.bodyStarted = true;
      this.flush();
    }
    if (this.socket.writableLength < COALESCE_BYTES) return Promise.resolve();
    this.flush();
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    return drained(this.socket, 'agent closed the connection');
  }

  end(trailers: FieldList = []): void {
    if (this.ended) return;
    this.ended = true;
    if (this.chunked) {
      const out = `0${CRLF}${fieldLines(trailers)}${CRLF}`;
      this.bytesOut += out.length;
      this.hold();
      this.socket.write(out, 'latin1');
    }
    this.flush();
  }

  abort(): void {
    this.flush();
    this.ended = true;
    this.mustClose = true;
    this.socket.destroy();
  }

  closeAfter(): void {
    this.mustClose = true;
  }

  /** Cork the socket until the end of this turn (or an earlier flush). */
  private hold(): void {
    if (this.release !== null) return;
    this.socket.cork();
    this.release = setImmediate(() => {
      this.release = null;
      this.socket.uncork();
    });
  }

  private flush(): void {
    if (this.release === null) return;
    clearImmediate(this.release);
    this.release = null;
    this.socket.uncork();
  }

  takeOver = (status: number, fields: FieldList): { socket: Duplex; head: Buffer } => {
    this.started = true;
    let out = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}${CRLF}`;
    out += fieldLines(fields) + CRLF;
    this.bytesOut += out.length;
    this.socket.write(out, 'latin1');
    return { socket: this.socket, head: this.releaseSocket() };
  };
}
