/**
 * The seams between the HTTP engine's parts: what an ingress adapter
 * (HTTP/1.1 or HTTP/2) hands the exchange, and what it gives back to write
 * the response. The exchange (`exchange.ts`) does not know which protocol the
 * agent speaks.
 */
import type { Duplex } from 'node:stream';
import type { LookupFunction } from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Endpoint, Peer, PolicyModel } from '../../policy/types.js';
import type { AuditSink, Enforcer, SecretResolver } from '../../gateway/contracts.js';
import type { HeaderField } from './h1-parser.js';
import type { FieldList } from './headers.js';
import type { UpstreamPool } from './upstream.js';
import type { WebSocketFrameHook } from './websocket.js';

/** What the engine needs from the compiled policy (`CompiledPolicy` satisfies it). */
export interface HttpPolicy {
  readonly model: PolicyModel;
  findEndpoint(host: string, port: number | undefined, profile?: string): Endpoint | null;
  needsFact(endpointId: string, fact: string): boolean;
}

/** Leaf certificates for terminated TLS (`GatewayCa` from src/vault/ca.ts satisfies it). */
export interface CertificateSource {
  /** Context serving the leaf for an SNI name (cached by the CA). */
  secureContextFor(host: string): Promise<SecureContext>;
  /** Leaf PEMs, for clients that send no SNI (IP literals). */
  leaf(hostOrIp: string): Promise<{ certPem: string; keyPem: string }>;
}

/** Shared by every connection of one engine. */
export interface EngineCore {
  enforcer: Enforcer;
  ca: CertificateSource;
  lookup?: LookupFunction | undefined;
  policy: () => HttpPolicy;
  secrets: Pick<SecretResolver, 'allValues'>;
  upstream: UpstreamPool;
  frameHook?: WebSocketFrameHook | undefined;
  /** Where requests refused before the policy saw them are recorded (the enforcer's audit sink). */
  audit?: Pick<AuditSink, 'append'> | undefined;
  log: (line: string) => void;
  /** Sockets open now (closed by `engine.close()`). */
  sockets: Set<Duplex>;
  /** A request body read that gets no bytes for this long fails with 408; overrides `limits.body_idle_timeout` (tests). */
  bodyIdleTimeoutMs?: number | undefined;
}

/** What the transport knows about one agent connection. */
export interface ConnectionInfo {
  peer: Peer;
  profile: string | undefined;
  /** The scheme the agent used (`https` once TLS is terminated). */
  scheme: 'http' | 'https';
  /**
   * The host this connection is for — TLS server name, CONNECT host, the
   * declared host behind a virtual IP. Every request on it must name this
   * host (else 421). null: each request's Host decides (plain HTTP, proxy).
   */
  identity: string | null;
  /** The port the agent dialed; undefined when each request says (proxy). */
  port: number | undefined;
  /** Endpoint the transport already resolved (virtual IP, `listen`). */
  endpointId?: string | undefined;
  /** A sidecar listener: requests go to this upstream whatever Host says. */
  upstream?: { host: string; port: number; tls: boolean } | undefined;
  /** The explicit proxy listener: absolute-form targets name the host. */
  proxy: boolean;
}

export interface IncomingRequest {
  protocol: 'h1' | 'h2';
  method: string;
  /** Request-target as sent (HTTP/2: `:path`). */
  target: string;
  /** Host header or `:authority`. */
  authority: string | null;
  /** Fields as received (HTTP/2: `host` synthesised from `:authority`, no pseudo-headers). */
  headers: HeaderField[];
  /** Declared length; null when unknown (chunked, HTTP/2 without content-length). */
  contentLength: number | null;
  /** False when the request certainly carries no body. */
  hasBody: boolean;
  body: AsyncIterator<Buffer>;
  /** Trailer fields that followed the body (valid once `body` is done; empty when there were none). */
  trailers(): HeaderField[];
  /** Bytes of the request head on the wire. */
  headBytes: number;
  /** `websocket` for an HTTP/1.1 upgrade request, else null. */
  upgrade: string | null;
  /** The agent said it takes response trailers (`TE: trailers`, always true on HTTP/2). */
  acceptsTrailers: boolean;
  /** Aborted when the agent goes away (cancels a pending approval). */
  signal: AbortSignal;
}

/** `none`: no body at all (HEAD, 204, 304, local trailers-only answers). */
export type BodyLength = number | null | 'none';

export interface ResponseSink {
  readonly started: boolean;
  readonly bytesOut: number;
  head(status: number, fields: FieldList, length: BodyLength, opts?: { trailers?: boolean }): void;
  /** Resolves once the agent can take more. */
  write(chunk: Buffer): Promise<void>;
  end(trailers?: FieldList): void;
  /** Cut the response off (the upstream failed mid-way). */
  abort(): void;
  /** The connection will close after this response: say so in it (HTTP/1.1 `Connection: close`). */
  closeAfter(): void;
  /** HTTP/1.1 only: send a 101 and hand over the socket with the bytes read past the request. */
  takeOver?: (status: number, fields: FieldList) => { socket: Duplex; head: Buffer };
}

export interface ExchangeOutcome {
  /** The request body was read to its end, so the connection could carry another request. */
  bodyDone: boolean;
  /** The connection must be closed after this exchange. */
  close: boolean;
  /** The socket now belongs to a WebSocket relay. */
  upgraded: boolean;
}
