/**
 * The PostgreSQL store against a real PostgreSQL 15 cluster: the same
 * contract as SQLite, plus what only a shared database has — several
 * gateways migrating, appending to one audit chain and sharing one vault.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openStore, openStoreFor, StoreError, type Store } from '../../src/store/index.js';
import { openVault } from '../../src/vault/index.js';
import pg from 'pg';
import { AuditLog, auditRows, linkBatch, verifyStore } from '../../src/audit/index.js';
import { encodeBatch } from '../../src/audit/record-json.js';
import { storeContract } from './contract.js';
import { record } from '../audit/records.js';
import { credential, modelOf } from '../vault/model.js';

let cluster: PgCluster;
let dbs = 0;
let lastUrl = '';
const root = mkdtempSync(join(tmpdir(), 'clawpatrol-pgstore-'));

function freshDatabase(): string {
  const name = `cp_store_${dbs++}`;
  cluster.sql(`CREATE DATABASE ${name}`);
  cluster.createUser(`gw_${name}`, 'gw-pw');
  cluster.sql(`ALTER DATABASE ${name} OWNER TO gw_${name}`);
  cluster.sql(`GRANT ALL ON SCHEMA public TO gw_${name}`, name);
  cluster.sql(`ALTER SCHEMA public OWNER TO gw_${name}`, name);
  return cluster.url(`gw_${name}`, 'gw-pw', name);
}

beforeAll(async () => {
  cluster = await startPgCluster();
});
afterAll(async () => {
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

storeContract(
  'postgres',
  () => {
    lastUrl = freshDatabase();
    return openStore({ postgres: lastUrl });
  },
  () => openStore({ postgres: lastUrl }),
);

describe('postgres store: several gateways on one database', () => {
  it('reports where it is without the password, and refuses an unreachable or newer database clearly', async () => {
    const url = freshDatabase();
    const store = await openStore({ postgres: url });
    expect(store.kind).toBe('postgres');
    expect(store.location).not.toContain('gw-pw');
    expect(store.location).toContain('***');
    await store.close();
    const bad = cluster.url('nobody', 'secret-pw', 'nowhere');
    const err = await openStore({ postgres: bad }).then(() => null, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(StoreError);
    expect(err!.message).toMatch(/^cannot use postgres:\/\/nobody:\*\*\*@127\.0\.0\.1:\d+\/nowhere: /);
    expect(err!.message).not.toContain('secret-pw');
    const newer = freshDatabase();
    await (await openStore({ postgres: newer })).close();
    cluster.sql("INSERT INTO schema_migrations VALUES (999, 'future', 'x')", `cp_store_${dbs - 1}`);
    await expect(openStore({ postgres: newer })).rejects.toThrow(/schema version 999, newer than this clawpatrol understands/);
  });

  it('gateway.store.postgres in the policy selects it', async () => {
    const url = freshDatabase();
    const store = await openStoreFor({ stateDir: join(root, 'unused'), store: { postgres: url } });
    expect(store.kind).toBe('postgres');
    await store.close();
  });

  it('gateways starting together migrate once', async () => {
    const url = freshDatabase();
    const stores = await Promise.all([1, 2, 3, 4].map(() => openStore({ postgres: url })));
    await stores[0]!.kv.put('ns', 'k', 1);
    for (const s of stores) expect(await s.kv.get('ns', 'k')).toBe(1);
    expect(cluster.sql('SELECT COUNT(*) FROM schema_migrations', `cp_store_${dbs - 1}`).trim()).toBe(String(MIGRATIONS.length));
    await Promise.all(stores.map((s) => s.close()));
  });

  it('three gateways append 30 000 audit records to one chain: none lost, verifiable', async () => {
    const url = freshDatabase();
    const key = randomBytes(32);
    const stores = await Promise.all([0, 1, 2].map(() => openStore({ postgres: url })));
    const logs = stores.map((store) => new AuditLog({ store, key, batchSize: 200 }));
    // Each gateway links its batches on a writer thread with its own connection; the advisory lock keeps one chain.
    for (const log of logs) expect(log.stats().writer).toBe('thread');
    await Promise.all(
      logs.map(async (log, g) => {
        for (let i = 0; i < 10_000; i++) {
          log.append(record(i, { peer: `gw${g}`, bytesIn: i }));
          if (i % 500 === 0) await new Promise((r) => setTimeout(r, 1));
        }
        await log.close();
      }),
    );
    const seen = new Set<string>();
    for await (const r of auditRows(stores[0]!)) {
      const rec = JSON.parse(r.record) as { peer: string; bytesIn: number };
      seen.add(`${rec.peer}/${rec.bytesIn}`);
    }
    expect(seen.size).toBe(30_000);
    expect(await verifyStore(stores[1]!, key)).toMatchObject({ ok: true, count: 30_000 });
    const pruner = new AuditLog({ store: stores[2]!, key, retention: { maxRecords: 1000 }, pruneIntervalMs: 0 });
    expect(await pruner.prune()).toBe(29_000);
    expect(await verifyStore(stores[0]!, key)).toMatchObject({ ok: true, count: 1000, fromCheckpoint: 29_000 });
    await pruner.close();
    await Promise.all(stores.map((s) => s.close()));
  }, 120_000);

  it('upgrades a schema-2 database: its audit records move into segments unchanged, still verify, and the chain goes on', async () => {
    const url = freshDatabase();
    await (await openStore({ postgres: url })).close();
    // Make it what a clawpatrol with migrations 1–2 left behind: one row per record.
    const legacy = linkBatch(null, encodeBatch([record(1), record(2), record(3)], 0), null);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`DROP TABLE audit_segments; DELETE FROM schema_migrations WHERE version > 2;
        CREATE TABLE audit_records (seq BIGINT PRIMARY KEY, ts BIGINT NOT NULL, record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)`);
      for (const r of legacy.rows) {
        await client.query('INSERT INTO audit_records VALUES ($1, $2, $3, $4, $5)', [r.seq, r.ts, r.record, r.prevHash, r.hash]);
      }
      await client.query('INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, $1, $2, NULL)', [legacy.head.seq, legacy.head.hash]);
    } finally {
      await client.end();
    }
    const upgraded = await openStore({ postgres: url });
    try {
      expect(await upgraded.audit.range({ limit: 10 })).toEqual(legacy.rows);
      const log = new AuditLog({ store: upgraded, key: null });
      log.append(record(4));
      await log.close();
      expect(await verifyStore(upgraded, null)).toMatchObject({ ok: true, count: 4, firstSeq: 1, lastSeq: 4 });
      expect((await upgraded.audit.range({ afterSeq: 2, limit: 10 })).map((r) => r.seq)).toEqual([3, 4]);
    } finally {
      await upgraded.close();
    }
  });

  it('gateways share one vault (same key) and one CA-style internal secret', async () => {
    const url = freshDatabase();
    const key = randomBytes(32).toString('base64');
    const env = { CLAWPATROL_VAULT_KEY: key };
    const model = modelOf(credential('bearer_token', 'github'));
    const [a, b] = await Promise.all([openStore({ postgres: url }), openStore({ postgres: url })]);
    const va = await openVault({ store: a!, stateDir: join(root, 'gw-a'), model: () => model, env, refreshMs: 0 });
    const vb = await openVault({ store: b!, stateDir: join(root, 'gw-b'), model: () => model, env, refreshMs: 0 });
    await va.set('github', undefined, 'shared-token');
    await vb.refresh();
    expect(vb.resolve('bearer_token.github')).toMatchObject({ slots: { token: 'shared-token' } });
    // First writer wins for internal secrets created on first start.
    const results = await Promise.all([va.setInternalIfAbsent('gateway.ca', 'bundle', 'from-a'), vb.setInternalIfAbsent('gateway.ca', 'bundle', 'from-b')]);
    expect(results.filter(Boolean)).toHaveLength(1);
    await va.refresh();
    expect(va.getInternal('gateway.ca', 'bundle')).toBe(vb.getInternal('gateway.ca', 'bundle'));
    // A gateway with another key is refused.
    await expect(
      openVault({ store: a!, stateDir: join(root, 'gw-c'), model: () => model, env: { CLAWPATROL_VAULT_KEY: randomBytes(32).toString('base64') }, refreshMs: 0 }),
    ).rejects.toThrow(/wrong vault key/);
    // The database never sees the plaintext.
    const dump = cluster.sql('SELECT encode(sealed, \'escape\') FROM secrets', `cp_store_${dbs - 1}`);
    expect(dump).not.toContain('shared-token');
    await a!.close();
    await b!.close();
  });
});
