/**
 * The one TCP listener (per address family) that nft TPROXY delivers tunnel
 * connections to. It binds loopback only, so nothing outside the host can
 * reach it directly, and carries `IP_TRANSPARENT` (`IPV6_TRANSPARENT`), which
 * the kernel requires before it assigns a TPROXY'd connection to a socket;
 * the accepted socket's local address is then the agent's original
 * destination. Set through the `sockopt` addon: Node exposes no such option.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { setsockopt } = require('sockopt') as { setsockopt(sock: unknown, level: number, name: number, value: number): void };

const SOL_IP = 0;
const IP_TRANSPARENT = 19;
const SOL_IPV6 = 41;
const IPV6_TRANSPARENT = 75;

export interface TransparentListener {
  port4: number;
  /** Null when IPv6 is unavailable on this host. */
  port6: number | null;
  close(): Promise<void>;
}

async function listenTransparent(host: '127.0.0.1' | '::1', onConnection: (s: Socket) => void): Promise<Server> {
  const server = createServer({ noDelay: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0, ipv6Only: host === '::1', backlog: 1024 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  if (host === '::1') setsockopt(server, SOL_IPV6, IPV6_TRANSPARENT, 1);
  else setsockopt(server, SOL_IP, IP_TRANSPARENT, 1);
  return server;
}

export async function startTransparentListener(opts: { ipv6: boolean; onConnection: (s: Socket) => void }): Promise<TransparentListener> {
  const servers: Server[] = [await listenTransparent('127.0.0.1', opts.onConnection)];
  if (opts.ipv6) servers.push(await listenTransparent('::1', opts.onConnection));
  const portOf = (s: Server | undefined) => {
    const a = s?.address();
    return a && typeof a === 'object' ? a.port : null;
  };
  return {
    port4: portOf(servers[0])!,
    port6: opts.ipv6 ? portOf(servers[1]) : null,
    async close() {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
