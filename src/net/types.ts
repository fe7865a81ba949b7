/**
 * What net/ needs from the rest of the gateway and what it hands over. net/
 * knows no policy: the composition root injects a `Directory` (which
 * endpoint, if any, a dialed name/IP and port mean for a profile) and the
 * protocol `Engines`; net/ delivers each tunnel connection to one engine
 * with a `ConnectionContext`, or relays / refuses it.
 */
import type { Socket } from 'node:net';
import type { EndpointType, Peer } from '../policy/types.js';

export interface DirectoryEndpoint {
  id: string;
  type: EndpointType;
}

export interface DnsEndpoint extends DirectoryEndpoint {
  /** Host patterns as declared (`api.github.com`, `db.internal:5432`, `*.example.com`, IP literals). */
  hosts: string[];
}

/** A placeholder `clawpatrol run` exports for a profile (shape of policy's `profilePlaceholders`). */
export interface RunPlaceholder {
  credential: string;
  placeholder: string;
  env?: string;
}

export interface Directory {
  /** Every endpoint with its hosts, any profile: the names the tunnel DNS answers with virtual IPs. */
  endpointsForDns(): DnsEndpoint[];
  /**
   * The endpoint that handles `hostOrIp:port` for `profile`, or null when the
   * profile has none (then the connection is an unknown host).
   */
  endpointFor(hostOrIp: string, port: number, profile: string): DirectoryEndpoint | null;
  /** `defaults.unknown_host` now. */
  unknownHost(): 'passthrough' | 'deny';
  /** Profile names, to validate enrolment (`devices add --profile`). */
  profiles(): string[];
  /** Placeholders exported by `clawpatrol run` for a profile. */
  placeholdersFor(profile: string): RunPlaceholder[];
}

export interface ConnectionContext {
  peer: Peer;
  profile: string;
  /** Set when the dialed VIP / SNI / Host / IP:port belongs to an endpoint of the profile. */
  endpointId?: string;
  /** The name the agent dialed: the VIP's name, else the SNI or Host it sent. */
  dialedHost?: string;
  /** The address the agent connected to (a VIP or a real address). */
  dialedIp: string;
  dialedPort: number;
  /** Server name of the TLS ClientHello, when there was one. */
  sni?: string;
}

/**
 * Takes over an accepted tunnel socket. Bytes the dispatcher read to
 * classify the connection are put back (`unshift`) and the socket is left
 * neither flowing nor paused, exactly like a fresh `net.Server` socket: add a
 * 'data' listener, pipe it, or wrap it in a `tls.TLSSocket` (which reads the
 * buffered bytes first). A throw/rejection closes the connection.
 */
export type ConnectionEngine = (socket: Socket, ctx: ConnectionContext) => void | Promise<void>;

export interface Engines {
  /** Endpoint type `postgres`. */
  postgres?: ConnectionEngine;
  /** TLS to an `https` / `kubernetes` / `clickhouse_http` endpoint (MITM). */
  tls?: ConnectionEngine;
  /** Plain HTTP to an `https` / `kubernetes` / `clickhouse_http` endpoint. */
  http?: ConnectionEngine;
  /** Endpoint type `clickhouse_native`. */
  clickhouse?: ConnectionEngine;
}

export type EngineName = keyof Engines;

/** One relayed or refused connection (the composition root turns these into audit records). */
export interface ConnectionEvent {
  time: string;
  peer: Peer;
  profile: string;
  outcome: 'relayed' | 'refused';
  reason: string;
  dialedIp: string;
  dialedPort: number;
  dialedHost?: string;
  sni?: string;
  /** Agent → upstream bytes (relays). */
  bytesOut: number;
  /** Upstream → agent bytes (relays). */
  bytesIn: number;
  durationMs: number;
}

export interface TransportEvents {
  /** A passthrough relay ended, or a connection was refused. */
  onConnection?(event: ConnectionEvent): void;
  /** A device enrolled, was approved or revoked (dashboard refresh, audit). */
  onDevice?(event: { kind: 'enrolled' | 'revoked' | 'left'; deviceId: string; name: string; profile: string }): void;
}
