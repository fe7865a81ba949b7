/**
 * The dispatch decision for one tunnel connection, as a pure function of
 * what the agent dialed and the first bytes it sent:
 *
 *   the gateway's own tunnel address → DNS on port 53, nothing else;
 *   a virtual IP → the endpoint its name stands for (for the peer's profile);
 *   otherwise the TLS SNI or HTTP Host names the endpoint, else a declared
 *   IP:port does;
 *   anything else is an unknown host: relayed (passthrough) or refused.
 *
 * It asks for more bytes only when the answer depends on them, so
 * server-speaks-first protocols are decided once the peek times out.
 */
import type { EndpointType } from '../policy/types.js';
import { sniffHttp, sniffTls } from './sniff.js';
import type { Directory, EngineName } from './types.js';

export type RefusalStyle = 'tls' | 'http' | 'reset';

export type RouteDecision =
  | { kind: 'need-bytes' }
  | { kind: 'dns' }
  | { kind: 'engine'; engine: EngineName; endpointId: string; dialedHost?: string; sni?: string }
  | { kind: 'relay'; host: string; port: number; dialedHost?: string; sni?: string }
  | { kind: 'refuse'; reason: string; style: RefusalStyle; dialedHost?: string; sni?: string };

export interface RouteInput {
  dialedIp: string;
  dialedPort: number;
  profile: string;
  /** Bytes the agent sent so far. */
  bytes: Buffer;
  /** No more bytes will be waited for (peek timeout, buffer limit, end of stream). */
  final: boolean;
  /** The gateway's own tunnel addresses (canonical). */
  gatewayAddresses: ReadonlySet<string>;
  /** The dialed address is inside a VIP range; `name` when it is allocated. */
  vip: { inRange: boolean; name?: string };
  directory: Pick<Directory, 'endpointFor' | 'unknownHost'>;
  engines: ReadonlySet<EngineName>;
}

const TLS_HANDSHAKE = 0x16;

export function engineFor(type: EndpointType, tls: boolean): EngineName {
  switch (type) {
    case 'postgres':
      return 'postgres';
    case 'clickhouse_native':
      return 'clickhouse';
    case 'https':
    case 'kubernetes':
    case 'clickhouse_http':
      return tls ? 'tls' : 'http';
  }
}

/** Endpoint types whose engine is the same whatever the first byte is. */
function needsFirstByte(type: EndpointType): boolean {
  return type !== 'postgres' && type !== 'clickhouse_native';
}

export function routeConnection(input: RouteInput): RouteDecision {
  const { dialedIp, dialedPort, profile, bytes, final, directory } = input;

  if (input.gatewayAddresses.has(dialedIp)) {
    if (dialedPort === 53) return { kind: 'dns' };
    return { kind: 'refuse', reason: `the gateway's tunnel address serves only DNS (port 53), not port ${dialedPort}`, style: 'reset' };
  }

  const tls = sniffTls(bytes);
  const http = sniffHttp(bytes);
  const isTls = tls.kind === 'tls' || (bytes.length > 0 && bytes[0] === TLS_HANDSHAKE);
  const style: RefusalStyle = isTls ? 'tls' : http.kind === 'http' ? 'http' : 'reset';
  const sni = tls.kind === 'tls' && tls.sni ? tls.sni : undefined;
  const withSni = <T extends object>(d: T): T => (sni ? { ...d, sni } : d);

  const toEngine = (type: EndpointType, endpointId: string, dialedHost: string | undefined): RouteDecision => {
    const engine = engineFor(type, isTls);
    if (!input.engines.has(engine)) {
      return withSni({ kind: 'refuse', reason: `no ${engine} engine is running for ${endpointId}`, style, ...(dialedHost ? { dialedHost } : {}) });
    }
    return withSni({ kind: 'engine', engine, endpointId, ...(dialedHost ? { dialedHost } : {}) });
  };

  const unknown = (relayHost: string, dialedHost: string | undefined): RouteDecision => {
    const what = `${dialedHost ?? dialedIp}:${dialedPort}`;
    if (directory.unknownHost() === 'deny') {
      return withSni({
        kind: 'refuse',
        reason: `${what} is not an endpoint of profile "${profile}" and unknown_host = "deny"`,
        style,
        ...(dialedHost ? { dialedHost } : {}),
      });
    }
    return withSni({ kind: 'relay', host: relayHost, port: dialedPort, ...(dialedHost ? { dialedHost } : {}) });
  };

  if (input.vip.inRange) {
    const name = input.vip.name;
    if (!name) return { kind: 'refuse', reason: `${dialedIp} is not an allocated virtual IP`, style: 'reset' };
    const ep = directory.endpointFor(name, dialedPort, profile);
    if (!ep) {
      if (!final && bytes.length === 0) return { kind: 'need-bytes' }; // to refuse in the client's protocol
      return unknown(name, name);
    }
    if (needsFirstByte(ep.type) && !final && bytes.length === 0) return { kind: 'need-bytes' };
    return toEngine(ep.type, ep.id, name);
  }

  if (!final && (tls.kind === 'need-more' || http.kind === 'need-more')) return { kind: 'need-bytes' };

  const name = sni ?? (http.kind === 'http' && http.host ? http.host : undefined);
  if (name) {
    const ep = directory.endpointFor(name, dialedPort, profile);
    if (ep) return toEngine(ep.type, ep.id, name);
  }
  const byIp = directory.endpointFor(dialedIp, dialedPort, profile);
  if (byIp) return toEngine(byIp.type, byIp.id, name);
  return unknown(dialedIp, name);
}
