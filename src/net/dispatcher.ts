/**
 * The socket side of dispatch: every TCP connection from the tunnel arrives
 * here (through the transparent listener), is attributed to its peer by its
 * WireGuard-authenticated source address, peeked at until `routeConnection`
 * can decide, and handed to an engine, the DNS handler, the relay, or
 * refused in the client's own protocol. Every socket is tracked per peer so
 * a revoked device loses its established connections at once, and so a
 * device cannot hold more than its cap of concurrent connections: the one
 * over the cap is reset before anything is read and recorded as refused.
 */
import type { Socket } from 'node:net';
import type { PeerRecord } from './peers.js';
import type { VipTable } from './vips.js';
import type { DestinationGuard } from './destinations.js';
import { canonicalIp } from './ip.js';
import { routeConnection, type RefusalStyle, type RouteDecision } from './route.js';
import { relayConnection } from './relay.js';
import { SNIFF_LIMIT } from './sniff.js';
import { BurstReporter } from './burst-reporter.js';
import type { ConnectionContext, ConnectionEvent, Directory, EngineName, Engines, TransportEvents } from './types.js';
import type { Peer } from '../policy/types.js';

export interface DispatcherOptions {
  peerByAddress(ip: string): PeerRecord | undefined;
  vips: VipTable;
  directory: Directory;
  engines: Engines;
  gatewayAddresses: string[];
  guard: DestinationGuard;
  dnsTcp(socket: Socket): void;
  events?: TransportEvents;
  log?: (line: string) => void;
  /** How long to wait for the client's first bytes before deciding without them (server-first protocols). */
  peekTimeoutMs?: number;
  /** Concurrent tunnel connections one device may hold (DNS over TCP included). */
  maxConnectionsPerDevice?: number;
}

export const DEFAULT_MAX_CONNECTIONS_PER_DEVICE = 512;
/** Refusals over the cap are audited at most once at the start and once at the end of each such window, per device. */
const OVER_CAP_REPORT_WINDOW_MS = 1000;

// TLS alert record: fatal (2), access_denied (49).
const TLS_ACCESS_DENIED = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x31]);

export function peerOf(record: PeerRecord): Peer {
  return { id: record.id, name: record.name, address: record.address4 };
}

/** Put peeked bytes back and leave the socket as a fresh one: not flowing, not paused. */
export function handBack(socket: Socket, bytes: Buffer): void {
  socket.pause();
  if (bytes.length) socket.unshift(bytes);
  // `pause()` marks the stream as explicitly paused, and a later 'data' listener
  // would then never start the flow; null is the state of a socket nobody read yet.
  (socket as unknown as { readableFlowing: boolean | null }).readableFlowing = null;
}

export class Dispatcher {
  private readonly byPeer = new Map<string, Set<Socket>>();
  private readonly gatewayAddresses: Set<string>;
  private readonly engineNames: Set<EngineName>;
  private readonly log: (line: string) => void;
  private readonly maxPerDevice: number;
  private readonly overCap: BurstReporter<ConnectionEvent>;

  constructor(private readonly opts: DispatcherOptions) {
    this.gatewayAddresses = new Set(opts.gatewayAddresses.map(canonicalIp));
    this.engineNames = new Set(Object.entries(opts.engines).filter(([, f]) => typeof f === 'function').map(([k]) => k as EngineName));
    this.log = opts.log ?? (() => {});
    this.maxPerDevice = opts.maxConnectionsPerDevice ?? DEFAULT_MAX_CONNECTIONS_PER_DEVICE;
    this.overCap = new BurstReporter(OVER_CAP_REPORT_WINDOW_MS, (e, folded) =>
      this.emit(folded ? { ...e, reason: `${e.reason} (and ${folded} more refused within ${OVER_CAP_REPORT_WINDOW_MS} ms)` } : e),
    );
  }

  /** Destroy every tracked connection of a peer; returns how many there were. */
  destroyPeer(peerId: string): number {
    const set = this.byPeer.get(peerId);
    if (!set) return 0;
    this.byPeer.delete(peerId);
    for (const s of set) {
      if (!s.destroyed) s.resetAndDestroy();
    }
    return set.size;
  }

  destroyAll(): number {
    let n = 0;
    for (const id of [...this.byPeer.keys()]) n += this.destroyPeer(id);
    this.overCap.flushAll();
    return n;
  }

  connectionCount(peerId: string): number {
    return this.byPeer.get(peerId)?.size ?? 0;
  }

  handle(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    let remote: string;
    let local: string;
    try {
      remote = canonicalIp(socket.remoteAddress ?? '');
      local = canonicalIp(socket.localAddress ?? '');
    } catch {
      socket.destroy();
      return;
    }
    const record = this.opts.peerByAddress(remote);
    if (!record) {
      // Not an enrolled peer (or revoked a moment ago): nothing to say to it.
      socket.resetAndDestroy();
      return;
    }
    const started = Date.now();
    const port = socket.localPort ?? 0;
    const peer = peerOf(record);
    const open = this.connectionCount(record.id);
    if (open >= this.maxPerDevice) {
      // Reset before reading a byte: a device over its cap gets no buffers, no timers, no engine.
      socket.resetAndDestroy();
      this.overCap.note(record.id, {
        time: new Date(started).toISOString(),
        peer,
        profile: record.profile,
        outcome: 'refused',
        reason: `device ${record.id} already holds ${open} tunnel connections, the per-device limit`,
        dialedIp: local,
        dialedPort: port,
        bytesOut: 0,
        bytesIn: 0,
        durationMs: 0,
      });
      return;
    }
    this.track(record.id, socket);
    const conn = { socket, record, peer, local, port, started };
    const inRange = this.opts.vips.inRange(local);
    const vip = this.opts.vips.byAddress(local);
    if (vip || !inRange) {
      this.classify(conn, { inRange, ...(vip ? { name: vip.name } : {}) });
      return;
    }
    // A VIP this gateway has not seen: another gateway on the store may have handed it out.
    this.opts.vips.resolve(local).then(
      (found) => {
        if (!socket.destroyed) this.classify(conn, { inRange, ...(found ? { name: found.name } : {}) });
      },
      (err: unknown) => {
        this.log(`net: looking up virtual IP ${local} failed: ${err instanceof Error ? err.message : String(err)}`);
        socket.resetAndDestroy();
      },
    );
  }

  /** Peek at the first bytes until `routeConnection` can decide, then apply the decision. */
  private classify(
    conn: { socket: Socket; record: PeerRecord; peer: Peer; local: string; port: number; started: number },
    vipInfo: { inRange: boolean; name?: string },
  ): void {
    const { socket, record, peer, local, port, started } = conn;
    let buffered = Buffer.alloc(0);
    let decided = false;
    const decide = (final: boolean) => {
      if (decided) return;
      let decision: RouteDecision;
      try {
        decision = routeConnection({
          dialedIp: local,
          dialedPort: port,
          profile: record.profile,
          bytes: buffered,
          final: final || buffered.length >= SNIFF_LIMIT,
          gatewayAddresses: this.gatewayAddresses,
          vip: vipInfo,
          directory: this.opts.directory,
          engines: this.engineNames,
        });
      } catch (err) {
        decision = { kind: 'refuse', reason: `dispatch failed: ${err instanceof Error ? err.message : String(err)}`, style: 'reset' };
      }
      if (decision.kind === 'need-bytes') return;
      decided = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      this.apply(socket, decision, buffered, { peer, profile: record.profile, dialedIp: local, dialedPort: port, started });
    };
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      decide(false);
    };
    const onEnd = () => decide(true);
    const timer = setTimeout(() => decide(true), this.opts.peekTimeoutMs ?? 300);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', () => clearTimeout(timer));
    decide(false);
  }

  private apply(
    socket: Socket,
    d: Exclude<RouteDecision, { kind: 'need-bytes' }>,
    buffered: Buffer,
    base: { peer: Peer; profile: string; dialedIp: string; dialedPort: number; started: number },
  ): void {
    if (d.kind === 'dns') {
      handBack(socket, buffered);
      this.opts.dnsTcp(socket);
      return;
    }
    if (d.kind === 'engine') {
      const ctx: ConnectionContext = {
        peer: base.peer,
        profile: base.profile,
        endpointId: d.endpointId,
        dialedIp: base.dialedIp,
        dialedPort: base.dialedPort,
        ...(d.dialedHost ? { dialedHost: d.dialedHost } : {}),
        ...(d.sni ? { sni: d.sni } : {}),
      };
      const engine = this.opts.engines[d.engine]!;
      handBack(socket, buffered);
      try {
        const r = engine(socket, ctx);
        if (r && typeof (r as Promise<void>).then === 'function') {
          (r as Promise<void>).catch((err: unknown) => this.engineFailed(socket, d.engine, err));
        }
      } catch (err) {
        this.engineFailed(socket, d.engine, err);
      }
      return;
    }
    const event = (outcome: ConnectionEvent['outcome'], reason: string, bytesOut = 0, bytesIn = 0): ConnectionEvent => ({
      time: new Date(base.started).toISOString(),
      peer: base.peer,
      profile: base.profile,
      outcome,
      reason,
      dialedIp: base.dialedIp,
      dialedPort: base.dialedPort,
      ...(d.dialedHost ? { dialedHost: d.dialedHost } : {}),
      ...(d.sni ? { sni: d.sni } : {}),
      bytesOut,
      bytesIn,
      durationMs: Date.now() - base.started,
    });
    if (d.kind === 'refuse') {
      refuse(socket, d.style, d.reason);
      this.emit(event('refused', d.reason));
      return;
    }
    void relayConnection(socket, { host: d.host, port: d.port, initial: buffered, guard: this.opts.guard }).then((r) => {
      if (r.failure) this.emit(event('refused', r.failure, r.bytesOut, r.bytesIn));
      else this.emit(event('relayed', 'unknown host passed through (unknown_host = "passthrough")', r.bytesOut, r.bytesIn));
    });
  }

  private engineFailed(socket: Socket, engine: string, err: unknown): void {
    this.log(`net: ${engine} engine failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    socket.destroy();
  }

  private emit(e: ConnectionEvent): void {
    this.log(
      `net: ${e.outcome} ${e.peer.id} → ${e.dialedHost ? `${e.dialedHost} ` : ''}${e.dialedIp}:${e.dialedPort}` +
        ` (${e.reason}; ${e.bytesOut} B out, ${e.bytesIn} B in)`,
    );
    try {
      this.opts.events?.onConnection?.(e);
    } catch (err) {
      this.log(`net: onConnection hook failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private track(peerId: string, socket: Socket): void {
    let set = this.byPeer.get(peerId);
    if (!set) this.byPeer.set(peerId, (set = new Set()));
    set.add(socket);
    socket.once('close', () => {
      const s = this.byPeer.get(peerId);
      s?.delete(socket);
      if (s && s.size === 0) this.byPeer.delete(peerId);
    });
  }
}

/** Refuse in the client's protocol when we know it, so the agent reads why. */
export function refuse(socket: Socket, style: RefusalStyle, reason: string): void {
  if (socket.destroyed) return;
  if (style === 'tls') {
    socket.end(TLS_ACCESS_DENIED);
  } else if (style === 'http') {
    const body = `clawpatrol: ${reason}\n`;
    socket.end(
      'HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n' +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  } else {
    socket.resetAndDestroy();
    return;
  }
  // Do not keep reading what the agent still sends after the refusal.
  socket.resume();
  socket.setTimeout(5000, () => socket.destroy());
}
