/**
 * One Postgres engine per gateway, mirroring the HTTPS engine's shape: every
 * ingress (an endpoint's `listen`, a tunnel connection to a virtual IP, the
 * transparent listener) feeds the same session code, enforcer and policy.
 */
import type { Socket } from 'node:net';
import { handlePostgresConnection, type PostgresEngineDeps } from './connection.js';
import { startPostgresListener, type PostgresListener } from './listener.js';
import type { TransportContext } from '../../gateway/contracts.js';

export interface PostgresEngine {
  handleConnection(socket: Socket, ctx: TransportContext): Promise<void>;
  /** An endpoint's `listen` address; `profile` is `gateway.local_profile`. */
  startEndpointListener(opts: { endpointId: string; listen: string; profile?: string }): Promise<PostgresListener>;
  /** Close the listeners this engine started and every open connection. */
  close(): Promise<void>;
}

export function createPostgresEngine(deps: PostgresEngineDeps): PostgresEngine {
  const listeners = new Set<PostgresListener>();
  const sockets = new Set<Socket>();
  return {
    handleConnection(socket, ctx) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      const clean = Object.fromEntries(Object.entries(ctx).filter(([, v]) => v !== undefined)) as TransportContext;
      return handlePostgresConnection(socket, { ...deps, ...clean });
    },
    async startEndpointListener(opts) {
      const l = await startPostgresListener({ ...deps, endpoint: opts.endpointId, listen: opts.listen, ...(opts.profile !== undefined ? { profile: opts.profile } : {}) });
      listeners.add(l);
      return l;
    },
    async close() {
      await Promise.all([...listeners].map((l) => l.close()));
      listeners.clear();
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
  };
}
