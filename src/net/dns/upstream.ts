/**
 * Forwarding undeclared names to the gateway host's own resolvers (the
 * `nameserver` lines of its /etc/resolv.conf). The query goes out byte for
 * byte with a fresh random id; the reply comes back with the agent's id
 * restored, so the agent's resolver sees an ordinary answer. UDP queries are
 * forwarded over UDP (a truncated reply makes the agent retry over TCP),
 * TCP queries over TCP.
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { readFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { canonicalIp, ipFamily } from '../ip.js';
import type { DnsTransport } from './resolver.js';

export interface DnsUpstream {
  query(query: Buffer, transport: DnsTransport): Promise<Buffer>;
}

const MAX_TCP_MESSAGE = 65535;

/** `nameserver` addresses of a resolv.conf text (IPv6 zone ids dropped). */
export function parseResolvConf(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const addr = m?.[1]?.replace(/%.*$/, '');
    if (addr && ipFamily(addr) !== null) out.push(addr);
  }
  return out;
}

export function systemNameservers(path = '/etc/resolv.conf'): string[] {
  try {
    return parseResolvConf(readFileSync(path, 'utf8'));
  } catch {
    return [];
  }
}

export interface ForwarderOptions {
  servers: Array<string | { host: string; port: number }>;
  timeoutMs?: number;
}

export function forwarder(opts: ForwarderOptions): DnsUpstream {
  const servers = opts.servers.map((s) => (typeof s === 'string' ? { host: s, port: 53 } : s));
  const timeoutMs = opts.timeoutMs ?? 2500;
  if (servers.length === 0) throw new Error('no upstream DNS servers');
  return {
    async query(query: Buffer, transport: DnsTransport): Promise<Buffer> {
      if (query.length < 12) throw new Error('query shorter than a DNS header');
      const clientId = query.readUInt16BE(0);
      let lastError: unknown = null;
      for (const server of servers) {
        const id = randomInt(0, 0x10000);
        const out = Buffer.from(query);
        out.writeUInt16BE(id, 0);
        try {
          const reply = transport === 'udp' ? await viaUdp(server, out, id, timeoutMs) : await viaTcp(server, out, id, timeoutMs * 2);
          const restored = Buffer.from(reply);
          restored.writeUInt16BE(clientId, 0);
          return restored;
        } catch (err) {
          lastError = err;
        }
      }
      throw lastError instanceof Error ? lastError : new Error(String(lastError));
    },
  };
}

function viaUdp(server: { host: string; port: number }, query: Buffer, id: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(ipFamily(server.host) === 6 ? 'udp6' : 'udp4');
    const timer = setTimeout(() => finish(new Error(`no answer from ${server.host} within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | null, reply?: Buffer) => {
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(reply!);
    };
    sock.on('error', (err) => finish(err));
    sock.on('message', (msg, rinfo) => {
      // Only the server we asked, only our id: anything else is spoofing or noise.
      if (canonicalIp(rinfo.address) !== canonicalIp(server.host) || rinfo.port !== server.port || msg.length < 12 || msg.readUInt16BE(0) !== id) return;
      finish(null, msg);
    });
    sock.send(query, server.port, server.host, (err) => {
      if (err) finish(err);
    });
  });
}

function viaTcp(server: { host: string; port: number }, query: Buffer, id: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect(server.port, server.host);
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`no TCP answer from ${server.host} within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | null, reply?: Buffer) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    sock.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (len > MAX_TCP_MESSAGE) return finish(new Error('oversized TCP DNS reply'));
      if (buf.length < 2 + len) return;
      const msg = buf.subarray(2, 2 + len);
      if (msg.length < 12 || msg.readUInt16BE(0) !== id) return finish(new Error('TCP DNS reply with a foreign id'));
      finish(null, msg);
    });
    sock.on('error', (err) => finish(err));
    sock.on('end', () => finish(new Error(`${server.host} closed the TCP DNS connection`)));
  });
}
