/**
 * Two gateways' registries on one real PostgreSQL store: enrolments racing
 * on both never share a tunnel address or a public key, virtual IPs racing
 * on both never share an address, and each side learns what the other did
 * (`sync`, lookups that miss, VIP addresses it has not seen).
 */
import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';
import { openStore, type Store } from '../../src/store/index.js';
import type { KvStore } from '../../src/store/types.js';
import { PeerRegistry, PEER_NAMESPACE, type PeerChanges } from '../../src/net/peers.js';
import { VipTable, VIP_NAMESPACE, VIP_OFFSET_NAMESPACE } from '../../src/net/vips.js';
import { parseCidr } from '../../src/net/ip.js';
import { generateKeyPair } from '../../src/net/keys.js';

let pg: PgCluster;
let storeA: Store;
let storeB: Store;
let db = 0;

const subnet4 = parseCidr('10.55.0.0/27');
const subnet6 = parseCidr('fd7c::/64');
const range4 = parseCidr('10.78.0.0/16');
const range6 = parseCidr('fd78::/64');

beforeAll(async () => {
  pg = await startPgCluster();
}, 120_000);

afterAll(async () => {
  await storeA?.close();
  await storeB?.close();
  await pg?.stop();
});

beforeEach(async () => {
  await storeA?.close();
  await storeB?.close();
  // A fresh database per test: the two stores are two gateways' connections to it.
  const name = `gw_shared_${++db}`;
  pg.sql(`CREATE DATABASE ${name}`);
  storeA = await openStore({ postgres: pg.url(pg.superuser, pg.superPassword, name) });
  storeB = await openStore({ postgres: pg.url(pg.superuser, pg.superPassword, name) });
});

const input = (name: string, publicKey = generateKeyPair().publicKey) => ({ name, profile: 'dev', publicKey, tokenHash: null, enrolledBy: 'token' as const });

describe('peers on a shared store', () => {
  it('never hand out one tunnel address twice, however the enrolments race', async () => {
    const a = await PeerRegistry.open({ kv: storeA.kv, subnet4, subnet6 });
    const b = await PeerRegistry.open({ kv: storeB.kv, subnet4, subnet6 });
    const added = await Promise.all(Array.from({ length: 24 }, (_, i) => (i % 2 ? a : b).add(input(`d${i}`))));
    const addresses = added.map((p) => p.address4);
    expect(new Set(addresses).size).toBe(24);
    expect(new Set(added.map((p) => p.address6)).size).toBe(24);
    // /27: .2–.30 for devices; 24 taken, so five more fit and the sixth is refused.
    const rest = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).add(input(`e${i}`))));
    expect(rest.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
    expect(rest.find((r) => r.status === 'rejected')).toMatchObject({ reason: { status: 507 } });
  });

  it('never enrol one public key twice, also when both gateways get it at once', async () => {
    const a = await PeerRegistry.open({ kv: storeA.kv, subnet4, subnet6 });
    const b = await PeerRegistry.open({ kv: storeB.kv, subnet4, subnet6 });
    const key = generateKeyPair().publicKey;
    const results = await Promise.allSettled([a.add(input('x', key)), b.add(input('y', key))]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    expect(results.find((r) => r.status === 'rejected')).toMatchObject({ reason: { status: 409 } });
    // The loser's address claim was released: the next device gets the address right after the winner's.
    const next = await b.add(input('z'));
    expect(next.address4).toBe('10.55.0.3');
  });

  it("learn each other's enrolments, updates and removals, and release a removed device's address", async () => {
    const a = await PeerRegistry.open({ kv: storeA.kv, subnet4, subnet6 });
    const b = await PeerRegistry.open({ kv: storeB.kv, subnet4, subnet6 });
    const seen: PeerChanges[] = [];
    b.onRemoteChange((c) => {
      seen.push(c);
    });
    const d1 = await a.add(input('one'));
    const d2 = await a.add(input('two'));
    // A lookup on B that misses looks in the store.
    expect((await b.findById(d1.id))?.address4).toBe(d1.address4);
    expect(b.byAddress(d2.address4)?.id).toBe(d2.id);
    expect(seen.flatMap((c) => c.added.map((p) => p.id)).sort()).toEqual([d1.id, d2.id].sort());

    await a.update(d1.id, { tokenHash: 'ab'.repeat(32) });
    await a.remove(d2.id);
    const changes = await b.sync();
    expect(changes.updated.map((p) => p.id)).toEqual([d1.id]);
    expect(changes.removed.map((p) => p.id)).toEqual([d2.id]);
    expect(b.byTokenHash('ab'.repeat(32))?.id).toBe(d1.id);
    expect(b.byAddress(d2.address4)).toBeUndefined();
    // Nothing changed since: no news, no listener call.
    const calls = seen.length;
    expect(await b.sync()).toEqual({ added: [], removed: [], updated: [] });
    expect(seen).toHaveLength(calls);
    // d2's address is free again, for either gateway.
    expect((await b.add(input('three'))).address4).toBe(d2.address4);
  });

  it('claims the addresses of devices stored before claims existed, on open', async () => {
    const legacy = { id: 'dev_0000000001', ...input('old'), address4: '10.55.0.2', address6: 'fd7c::2', offset: 2, createdAt: new Date().toISOString() };
    await storeA.kv.put(PEER_NAMESPACE, legacy.id, legacy);
    await PeerRegistry.open({ kv: storeA.kv, subnet4, subnet6 });
    const b = await PeerRegistry.open({ kv: storeB.kv, subnet4, subnet6 });
    expect((await b.add(input('new'))).address4).toBe('10.55.0.3');
  });
});

/** The store's kv, counting how often the device list is read. */
function countingKv(kv: KvStore): KvStore & { lists: number } {
  const counted = {
    lists: 0,
    get: kv.get.bind(kv),
    put: kv.put.bind(kv),
    putIfAbsent: kv.putIfAbsent.bind(kv),
    delete: kv.delete.bind(kv),
    take: kv.take.bind(kv),
    list: <T,>(ns: string) => {
      if (ns === PEER_NAMESPACE) counted.lists++;
      return kv.list<T>(ns);
    },
  };
  return counted;
}

describe('lookups that miss', () => {
  it('read the store at most about once a second, however many unknown tokens arrive', async () => {
    const kv = countingKv(storeA.kv);
    const a = await PeerRegistry.open({ kv, subnet4, subnet6 });
    const other = await PeerRegistry.open({ kv: storeB.kv, subnet4, subnet6 });
    kv.lists = 0;
    const misses = await Promise.all(Array.from({ length: 200 }, (_, i) => a.find((r) => r.byTokenHash(`unknown-${i}`))));
    expect(misses.every((m) => m === undefined)).toBe(true);
    for (let i = 0; i < 50; i++) await a.find((r) => r.byTokenHash(`later-${i}`));
    expect(kv.lists).toBeLessThanOrEqual(2);
    // An id that does not exist costs one read, not a list; one that does (enrolled elsewhere) is found at once.
    expect(await a.findById('dev_ffffffffff')).toBeUndefined();
    expect(kv.lists).toBeLessThanOrEqual(2);
    const elsewhere = await other.add(input('elsewhere'));
    expect((await a.findById(elsewhere.id))?.address4).toBe(elsewhere.address4);
  });
});

describe('virtual IPs on a shared store', () => {
  it('never give one address to two names, and give one name one address', async () => {
    const a = await VipTable.open({ kv: storeA.kv, range4, range6 });
    const b = await VipTable.open({ kv: storeB.kv, range4, range6 });
    const names = Array.from({ length: 30 }, (_, i) => `n${i}.svc.example.com`);
    const got = await Promise.all([...names.map((n) => a.ensure(n, 'https.svc')), ...names.map((n) => b.ensure(n, 'https.svc'))]);
    const byName = new Map<string, string>();
    for (const r of got) {
      if (byName.has(r.name)) expect(r.v4, r.name).toBe(byName.get(r.name));
      byName.set(r.name, r.v4);
    }
    expect(new Set(byName.values()).size).toBe(30);
    expect(await storeA.kv.list(VIP_OFFSET_NAMESPACE)).toHaveLength(30);
  });

  it('resolve addresses the other gateway handed out (dispatch and PTR on this one)', async () => {
    const a = await VipTable.open({ kv: storeA.kv, range4, range6 });
    const b = await VipTable.open({ kv: storeB.kv, range4, range6 });
    const rec = await a.ensure('api.example.com', 'https.api');
    expect(b.byAddress(rec.v4)).toBeUndefined();
    expect((await b.resolve(rec.v4))?.name).toBe('api.example.com');
    expect((await b.resolve(rec.v6!))?.name).toBe('api.example.com');
    expect(await b.resolve('10.78.200.200')).toBeUndefined();
    // b's next allocation skips the offset it now knows about.
    expect((await b.ensure('other.example.com', 'https.api')).offset).not.toBe(rec.offset);
  });

  it('untangle a collision left by gateways from before offset claims: the second name gets a fresh address', async () => {
    const at = (name: string) => ({ name, v4: '10.78.0.1', v6: 'fd78::1', offset: 1, endpointId: 'https.svc', createdAt: new Date().toISOString() });
    await storeA.kv.put(VIP_NAMESPACE, 'a.svc.example.com', at('a.svc.example.com'));
    await storeA.kv.put(VIP_NAMESPACE, 'b.svc.example.com', at('b.svc.example.com'));
    const t = await VipTable.open({ kv: storeA.kv, range4, range6 });
    expect(t.byAddress('10.78.0.1')?.name).toBe('a.svc.example.com');
    const b = await t.ensure('b.svc.example.com', 'https.svc');
    expect(b.v4).not.toBe('10.78.0.1');
    expect((await storeA.kv.get<{ v4: string }>(VIP_NAMESPACE, 'b.svc.example.com'))?.v4).toBe(b.v4);
  });
});
