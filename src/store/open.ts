import { openSqliteStore } from './sqlite.js';
import { StoreError, type OpenStoreOptions, type Store } from './types.js';

/** The single entry point to the gateway's state: SQLite in a private state dir, or PostgreSQL for a fleet. */
export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  if ('postgres' in opts) {
    throw new StoreError('gateway.store.postgres is not supported yet; remove the store {} block to use SQLite in state_dir');
  }
  if (!opts.stateDir) throw new StoreError('openStore: stateDir is required');
  return openSqliteStore(opts.stateDir);
}
