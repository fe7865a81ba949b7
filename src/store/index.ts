/**
 * `openStore` — the single entry point to the gateway's state. SQLite in a
 * private state directory by default; PostgreSQL for a fleet of gateways.
 */
import { openSqliteStore } from './sqlite.js';
import { StoreError, type OpenStoreOptions, type Store } from './types.js';

export * from './types.js';
export { ensurePrivateDir, assertPrivateFile } from './state-dir.js';
export { STATE_DB_FILE } from './sqlite.js';

export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  if ('postgres' in opts) {
    throw new StoreError('gateway.store.postgres is not supported yet; remove the store {} block to use SQLite in state_dir');
  }
  if (!opts.stateDir) throw new StoreError('openStore: stateDir is required');
  return openSqliteStore(opts.stateDir);
}
