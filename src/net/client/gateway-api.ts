/**
 * The joining machine's side of the enrolment API (see enrol-routes.ts).
 *
 * Only one request travels unauthenticated: fetching the gateway CA
 * (`fetchGatewayCa`), whose fingerprint `join` then checks. Every other
 * request — redeeming a join token, the device-code exchange, the tunnel
 * parameters, `status`, `leave` — goes over TLS to the same host and port,
 * verified against exactly the pinned CA: not the system roots, not any
 * other CA, and the certificate must name the host of the gateway URL.
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import type { DeviceStatus, JoinResult } from '../enrol-routes.js';

export class GatewayApiError extends Error {
  override name = 'GatewayApiError';
  constructor(
    message: string,
    /** HTTP status, or 0 when the gateway could not be reached. */
    readonly status: number,
  ) {
    super(message);
  }
}

/** The server is not who the pinned CA says it is (or not TLS at all): never retried, never sent anything. */
export class GatewayTlsError extends GatewayApiError {
  override name = 'GatewayTlsError';
}

/** Answers larger than this are not an enrolment API answer. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

/** OpenSSL verification failures, a name mismatch, and a server that does not speak TLS at all. */
const TLS_REJECTION = /^(UNABLE_TO_|CERT_|SELF_SIGNED_|DEPTH_ZERO_|ERR_TLS_CERT_|ERR_SSL_|EPROTO$)/;

function parseBaseUrl(baseUrl: string): URL {
  let u: URL;
  try {
    u = new URL(baseUrl);
  } catch {
    throw new GatewayApiError(`the gateway URL must be http(s)://host[:port], not ${baseUrl}`, 0);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new GatewayApiError(`the gateway URL must be http(s)://…, not ${baseUrl}`, 0);
  return u;
}

/** `http://gw:8080` and `https://gw:8080` both name the port that speaks TLS (the control server tells them apart by the first byte). */
function tlsOrigin(base: URL): URL {
  const u = new URL(base.href);
  const port = u.port || (u.protocol === 'http:' ? '80' : '443');
  u.protocol = 'https:';
  u.port = port === '443' ? '' : port;
  return u;
}

interface RawResponse {
  status: number;
  text: string;
}

function readBody(res: IncomingMessage): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_RESPONSE_BYTES) {
        res.destroy(new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    res.on('error', reject);
  });
}

function send(
  url: URL,
  method: string,
  opts: { headers: Record<string, string>; body?: string; timeoutMs: number; pinnedCaPem?: string; insecureBootstrap?: boolean },
): Promise<RawResponse> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const base: RequestOptions = {
    method,
    host,
    port: url.port || (url.protocol === 'https:' ? 443 : 80),
    path: url.pathname + url.search,
    headers: { ...opts.headers, host: url.host, ...(opts.body !== undefined ? { 'content-length': String(Buffer.byteLength(opts.body)) } : {}) },
    timeout: opts.timeoutMs,
    agent: false,
  };
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => readBody(res).then(resolve, reject);
    const req =
      url.protocol === 'https:'
        ? httpsRequest(
            {
              ...base,
              ...(opts.pinnedCaPem !== undefined
                ? // The pinned CA is the only trust anchor; the default checkServerIdentity matches the URL's host.
                  { ca: [opts.pinnedCaPem], rejectUnauthorized: true }
                : { rejectUnauthorized: !opts.insecureBootstrap }),
              ...(isIP(host) ? {} : { servername: host }),
              minVersion: 'TLSv1.2',
            },
            onResponse,
          )
        : httpRequest(base, onResponse);
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end(opts.body);
  });
}

function describeTransportError(err: unknown, where: string): GatewayApiError {
  const e = err as NodeJS.ErrnoException & { reason?: string };
  const code = e?.code ?? '';
  if (TLS_REJECTION.test(code)) {
    return new GatewayTlsError(
      `the gateway at ${where} did not prove it holds the pinned CA (${code || 'TLS'}: ${e.reason ?? e.message}); refusing to talk to it — ` +
        'something is intercepting, or the gateway CA changed (leave and join again if it was rotated)',
      0,
    );
  }
  return new GatewayApiError(`cannot reach the gateway at ${where}: ${e?.message ?? String(err)}`, 0);
}

function parseAnswer<T>(raw: RawResponse, okStatuses: number[]): T {
  let body: unknown;
  try {
    body = raw.text ? JSON.parse(raw.text) : {};
  } catch {
    body = { error: raw.text.slice(0, 200) };
  }
  if ((raw.status < 200 || raw.status > 299) && !okStatuses.includes(raw.status)) {
    const message = body && typeof body === 'object' && 'error' in body ? String((body as { error: unknown }).error) : `HTTP ${raw.status}`;
    throw new GatewayApiError(message, raw.status);
  }
  return body as T;
}

/**
 * The one unauthenticated request: the gateway's CA as the gateway (or
 * whoever is on the path) announces it. The caller must check its
 * fingerprint before trusting it for anything. Over an `https://` URL the
 * server's certificate cannot be checked yet (its CA is what we are
 * fetching): the fingerprint check is what protects this step either way.
 */
export async function fetchGatewayCa(baseUrl: string, timeoutMs = 15_000): Promise<{ caPem: string; fingerprint: string }> {
  const base = parseBaseUrl(baseUrl);
  let raw: RawResponse;
  try {
    raw = await send(new URL('/api/enrol/ca', base), 'GET', { headers: { accept: 'application/json' }, timeoutMs, insecureBootstrap: true });
  } catch (err) {
    throw new GatewayApiError(`cannot reach the gateway at ${baseUrl}: ${err instanceof Error ? err.message : String(err)}`, 0);
  }
  const ca = parseAnswer<{ caPem?: unknown; fingerprint?: unknown }>(raw, []);
  if (typeof ca.caPem !== 'string' || typeof ca.fingerprint !== 'string') throw new GatewayApiError(`${baseUrl} did not answer with a CA certificate`, raw.status);
  return { caPem: ca.caPem, fingerprint: ca.fingerprint };
}

/** Every authenticated or secret-carrying call, over TLS verified against the pinned CA only. */
export class GatewayApi {
  private readonly origin: URL;

  constructor(
    readonly baseUrl: string,
    private readonly pinnedCaPem: string,
    private readonly timeoutMs = 15_000,
  ) {
    this.origin = tlsOrigin(parseBaseUrl(baseUrl));
  }

  private async call<T>(method: string, path: string, opts: { body?: unknown; deviceToken?: string; okStatuses?: number[] } = {}): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.deviceToken) headers.authorization = `Bearer ${opts.deviceToken}`;
    let raw: RawResponse;
    try {
      raw = await send(new URL(path, this.origin), method, {
        headers,
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        timeoutMs: this.timeoutMs,
        pinnedCaPem: this.pinnedCaPem,
      });
    } catch (err) {
      throw describeTransportError(err, this.origin.origin);
    }
    return parseAnswer<T>(raw, opts.okStatuses ?? []);
  }

  joinWithToken(token: string, publicKey: string, name: string): Promise<JoinResult> {
    return this.call<JoinResult>('POST', '/api/enrol/token', { body: { token, publicKey, name } });
  }

  startDeviceCode(publicKey: string, name: string): Promise<{ deviceCode: string; userCode: string; expiresAt: string; interval: number }> {
    return this.call('POST', '/api/enrol/device', { body: { publicKey, name } });
  }

  pollDeviceCode(deviceCode: string): Promise<{ status: 'pending' | 'approved' | 'denied' | 'expired' | 'unknown'; join?: JoinResult; error?: string }> {
    return this.call('POST', '/api/enrol/device/poll', { body: { deviceCode }, okStatuses: [403, 404, 410] });
  }

  self(deviceToken: string): Promise<DeviceStatus> {
    return this.call<DeviceStatus>('GET', '/api/enrol/self', { deviceToken });
  }

  async leave(deviceToken: string): Promise<void> {
    await this.call('DELETE', '/api/enrol/self', { deviceToken });
  }

  /** Round trip to the control server's health check over the pinned TLS, in ms. */
  async ping(): Promise<number> {
    const started = performance.now();
    await this.call('GET', '/healthz');
    return performance.now() - started;
  }
}
