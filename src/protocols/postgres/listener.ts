/**
 * An endpoint's local listener (`listen = "127.0.0.1:15432"`, ours): agents
 * on the gateway host (or a sidecar, or tests) connect here instead of
 * through the tunnel. Every connection is for that one endpoint and carries
 * the profile `gateway.local_profile`; the peer is `local:<listen address>`.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Endpoint } from '../../policy/types.js';
import { handlePostgresConnection, type PostgresEngineDeps } from './connection.js';

export interface PostgresListenerOptions extends PostgresEngineDeps {
  /** The endpoint (or its id) this listener serves. */
  endpoint: Endpoint | string;
  /** `host:port`; port 0 picks a free one (see `address`). IPv6 as `[::1]:15432`. */
  listen: string;
  /** Profile of agents on this listener (`gateway.local_profile`, default "default"). */
  profile?: string;
}

export interface PostgresListener {
  readonly address: AddressInfo;
  /** Open agent connections (for status and tests). */
  readonly connections: number;
  /** Stop accepting and end every open connection. */
  close(): Promise<void>;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(listen) ?? /^([^:]+):(\d+)$/.exec(listen);
  if (!m) throw new Error(`invalid listen address "${listen}": expected host:port`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port in listen address "${listen}"`);
  return { host: m[1]!, port };
}

export async function startPostgresListener(opts: PostgresListenerOptions): Promise<PostgresListener> {
  const { host, port } = parseListen(opts.listen);
  const endpointId = typeof opts.endpoint === 'string' ? opts.endpoint : opts.endpoint.id;
  const profile = opts.profile ?? 'default';
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const peerAddress = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`;
    void handlePostgresConnection(socket, {
      ...opts,
      peer: { id: `local:${opts.listen}`, name: `local listener ${opts.listen}`, address: peerAddress },
      profile,
      endpointId,
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    get connections() {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
