/**
 * The gateway's state: `openStore` (SQLite in a private state directory by
 * default, PostgreSQL for a fleet of gateways) and where a policy puts it.
 */
export * from './types.js';
export { openStore } from './open.js';
export { ensurePrivateDir, assertPrivateFile } from './state-dir.js';
export { STATE_DB_FILE } from './sqlite.js';
export { stateDirFor, openStoreFor, STATE_DIR_ENV } from './config.js';
