/**
 * One request through the gateway, whatever protocol the agent speaks:
 *
 *   route (target, host, SNI/Host agreement, endpoint)
 *   → body (buffered up to limits.body_buffer only when a rule reads it)
 *   → facts → enforcer.enforce (may wait for approvals)
 *   → deny: 403 with the reason | allow: inject the credential, forward
 *   → stream the response back, sanitised and scrubbed → audit via finish.
 */
import type http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Action, Endpoint, PolicyModel } from '../../policy/types.js';
import type { Enforcement } from '../../gateway/contracts.js';
import { placeholdersFromHeaders, placeholderHeaders } from '../../policy/placeholders.js';
import { injectHttpCredential, mtlsOptions, InjectionError } from '../../vault/inject.js';
import type { Scrubber } from '../../vault/scrub.js';
import { currentNameScrubber, currentScrubber } from './scrubbing.js';
import { recordRefusal } from './refusals.js';
import { HttpParseError, isRequestTarget } from './h1-parser.js';
import { parseAuthority, parseRequestTarget, formatAuthority, type ParsedTarget } from './target.js';
import { normalisePath, type NormalisedPath } from './path.js';
import { EMPTY_BODY, inspectBody, type BodyFacts } from './body.js';
import { buildHttpFacts } from './facts.js';
import { credentialHeaderNames, fieldValue, forwardableRequestTrailers, sanitiseResponseHeaders, sanitiseTrailers, upstreamRequestHeaders, type FieldList } from './headers.js';
import { answer, type LocalAnswer } from './respond.js';
import { shapeAction } from './extensions.js';
import { relayWebSocket } from './websocket.js';
import type { UpstreamTarget } from './upstream.js';
import { readableSource, type BodySource } from './h1-client.js';
import { drained } from './drain.js';
import { decodedBody, responseCodings, withoutContentEncoding } from './decode-response.js';
import type { BodyLength, ConnectionInfo, EngineCore, ExchangeOutcome, HttpPolicy, IncomingRequest, ResponseSink } from './types.js';

/** How long a request body may go without a byte from the agent while the gateway waits for one. */
export const DEFAULT_BODY_IDLE_TIMEOUT_MS = 60_000;

/** Facts of a body the gateway did not read (no rule needs it): unknown, so nothing can rely on it. */
const NOT_INSPECTED: BodyFacts = Object.freeze({ body: '', body_json: {}, body_truncated: true }) as BodyFacts;

interface Route {
  target: ParsedTarget;
  host: string;
  port: number;
  endpoint: Endpoint | null;
  path: NormalisedPath;
  upstream: { host: string; port: number; tls: boolean };
}

/**
 * The agent's request body, pulled once, counting bytes. A read that gets no bytes
 * for `idleMs` fails with 408: an agent that stops mid-body (slowloris)
 * would otherwise hold its connection, the upstream request and a buffered
 * prefix for ever. Only a pending read is timed — while the gateway itself
 * waits (an approval, a slow upstream's backpressure) nothing runs.
 */
class BodyReader {
  bytes = 0;
  done = false;
  /** One timer per body, restarted for each read (`refresh`), cleared when the body ends. */
  private timer: NodeJS.Timeout | null = null;
  private failPending: ((err: Error) => void) | null = null;
  constructor(
    private readonly it: AsyncIterator<Buffer>,
    private readonly idleMs: number,
  ) {}

  async next(): Promise<Buffer | null> {
    if (this.done) return null;
    const r = await this.read();
    if (r.done) {
      this.done = true;
      this.release();
      return null;
    }
    this.bytes += r.value.length;
    return r.value;
  }

  /** Stop timing (the exchange is over, read to the end or not). */
  release(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.failPending = null;
  }

  private read(): Promise<IteratorResult<Buffer>> {
    if (!(this.idleMs > 0)) return this.it.next();
    return new Promise((resolve, reject) => {
      this.failPending = reject;
      if (this.timer === null) this.timer = setTimeout(() => this.stalled(), this.idleMs).unref();
      else this.timer.refresh();
      this.it.next().then(
        (r) => {
          this.failPending = null;
          resolve(r);
        },
        (err: unknown) => {
          this.failPending = null;
          reject(err);
        },
      );
    });
  }

  private stalled(): void {
    const fail = this.failPending;
    this.failPending = null;
    fail?.(new HttpParseError(408, `no body bytes from the agent for ${this.idleMs / 1000} s`));
  }

  /** Read until the body ends or more than `limit` bytes are held. */
  async prefix(limit: number): Promise<{ chunks: Buffer[]; size: number; complete: boolean }> {
    const chunks: Buffer[] = [];
    let size = 0;
    while (size <= limit) {
      const c = await this.next();
      if (c === null) return { chunks, size, complete: true };
      chunks.push(c);
      size += c.length;
    }
    return { chunks, size, complete: false };
  }
}

export async function exchange(core: EngineCore, conn: ConnectionInfo, req: IncomingRequest, sink: ResponseSink): Promise<ExchangeOutcome> {
  const policy = core.policy();
  const idleSec = policy.model.gateway.limits.bodyIdleTimeoutSec;
  const body = new BodyReader(req.body, core.bodyIdleTimeoutMs ?? (idleSec !== undefined ? idleSec * 1000 : DEFAULT_BODY_IDLE_TIMEOUT_MS));
  const outcome = (extra: Partial<ExchangeOutcome> = {}): ExchangeOutcome => {
    body.release();
    return {
      bodyDone: !req.hasBody || body.done,
      close: req.hasBody && !body.done,
      upgraded: false,
      ...extra,
    };
  };
  /** Answer a request refused before the policy saw it, and record the refusal. */
  const refuse = (status: number, reason: string, route: Route | null, kind: LocalAnswer['kind'] = 'bad_request'): ExchangeOutcome => {
    sink.closeAfter();
    answer(sink, req, { status, reason, kind });
    recordRefusal(core, {
      peer: conn.peer,
      profile: conn.profile,
      endpoint: route?.endpoint?.id ?? conn.endpointId ?? null,
      host: route?.host ?? conn.identity ?? conn.upstream?.host ?? req.authority ?? '',
      method: req.method,
      target: req.target,
      status: String(status),
      reason,
      bytesIn: req.headBytes + body.bytes,
      bytesOut: sink.bytesOut,
    });
    return outcome({ close: true });
  };

  let route: Route;
  try {
    route = routeRequest(conn, req, policy);
  } catch (err) {
    if (!(err instanceof HttpParseError)) throw err;
    return refuse(err.status, err.message, null);
  }

  // ── body for the facts ────────────────────────────────────────────────
  let prefix: Buffer[] = [];
  let bodyFacts: BodyFacts = EMPTY_BODY;
  if (req.hasBody) {
    const ep = route.endpoint;
    const needed = ep !== null && (policy.needsFact(ep.id, 'http.body') || policy.needsFact(ep.id, 'http.body_json'));
    if (needed) {
      const limit = policy.model.gateway.limits.bodyBuffer;
      let got;
      try {
        got = await body.prefix(limit);
      } catch (err) {
        return refuse(err instanceof HttpParseError ? err.status : 400, `request body: ${messageOf(err)}`, route);
      }
      prefix = got.chunks;
      bodyFacts = inspectBody(Buffer.concat(got.chunks), {
        complete: got.complete,
        contentEncoding: fieldValue(req.headers, 'content-encoding'),
        contentType: fieldValue(req.headers, 'content-type'),
        limit,
      });
    } else {
      bodyFacts = NOT_INSPECTED;
    }
  }

  // ── the action ────────────────────────────────────────────────────────
  const http = buildHttpFacts({
    method: req.method,
    rawPath: route.target.rawPath,
    rawQuery: route.target.rawQuery,
    host: route.host,
    headers: req.headers,
    body: bodyFacts,
    normalised: route.path,
  });
  const shaped = shapeAction(route.endpoint, http);
  const action: Action = {
    family: shaped.family,
    host: route.host,
    port: route.port,
    peer: conn.peer,
    placeholders: placeholdersFromHeaders(http.headers, headersFor(policy.model)),
    facts: shaped.facts,
  };
  if (conn.profile !== undefined) action.profile = conn.profile;
  if (conn.endpointId !== undefined) action.endpoint = conn.endpointId;

  let enf: Enforcement;
  try {
    enf = await core.enforcer.enforce(action, req.signal);
  } catch (err) {
    core.log(`http: enforcement failed for ${route.host}: ${messageOf(err)}`);
    return refuse(403, 'the request could not be checked against the policy; denied', route, 'denied');
  }
  const bytesIn = () => req.headBytes + body.bytes;
  if (req.signal.aborted) {
    enf.finish({ bytesIn: bytesIn(), bytesOut: 0, status: 'client-closed' });
    return outcome({ close: true });
  }
  if (!enf.allowed) {
    // An unread body cannot be skipped safely: the connection ends with this answer.
    if (req.hasBody && !body.done) sink.closeAfter();
    // Reasons can come from an approver (an LLM's words): scrubbed like everything else the agent receives.
    answer(sink, req, { status: 403, reason: currentScrubber(core).scrubText(enf.reason), rule: enf.decision.rule || undefined, kind: 'denied' });
    enf.finish({ bytesIn: bytesIn(), bytesOut: sink.bytesOut, status: '403' });
    return outcome();
  }

  // ── forward ───────────────────────────────────────────────────────────
  const scrubber = currentScrubber(core);
  const names = currentNameScrubber(core);
  const websocket = req.protocol === 'h1' && req.upgrade === 'websocket' && req.method === 'GET' && sink.takeOver !== undefined;
  let headers: Record<string, string | string[]> = upstreamRequestHeaders(req.headers, { websocket, keepTeTrailers: req.protocol === 'h2' });
  let clientCert: ReturnType<typeof mtlsOptions> | undefined;
  /** A secret went upstream in a header: the response may echo it (see decode-response.ts). */
  let credentialSent = false;
  try {
    if (enf.material && !enf.decision.passthrough) {
      if (enf.material.credential.type === 'mtls_credential') clientCert = mtlsOptions(enf.material);
      else {
        headers = injectHttpCredential(headers, enf.material) as Record<string, string | string[]>;
        // The upstream now holds the secret and may echo it (a 401 page, a
        // debug endpoint). Scrubbing reads the bytes as sent, so a compressed
        // echo would reach the agent intact: ask for an uncompressed answer.
        headers['accept-encoding'] = 'identity';
        credentialSent = true;
      }
    }
  } catch (err) {
    const reason = err instanceof InjectionError ? err.message : 'the credential could not be injected';
    sink.closeAfter();
    answer(sink, req, { status: 502, reason: scrubber.scrubText(reason), kind: 'upstream_error' });
    enf.finish({ bytesIn: bytesIn(), bytesOut: sink.bytesOut, status: '502' });
    return outcome({ close: true });
  }
  const up = route.upstream;
  const target: UpstreamTarget = {
    host: up.host,
    port: up.port,
    tls: up.tls ? core.upstream.tlsFor(route.endpoint?.caCert, clientCert) : null,
  };
  const path = route.path.forward + (route.target.rawQuery !== null ? `?${route.target.rawQuery}` : '');
  const authority = formatAuthority(up.host, up.port, up.tls ? 443 : 80);

  const done = (status: string) => enf.finish({ bytesIn: bytesIn(), bytesOut: sink.bytesOut, status });
  /** The agent's request trailers, checked (a field that could override the decision refuses the request). */
  const trailers = (): FieldList => {
    const fields = req.trailers();
    if (fields.length === 0) return [];
    try {
      return forwardableRequestTrailers(fields, credentialHeaderNames(policy.model));
    } catch (err) {
      throw new ClientBodyError(messageOf(err));
    }
  };
  /** The body as the agent sends it; `carriesTrailers`: the upstream framing has room for trailers. */
  const bodyChunks = async function* (carriesTrailers: boolean): AsyncGenerator<Buffer> {
    yield* prefix;
    for (;;) {
      let c: Buffer | null;
      try {
        c = await body.next();
      } catch (err) {
        // The agent's side failed (framing error, disconnect, a stalled body): the agent's fault, not an upstream failure.
        throw new ClientBodyError(messageOf(err), err instanceof HttpParseError ? err.status : 400);
      }
      if (c === null) break;
      yield c;
    }
    if (!carriesTrailers && req.trailers().length > 0) {
      throw new ClientBodyError('request trailers cannot follow a body sent with Content-Length over HTTP/1.1; send the request chunked');
    }
  };

  if (websocket) {
    headers['host'] = authority;
    return forwardWebSocket(core, req, sink, target, path, headers, scrubber, enf, route, bytesIn, outcome);
  }

  let response: UpstreamResponse;
  try {
    const session = req.protocol === 'h2' ? await core.upstream.h2Session(target) : null;
    if (session) {
      if (req.contentLength !== null && req.hasBody) headers['content-length'] = String(req.contentLength);
      response = await sendH2(session, target.tls ? 'https' : 'http', authority, req.method, path, headers, req.hasBody ? { chunks: bodyChunks(true), trailers } : null);
    } else {
      headers['host'] = authority;
      const length = req.hasBody ? req.contentLength : null;
      response = await core.upstream.h1(target, {
        method: req.method,
        path,
        headers,
        body: req.hasBody ? { chunks: bodyChunks(length === null), length, trailers } : null,
      });
    }
  } catch (err) {
    sink.closeAfter();
    if (err instanceof HttpParseError || err instanceof ClientBodyError) {
      const status = err.status;
      answer(sink, req, { status, reason: `request body: ${messageOf(err)}`, kind: 'bad_request' });
      done(String(status));
      return outcome({ close: true });
    }
    const reason = `upstream ${up.host}:${up.port} failed: ${describeUpstreamError(err)}`;
    core.log(`http: ${reason}`);
    answer(sink, req, { status: 502, reason: scrubber.scrubText(reason), kind: 'upstream_error' });
    done('502');
    return outcome({ close: true });
  }

  // ── response ──────────────────────────────────────────────────────────
  const status = response.status;
  const bodyless = req.method === 'HEAD' || status === 204 || status === 304 || status < 200;
  let fields = sanitiseResponseHeaders(response.headers, { scrubber, names });
  let length: BodyLength = 'none';
  let responseBody = response.body;
  const codings = credentialSent && !bodyless ? responseCodings(fields) : [];
  if (codings.length > 0) {
    // Compressed although identity was asked for: decoded so it can be scrubbed.
    const decoded = decodedBody(response.body, codings);
    if (decoded === null) {
      response.body.destroy();
      sink.closeAfter();
      answer(sink, req, { status: 502, reason: `the upstream answered in a content coding the gateway cannot decode (${codings.join(', ')}), so it could not be checked for secrets`, kind: 'upstream_error' });
      done('502');
      return outcome({ close: true });
    }
    responseBody = decoded;
    fields = withoutContentEncoding(fields);
    removeAll(fields, isContentLength);
  }
  if (!bodyless) {
    // The gateway frames the body itself: Content-Length leaves the list and
    // comes back from `length` (unknown → chunked).
    const at = fields.findIndex(isContentLength);
    length = at !== -1 && /^[0-9]{1,15}$/.test(fields[at]![1]) ? Number(fields[at]![1]) : null;
    if (at !== -1) removeAll(fields, isContentLength);
  }
  sink.head(status, fields, length, { trailers: response.mayHaveTrailers });
  try {
    if (!bodyless) await pump(responseBody, scrubber, sink);
    else response.body.destroy();
    const responseTrailers = req.acceptsTrailers ? sanitiseTrailers(response.trailers(), { scrubber, names }) : [];
    sink.end(responseTrailers);
    done(String(status));
  } catch (err) {
    core.log(`http: response from ${up.host} cut off: ${messageOf(err)}`);
    sink.abort();
    done(`${status}-aborted`);
    return outcome({ close: true });
  }
  // The upstream may answer before the last body bytes were handed over (it
  // had them all by Content-Length, or it answered early, e.g. a 401). Let the
  // forwarding finish briefly; a body still unread after that cannot be
  // skipped safely, and the connection closes.
  if (req.hasBody && !body.done) await settleWithin(response.bodySent, 5000);
  return outcome();
}

const isContentLength = ([name]: [string, string]): boolean => name.length === 14 && name.toLowerCase() === 'content-length';

/** Remove, in place, every element `drop` selects. */
function removeAll<T>(list: T[], drop: (x: T) => boolean): void {
  let kept = 0;
  for (const x of list) if (!drop(x)) list[kept++] = x;
  list.length = kept;
}

function settleWithin(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return Promise.race([p.catch(() => undefined), timeout]).finally(() => clearTimeout(timer));
}

// ───────────────────────────── per-policy caches ─────────────────────────

const placeholderHeaderCache = new WeakMap<PolicyModel, ReturnType<typeof placeholderHeaders>>();

/** The `header_token` headers to read placeholders from, computed once per loaded policy. */
function headersFor(model: PolicyModel): ReturnType<typeof placeholderHeaders> {
  let h = placeholderHeaderCache.get(model);
  if (!h) {
    h = placeholderHeaders(model);
    placeholderHeaderCache.set(model, h);
  }
  return h;
}

// ───────────────────────────── routing ───────────────────────────────────

function routeRequest(conn: ConnectionInfo, req: IncomingRequest, policy: HttpPolicy): Route {
  if (req.method === 'CONNECT') throw new HttpParseError(405, 'CONNECT is only accepted by the proxy listener');
  // The HTTP/1.1 parser already holds its targets to this; an HTTP/2 `:path`
  // may carry `#` or non-ASCII bytes, and `POST /v1/refunds#x` would skip a
  // rule on `http.path == '/v1/refunds'` while most upstream routers cut the
  // fragment off and serve /v1/refunds.
  if (!isRequestTarget(req.target)) throw new HttpParseError(400, 'invalid request-target');
  const target = parseRequestTarget(req.target, req.method);
  if (req.protocol === 'h2' && target.form === 'absolute') throw new HttpParseError(400, ':path must be origin-form');
  if (conn.proxy && conn.identity === null && target.form !== 'absolute') {
    throw new HttpParseError(400, 'a request to the proxy needs an absolute URI (http://host/path) or CONNECT');
  }
  const scheme = target.form === 'absolute' ? target.scheme! : conn.scheme;
  if (target.form === 'absolute' && scheme !== conn.scheme && !conn.proxy) {
    throw new HttpParseError(400, `${scheme} URI on an ${conn.scheme} connection`);
  }
  const path = normalisePath(target.rawPath);

  if (conn.upstream) {
    // Sidecar listener: the endpoint's host, whatever the local Host says.
    const endpoint = conn.endpointId ? policy.model.endpoints.get(conn.endpointId) ?? null : null;
    return { target, host: conn.upstream.host, port: conn.upstream.port, endpoint, path, upstream: conn.upstream };
  }

  // absolute-form names the host; Host is then replaced (RFC 9112 §3.2.2).
  const authority = target.form === 'absolute' ? target.authority! : req.authority;
  let host: string;
  let port: number | undefined;
  if (authority) {
    ({ host, port } = parseAuthority(authority));
  } else if (conn.identity !== null) {
    host = conn.identity;
  } else {
    throw new HttpParseError(400, 'the request names no host');
  }
  if (conn.identity !== null) {
    if (host !== conn.identity) {
      throw new HttpParseError(421, `request for "${host}" on a connection for "${conn.identity}" (TLS server name and Host disagree)`);
    }
    if (port !== undefined && conn.port !== undefined && port !== conn.port) {
      throw new HttpParseError(421, `request for port ${port} on a connection to port ${conn.port}`);
    }
  }
  const effectivePort = port ?? conn.port ?? (scheme === 'https' ? 443 : 80);
  const found = policy.findEndpoint(host, effectivePort, conn.profile);
  if (conn.endpointId && found?.id !== conn.endpointId) {
    // The transport says which endpoint was dialed (a virtual IP): a request
    // naming another host would get that endpoint's credential sent elsewhere.
    throw new HttpParseError(421, `"${host}" is not a host of ${conn.endpointId}, the endpoint this connection was made to`);
  }
  const endpoint = found;
  return { target, host, port: effectivePort, endpoint, path, upstream: { host, port: effectivePort, tls: scheme === 'https' } };
}

// ───────────────────────────── upstream I/O ──────────────────────────────

interface UpstreamResponse {
  /** Settles once the request body has been handed to the upstream (or failed). */
  bodySent: Promise<void>;
  status: number;
  headers: FieldList;
  body: BodySource;
  /** Valid once `body` has ended. */
  trailers: () => FieldList;
  mayHaveTrailers: boolean;
}

/** The agent's body failed (framing error, disconnect, refused trailers) while it was being forwarded. */
class ClientBodyError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

function sendH2(
  session: http2.ClientHttp2Session,
  scheme: 'http' | 'https',
  authority: string,
  method: string,
  path: string,
  headers: Record<string, string | string[]>,
  body: { chunks: AsyncIterable<Buffer>; trailers: () => FieldList } | null,
): Promise<UpstreamResponse> {
  return new Promise((resolve, reject) => {
    const h2headers: http2.OutgoingHttpHeaders = { ...headers, ':method': method, ':path': path, ':scheme': scheme, ':authority': authority };
    // With a body the stream stays open for trailers; none means an empty end-of-stream.
    const stream = session.request(h2headers, { endStream: body === null, waitForTrailers: body !== null });
    let trailers: FieldList = [];
    let bodyError: unknown = null;
    let bodySent: Promise<void> = Promise.resolve();
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => {
      trailers = headerObjectPairs(t);
    });
    stream.on('response', (h: http2.IncomingHttpHeaders) => {
      resolve({ bodySent, status: Number(h[':status'] ?? 502), headers: headerObjectPairs(h), body: readableSource(stream), trailers: () => trailers, mayHaveTrailers: true });
    });
    stream.on('error', (err) => reject(bodyError ?? err));
    stream.on('close', () => reject(bodyError ?? new Error(`stream closed (code ${stream.rstCode})`)));
    if (body) {
      bodySent = (async () => {
        for await (const c of body.chunks) {
          if (stream.destroyed) throw new Error('upstream closed');
          if (!stream.write(c)) await drained(stream, 'upstream closed');
        }
        const t = body.trailers();
        stream.once('wantTrailers', () => stream.sendTrailers(fieldObject(t)));
        stream.end();
      })().catch((err: unknown) => {
        bodyError = err;
        stream.destroy(err as Error);
        throw err;
      });
      bodySent.catch(() => undefined);
    }
  });
}

function headerObjectPairs(h: http2.IncomingHttpHeaders): FieldList {
  const out: FieldList = [];
  for (const [k, v] of Object.entries(h)) {
    if (k.startsWith(':') || v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.push([k, String(one)]);
  }
  return out;
}

function fieldObject(fields: FieldList): http2.OutgoingHttpHeaders {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of fields) {
    const key = name.toLowerCase();
    const prev = out[key];
    out[key] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }
  return out;
}

/**
 * Copy the upstream body to the agent as it arrives (SSE, long polls),
 * through the scrubber. Each read takes everything received since the last
 * one, so a large body leaves in large writes while a lone SSE event still
 * goes out at once. Waits for the agent to take each write (backpressure).
 */
async function pump(source: BodySource, scrubber: Scrubber, sink: ResponseSink): Promise<void> {
  const cursor = scrubber.cursor();
  let ended = false;
  try {
    for (let chunk = await source.read(); chunk !== null; chunk = await source.read()) {
      const clean = cursor.push(chunk);
      if (clean.length) await sink.write(clean);
    }
    ended = true;
    const tail = cursor.end();
    if (tail.length) await sink.write(tail);
  } finally {
    // The agent went away (or the upstream failed): stop reading the upstream.
    if (!ended) source.destroy();
  }
}

async function forwardWebSocket(
  core: EngineCore,
  req: IncomingRequest,
  sink: ResponseSink,
  target: UpstreamTarget,
  path: string,
  headers: Record<string, string | string[]>,
  scrubber: Scrubber,
  enf: Enforcement,
  route: Route,
  bytesIn: () => number,
  outcome: (extra?: Partial<ExchangeOutcome>) => ExchangeOutcome,
): Promise<ExchangeOutcome> {
  const names = currentNameScrubber(core);
  let res: UpstreamResponse & { upgraded?: { socket: Duplex; head: Buffer } };
  try {
    res = await core.upstream.h1(target, { method: 'GET', path, headers, body: null, upgrade: true });
  } catch (err) {
    const reason = `upstream ${target.host}:${target.port} failed: ${describeUpstreamError(err)}`;
    sink.closeAfter();
    answer(sink, req, { status: 502, reason: scrubber.scrubText(reason), kind: 'upstream_error' });
    enf.finish({ bytesIn: bytesIn(), bytesOut: sink.bytesOut, status: '502' });
    return outcome({ close: true });
  }
  if (res.upgraded) {
    const fields = sanitiseResponseHeaders(res.headers, { websocket: true, scrubber, names });
    const { socket, head } = sink.takeOver!(101, fields);
    const baseOut = sink.bytesOut;
    relayWebSocket({
      agent: socket,
      agentHead: head,
      upstream: res.upgraded.socket,
      upstreamHead: res.upgraded.head,
      scrubber,
      hook: core.frameHook,
      session: { host: route.host, path: route.path.path, endpoint: enf.decision.endpoint },
      onDone: ({ fromAgent, toAgent }) => enf.finish({ bytesIn: bytesIn() + fromAgent, bytesOut: baseOut + toAgent, status: '101' }),
    });
    return outcome({ upgraded: true, close: false, bodyDone: true });
  }
  // The upstream refused the upgrade: relay its answer as a normal response, then close.
  const fields = sanitiseResponseHeaders(res.headers, { scrubber, names });
  const cl = fields.find(isContentLength);
  sink.closeAfter();
  sink.head(res.status, fields.filter((f) => !isContentLength(f)), cl ? Number(cl[1]) : null);
  try {
    await pump(res.body, scrubber, sink);
    sink.end();
    enf.finish({ bytesIn: bytesIn(), bytesOut: sink.bytesOut, status: String(res.status) });
  } catch {
    sink.abort();
    enf.finish({ bytesIn: bytesIn(), bytesOut: sink.bytesOut, status: `${res.status}-aborted` });
  }
  return outcome({ close: true });
}

function describeUpstreamError(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { code?: string };
  const code = e?.code ?? '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT_ALTNAME/.test(code)) return `certificate not trusted (${code}: ${e.message})`;
  return code ? `${code}: ${e.message}` : messageOf(err);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
