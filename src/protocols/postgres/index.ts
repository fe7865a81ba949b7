/**
 * The Postgres engine's public face (the gateway's composition root and the
 * WireGuard transport import from here):
 *
 *   createPostgresEngine({ enforcer, policy, ca, scrubValues })
 *       → { handleConnection(socket, ctx), startEndpointListener({ endpointId, listen, profile }), close() }
 *
 *   startPostgresListener({ endpoint, listen, enforcer, policy, ca, profile })
 *       an endpoint's local `listen` address (gateway.local_profile)
 *   handlePostgresConnection(socket, { peer, profile, endpointId | dialedHost/dialedIp/dialedPort,
 *                                      enforcer, policy, ca })
 *       an already-accepted agent socket (tunnel VIP or transparent listener)
 *
 * Raw `clawpatrol test` fixtures register themselves from ./raw-fixture.js.
 */
export { createPostgresEngine } from './engine.js';
export type { PostgresEngine } from './engine.js';
export { handlePostgresConnection } from './connection.js';
export type { PostgresConnectionContext, PostgresEngineDeps, PostgresPolicyView, LeafProvider } from './connection.js';
export { startPostgresListener, parseListen } from './listener.js';
export type { PostgresListener, PostgresListenerOptions } from './listener.js';
export { CancelRegistry, defaultCancelRegistry } from './cancel.js';
