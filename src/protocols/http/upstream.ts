/**
 * Connections from the gateway to upstream servers: keep-alive pools for
 * HTTP/1.1 (the gateway's own client, h1-client.ts) and HTTP/2 sessions (node:http2),
 * TLS verified against the system roots plus the endpoint's `ca_cert`, and an
 * mTLS client certificate when the resolved credential is an `mtls_credential`.
 *
 * Pools are separated by TLS configuration: a connection authenticated with
 * one client certificate, or trusting one endpoint CA, is never reused for a
 * request that needs another.
 */
import http2 from 'node:http2';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import net, { isIP, type LookupFunction } from 'node:net';
import { H1Pool, type H1Request, type H1Response } from './h1-client.js';

export interface UpstreamTls {
  /** Pool key: equal keys share connections. */
  key: string;
  context: tls.SecureContext;
}

export interface UpstreamTarget {
  /** Host name or IP literal: what is dialed, sent as SNI and checked in the certificate. */
  host: string;
  port: number;
  /** null = plain TCP. */
  tls: UpstreamTls | null;
}

export interface UpstreamPoolOptions {
  /** DNS override for upstream connections (split horizon, tests). */
  lookup?: LookupFunction | undefined;
  /** Give up on a connection attempt after this long (default 10 s). */
  connectTimeoutMs?: number | undefined;
}

/** OS trust store bundles, first readable wins (SSL_CERT_FILE overrides). */
const SYSTEM_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Alpine
  '/etc/pki/tls/certs/ca-bundle.crt', // RHEL, Fedora
  '/etc/ssl/cert.pem', // macOS, BSD
];

let systemRootsCache: string[] | null = null;

/**
 * Node's bundled Mozilla roots plus the operating system's bundle, so
 * certificates an operator added with `update-ca-certificates` are trusted.
 * Node 20 has no API for the OS store (`tls.getCACertificates` is 22+).
 */
export function systemRoots(): string[] {
  if (systemRootsCache) return systemRootsCache;
  const roots = new Set(tls.rootCertificates);
  const files = process.env['SSL_CERT_FILE'] ? [process.env['SSL_CERT_FILE'], ...SYSTEM_BUNDLES] : SYSTEM_BUNDLES;
  for (const file of files) {
    try {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) roots.add(m[0] + '\n');
      break;
    } catch {
      // not this distribution's layout
    }
  }
  systemRootsCache = [...roots];
  return systemRootsCache;
}

export interface ClientCertificate {
  cert: string;
  key: string;
  ca?: string;
}

export class UpstreamPool {
  private readonly h1Pool: H1Pool;
  private readonly tlsContexts = new Map<string, Map<string, UpstreamTls>>();
  private tlsSerial = 0;
  private readonly h2Live = new Map<string, http2.ClientHttp2Session>();
  private readonly h2Pending = new Map<string, Promise<http2.ClientHttp2Session | null>>();
  /** Origins that did not negotiate h2: ask them with HTTP/1.1 from now on. */
  private readonly h1Only = new Set<string>();
  private readonly connectTimeoutMs: number;
  private closed = false;

  constructor(private readonly opts: UpstreamPoolOptions = {}) {
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.h1Pool = new H1Pool({ lookup: opts.lookup, connectTimeoutMs: this.connectTimeoutMs });
  }

  /**
   * The TLS configuration for an endpoint: system roots + `ca_cert` (+ the
   * credential's `ca` slot), and a client certificate for mTLS.
   */
  tlsFor(caCert: string | undefined, client: ClientCertificate | undefined): UpstreamTls {
    // Keyed by the PEM strings themselves: the policy and the vault hand out the
    // same string objects each time, so these lookups cost no hashing of PEM text.
    let byClient = this.tlsContexts.get(caCert ?? '');
    if (!byClient) {
      byClient = new Map();
      this.tlsContexts.set(caCert ?? '', byClient);
    }
    const clientKey = client ? `${client.cert}\0${client.key}\0${client.ca ?? ''}` : '';
    let entry = byClient.get(clientKey);
    if (!entry) {
      const ca = [...systemRoots()];
      if (caCert) ca.push(caCert);
      if (client?.ca) ca.push(client.ca);
      const context = tls.createSecureContext(client ? { ca, cert: client.cert, key: client.key } : { ca });
      entry = { key: String(++this.tlsSerial), context };
      byClient.set(clientKey, entry);
    }
    return entry;
  }

  /** An HTTP/1.1 exchange on a pooled connection (a fresh one for an upgrade). The caller sets every header, Host included. */
  h1(target: UpstreamTarget, req: H1Request): Promise<H1Response> {
    return this.h1Pool.request(target, req);
  }

  /**
   * A pooled HTTP/2 session to this origin, or null when the origin does not
   * speak h2 (remembered, so it is asked only once): ALPN over TLS, prior
   * knowledge (h2c) in cleartext — asked only for requests the agent itself
   * sent as HTTP/2, so an HTTP/1.1-only origin sees a preface it refuses
   * once, then HTTP/1.1.
   */
  h2Session(target: UpstreamTarget): Promise<http2.ClientHttp2Session | null> {
    const key = `${target.host}:${target.port}|${target.tls ? target.tls.key : 'h2c'}`;
    if (this.h1Only.has(key) || this.closed) return Promise.resolve(null);
    const live = this.h2Live.get(key);
    if (live && !live.closed && !live.destroyed) return Promise.resolve(live);
    let pending = this.h2Pending.get(key);
    if (!pending) {
      pending = this.connectH2(target, key).finally(() => this.h2Pending.delete(key));
      this.h2Pending.set(key, pending);
    }
    return pending;
  }

  close(): void {
    this.closed = true;
    this.h1Pool.close();
    for (const s of this.h2Live.values()) s.destroy();
    this.h2Live.clear();
    for (const p of this.h2Pending.values()) p.then((s) => s?.destroy(), () => undefined);
  }

  private async connectH2(target: UpstreamTarget, key: string): Promise<http2.ClientHttp2Session | null> {
    const session = target.tls ? await this.connectH2OverTls(target, key) : await this.connectH2c(target, key);
    if (!session) return null;
    const forget = () => {
      if (this.h2Live.get(key) === session) this.h2Live.delete(key);
    };
    session.on('close', forget);
    session.on('goaway', forget);
    session.on('error', forget);
    // Idle sessions must not keep the process alive.
    session.unref();
    if (this.closed) {
      session.destroy();
      return null;
    }
    this.h2Live.set(key, session);
    return session;
  }

  /** HTTP/2 when the origin picks `h2` by ALPN; null (and remembered) when it picks HTTP/1.1. */
  private async connectH2OverTls(target: UpstreamTarget, key: string): Promise<http2.ClientHttp2Session | null> {
    const options: tls.ConnectionOptions = {
      host: target.host,
      port: target.port,
      secureContext: target.tls!.context,
      ALPNProtocols: ['h2', 'http/1.1'],
    };
    if (isIP(target.host) === 0) options.servername = target.host;
    if (this.opts.lookup) options.lookup = this.opts.lookup;
    const socket = tls.connect(options);
    await connected(socket, 'secureConnect', this.connectTimeoutMs);
    if (socket.alpnProtocol !== 'h2') {
      this.h1Only.add(key);
      socket.destroy();
      return null;
    }
    return http2.connect(origin('https', target), { createConnection: () => socket });
  }

  /**
   * HTTP/2 with prior knowledge over cleartext: the session counts once the
   * origin's SETTINGS arrive. An origin that answers the preface any other
   * way (an HTTP/1.1 server's 400, a close) is remembered as HTTP/1.1-only;
   * one that cannot be reached at all is an error, as for HTTP/1.1.
   */
  private async connectH2c(target: UpstreamTarget, key: string): Promise<http2.ClientHttp2Session | null> {
    const socket = net.connect({ host: target.host, port: target.port, ...(this.opts.lookup ? { lookup: this.opts.lookup } : {}) });
    socket.setNoDelay(true);
    await connected(socket, 'connect', this.connectTimeoutMs);
    const session = http2.connect(origin('http', target), { createConnection: () => socket });
    const speaksH2 = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.connectTimeoutMs);
      session.once('remoteSettings', () => {
        clearTimeout(timer);
        resolve(true);
      });
      session.once('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
      session.once('close', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (speaksH2) return session;
    this.h1Only.add(key);
    session.destroy();
    return null;
  }
}

/** Resolves once `socket` emits `event` (connected, or TLS established); rejects on its error or after `timeoutMs`. */
function connected(socket: net.Socket, event: 'connect' | 'secureConnect', timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => socket.destroy(new Error(`connection to upstream timed out after ${timeoutMs} ms`)), timeoutMs);
    socket.once(event, () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** `scheme://host:port` of a target, an IPv6 literal in brackets. */
function origin(scheme: 'http' | 'https', target: UpstreamTarget): string {
  return `${scheme}://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
}
