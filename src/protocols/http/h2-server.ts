/**
 * The HTTP/2 ingress adapter (node:http2 on a TLS socket that negotiated
 * `h2`): each stream becomes one exchange, independently — a request held
 * for approval never blocks the other streams of the connection.
 */
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { HeaderField } from './h1-parser.js';
import { exchange } from './exchange.js';
import { drained } from './drain.js';
import type { FieldList } from './headers.js';
import type { BodyLength, ConnectionInfo, EngineCore, IncomingRequest, ResponseSink } from './types.js';

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_CANCEL } = http2.constants;

/** Fields that must not appear in an HTTP/2 message (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'host']);

export function serveHttp2(core: EngineCore, socket: Duplex, conn: ConnectionInfo): void {
  const session: http2.ServerHttp2Session = http2.performServerHandshake(socket, {
    settings: { enableConnectProtocol: false, maxConcurrentStreams: 256 },
    maxSessionMemory: 64,
  });
  core.sockets.add(socket);
  socket.on('close', () => core.sockets.delete(socket));
  session.on('error', () => undefined);
  session.setTimeout(120_000, () => {
    // Idle: no stream for two minutes.
    session.close();
  });
  session.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    handleStream(core, conn, stream, headers, rawHeaders).catch((err: unknown) => {
      core.log(`http2: stream from ${conn.peer.id} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
    });
  });
}

async function handleStream(
  core: EngineCore,
  conn: ConnectionInfo,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  rawHeaders: string[],
): Promise<void> {
  stream.on('error', () => undefined);
  const method = String(headers[':method'] ?? '');
  const authority = headers[':authority'] !== undefined ? String(headers[':authority']) : null;
  const fields: HeaderField[] = [];
  let hostField: string | null = null;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.startsWith(':')) continue;
    if (name === 'host') {
      hostField = rawHeaders[i + 1]!;
      continue;
    }
    fields.push({ name, value: rawHeaders[i + 1]! });
  }
  // Rules read `http.headers.host` on both protocols; `:authority` wins over a Host field (RFC 9113 §8.3.1).
  const effectiveAuthority = authority ?? hostField;
  if (effectiveAuthority !== null) fields.unshift({ name: 'host', value: effectiveAuthority });

  const cl = headers['content-length'];
  const contentLength = cl !== undefined && /^[0-9]{1,15}$/.test(String(cl)) ? Number(cl) : null;
  const hasBody = !stream.endAfterHeaders && contentLength !== 0;
  const abort = new AbortController();
  stream.once('close', () => abort.abort());
  const headBytes = rawHeaders.reduce((n, s) => n + s.length + 1, 0);
  let trailers: HeaderField[] = [];
  stream.once('trailers', (_t: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
    trailers = [];
    for (let i = 0; i + 1 < raw.length; i += 2) if (!raw[i]!.startsWith(':')) trailers.push({ name: raw[i]!, value: raw[i + 1]! });
  });
  const req: IncomingRequest = {
    protocol: 'h2',
    method,
    target: String(headers[':path'] ?? ''),
    authority: effectiveAuthority,
    headers: fields,
    contentLength: hasBody ? contentLength : 0,
    hasBody,
    body: stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>,
    trailers: () => trailers,
    headBytes,
    upgrade: null,
    acceptsTrailers: true,
    signal: abort.signal,
  };
  if (!hasBody) stream.resume();
  await exchange(core, conn, req, new H2Sink(stream));
}

class H2Sink implements ResponseSink {
  started = false;
  bytesOut = 0;
  private trailers: FieldList = [];
  private endedByHead = false;

  constructor(private readonly stream: http2.ServerHttp2Stream) {}

  head(status: number, fields: FieldList, length: BodyLength, opts: { trailers?: boolean } = {}): void {
    this.started = true;
    if (this.stream.destroyed) return;
    const out: http2.OutgoingHttpHeaders = { ':status': status };
    for (const [name, value] of fields) {
      const key = name.toLowerCase();
      if (CONNECTION_SPECIFIC.has(key) || key.startsWith(':')) continue;
      const prev = out[key];
      out[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
      this.bytesOut += key.length + value.length + 2;
    }
    if (typeof length === 'number') out['content-length'] = length;
    const waitForTrailers = length !== 'none' && opts.trailers === true;
    if (waitForTrailers) {
      this.stream.once('wantTrailers', () => {
        const t: http2.OutgoingHttpHeaders = {};
        for (const [name, value] of this.trailers) {
          const key = name.toLowerCase();
          if (CONNECTION_SPECIFIC.has(key)) continue;
          const prev = t[key];
          t[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
        }
        this.stream.sendTrailers(t);
      });
    }
    this.endedByHead = length === 'none';
    this.stream.respond(out, { endStream: this.endedByHead, waitForTrailers });
  }

  write(chunk: Buffer): Promise<void> {
    if (this.stream.destroyed || chunk.length === 0) return Promise.resolve();
    this.bytesOut += chunk.length;
    if (this.stream.write(chunk)) return Promise.resolve();
    return drained(this.stream, 'agent closed the stream');
  }

  end(trailers: FieldList = []): void {
    this.trailers = trailers;
    if (!this.stream.destroyed && !this.stream.writableEnded && !this.endedByHead) this.stream.end();
  }

  closeAfter(): void {
    // Streams are independent: nothing to close but this stream, which ends with its response.
  }

  abort(): void {
    if (!this.stream.destroyed) this.stream.close(this.started ? NGHTTP2_INTERNAL_ERROR : NGHTTP2_CANCEL);
  }
}
