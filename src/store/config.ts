/**
 * Where a policy's state lives: `gateway.state_dir` (overridden by
 * `CLAWPATROL_STATE_DIR`), and SQLite there unless `gateway.store.postgres`
 * names a shared PostgreSQL database. The gateway and the CLI both use this,
 * so `clawpatrol secret set` writes where the gateway reads.
 */
import { resolve } from 'node:path';
import { homedir } from 'node:os';
import type { GatewayConfig } from '../policy/types.js';
import { openStore } from './open.js';
import type { Store } from './types.js';

export const STATE_DIR_ENV = 'CLAWPATROL_STATE_DIR';

export function stateDirFor(gateway: Pick<GatewayConfig, 'stateDir'> | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const override = env[STATE_DIR_ENV];
  const dir = override && override.trim() ? override : gateway?.stateDir || '~/.clawpatrol';
  return resolve(dir.startsWith('~/') || dir === '~' ? homedir() + dir.slice(1) : dir);
}

export function openStoreFor(gateway: Pick<GatewayConfig, 'stateDir' | 'store'> | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Store> {
  const postgres = gateway?.store?.postgres;
  return postgres ? openStore({ postgres }) : openStore({ stateDir: stateDirFor(gateway, env) });
}
