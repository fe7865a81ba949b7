import { openSqliteStore } from './sqlite.js';
import { StoreError, type OpenStoreOptions, type Store } from './types.js';

/** The single entry point to the gateway's state: SQLite in a private state dir, or PostgreSQL for a fleet. */
export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  if ('postgres' in opts) {
    if (!opts.postgres) throw new StoreError('openStore: the postgres URL is empty');
    // Loaded on demand: a gateway on SQLite never loads the PostgreSQL client.
    const { openPostgresStore } = await import('./postgres.js');
    return openPostgresStore(opts.postgres);
  }
  if (!opts.stateDir) throw new StoreError('openStore: stateDir is required');
  return openSqliteStore(opts.stateDir);
}
