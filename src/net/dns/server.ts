/**
 * Socket adapters for the tunnel DNS: UDP sockets bound to the gateway's
 * tunnel addresses, and a handler for DNS-over-TCP connections (which reach
 * the gateway through the transparent listener like every other TCP
 * connection from the tunnel). Only tunnel peers get answers.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import type { Socket } from 'node:net';
import { canonicalIp, ipFamily } from '../ip.js';
import type { DnsResolver } from './resolver.js';

const MAX_TCP_MESSAGE = 65535;
const TCP_IDLE_MS = 10_000;
/** Queries answered concurrently per TCP connection (RFC 7766 pipelining), bounded. */
const TCP_MAX_INFLIGHT = 16;

export interface DnsServerOptions {
  /** Tunnel addresses of the gateway to bind (port 53 unless `port`). */
  addresses: string[];
  port?: number;
  resolver: DnsResolver;
  /** The enrolled device a tunnel source address belongs to, or null (then nothing is answered). */
  deviceAt: (ip: string) => string | null;
  log?: (line: string) => void;
}

export interface DnsServer {
  handleTcp(socket: Socket): void;
  close(): Promise<void>;
}

export async function startDnsServer(opts: DnsServerOptions): Promise<DnsServer> {
  const log = opts.log ?? (() => {});
  const sockets: UdpSocket[] = [];
  for (const address of opts.addresses) {
    const sock = createSocket({ type: ipFamily(address) === 6 ? 'udp6' : 'udp4', ipv6Only: ipFamily(address) === 6 });
    sock.on('error', (err) => log(`dns: udp ${address}: ${err.message}`));
    sock.on('message', (msg, rinfo) => {
      const device = opts.deviceAt(canonicalIp(rinfo.address));
      if (device === null) return;
      opts.resolver.answer(msg, 'udp', device).then(
        (reply) => {
          if (reply) sock.send(reply, rinfo.port, rinfo.address);
        },
        (err: unknown) => log(`dns: ${err instanceof Error ? err.message : String(err)}`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(opts.port ?? 53, address, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    sockets.push(sock);
  }

  return {
    handleTcp(socket: Socket) {
      // The dispatcher already attributed the connection to a peer; its source address says which.
      const device = opts.deviceAt(canonicalIp(socket.remoteAddress ?? '')) ?? undefined;
      let buf = Buffer.alloc(0);
      let inflight = 0;
      socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
      socket.on('error', () => socket.destroy());
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2) {
          const len = buf.readUInt16BE(0);
          if (len > MAX_TCP_MESSAGE || len < 12) {
            socket.destroy();
            return;
          }
          if (buf.length < 2 + len) break;
          const msg = Buffer.from(buf.subarray(2, 2 + len));
          buf = buf.subarray(2 + len);
          if (++inflight > TCP_MAX_INFLIGHT) {
            socket.destroy();
            return;
          }
          opts.resolver.answer(msg, 'tcp', device).then(
            (reply) => {
              inflight--;
              if (!reply || socket.destroyed) return;
              const prefix = Buffer.alloc(2);
              prefix.writeUInt16BE(reply.length);
              socket.write(Buffer.concat([prefix, reply]));
            },
            () => {
              inflight--;
              socket.destroy();
            },
          );
        }
      });
    },
    async close() {
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
