/**
 * Behaviour every Store backend must have. Each backend's test file calls
 * `storeContract` with a factory that opens a fresh, empty store.
 */
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { openStore, type AuditRow, type Store } from '../../src/store/index.js';

export function storeContract(name: string, open: () => Promise<Store>, reopen?: () => Promise<Store>): void {
  describe(`${name}: store contract`, () => {
    let store: Store;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('kv: put/get/list/delete round-trip JSON documents by namespace', async () => {
      await store.kv.put('wireguard.peers', 'b', { ip: '10.55.0.3', tags: ['x'], n: 1.5, ok: true, none: null });
      await store.kv.put('wireguard.peers', 'a', { ip: '10.55.0.2' });
      await store.kv.put('dns.vips', 'a', 'other namespace');
      expect(await store.kv.get('wireguard.peers', 'b')).toEqual({ ip: '10.55.0.3', tags: ['x'], n: 1.5, ok: true, none: null });
      expect(await store.kv.get('wireguard.peers', 'zzz')).toBeUndefined();
      const listed = await store.kv.list('wireguard.peers');
      expect(listed.map((e) => e.key)).toEqual(['a', 'b']);
      expect(listed[0]!.value).toEqual({ ip: '10.55.0.2' });
      expect(Date.parse(listed[0]!.updatedAt)).not.toBeNaN();
      await store.kv.put('wireguard.peers', 'a', { ip: '10.55.0.9' });
      expect(await store.kv.get('wireguard.peers', 'a')).toEqual({ ip: '10.55.0.9' });
      expect(await store.kv.delete('wireguard.peers', 'a')).toBe(true);
      expect(await store.kv.delete('wireguard.peers', 'a')).toBe(false);
      expect((await store.kv.list('wireguard.peers')).map((e) => e.key)).toEqual(['b']);
      expect(await store.kv.get('dns.vips', 'a')).toBe('other namespace');
    });

    it('kv: returns a fresh copy, never the object that was put', async () => {
      const doc = { list: [1] };
      await store.kv.put('ns', 'k', doc);
      doc.list.push(2);
      const got = await store.kv.get<{ list: number[] }>('ns', 'k');
      expect(got).toEqual({ list: [1] });
    });

    it('kv: rejects values JSON cannot store', async () => {
      await expect(store.kv.put('ns', 'k', undefined)).rejects.toThrow(/not JSON-serialisable/);
      await expect(store.kv.put('ns', 'k', () => 1)).rejects.toThrow(/not JSON-serialisable/);
    });

    it('kv: putIfAbsent inserts once; take hands a value to exactly one caller', async () => {
      expect(await store.kv.putIfAbsent('enrol.tokens', 't1', { profile: 'ci' })).toBe(true);
      expect(await store.kv.putIfAbsent('enrol.tokens', 't1', { profile: 'other' })).toBe(false);
      expect(await store.kv.get('enrol.tokens', 't1')).toEqual({ profile: 'ci' });
      const results = await Promise.all([1, 2, 3, 4].map(() => store.kv.take('enrol.tokens', 't1')));
      expect(results.filter((r) => r !== undefined)).toEqual([{ profile: 'ci' }]);
      expect(await store.kv.get('enrol.tokens', 't1')).toBeUndefined();
    });

    it('secrets: stores sealed rows and bumps the version on every change', async () => {
      const v0 = await store.secrets.version();
      const row = {
        owner: 'bearer_token.github',
        slot: 'token',
        keyId: 'k1',
        nonce: Buffer.from('000102030405060708090a0b', 'hex'),
        sealed: Buffer.from('deadbeef', 'hex'),
        updatedAt: '2025-01-01T00:00:00.000Z',
      };
      await store.secrets.put(row);
      expect(await store.secrets.insert({ ...row, owner: 'mtls_credential.db', slot: 'cert' })).toBe(true);
      expect(await store.secrets.insert({ ...row, owner: 'mtls_credential.db', slot: 'cert', keyId: 'other' })).toBe(false);
      await store.secrets.put({ ...row, owner: 'mtls_credential.db', slot: 'key' });
      const v1 = await store.secrets.version();
      expect(v1).toBeGreaterThan(v0);
      const rows = await store.secrets.list();
      expect(rows.map((r) => `${r.owner}/${r.slot}`)).toEqual([
        'bearer_token.github/token',
        'mtls_credential.db/cert',
        'mtls_credential.db/key',
      ]);
      expect(Buffer.compare(rows[0]!.nonce, row.nonce)).toBe(0);
      expect(Buffer.compare(rows[0]!.sealed, row.sealed)).toBe(0);
      expect(rows[0]!.keyId).toBe('k1');
      await store.secrets.put({ ...row, sealed: Buffer.from('cafe', 'hex'), updatedAt: '2025-02-01T00:00:00.000Z' });
      const v2 = await store.secrets.version();
      expect(v2).toBeGreaterThan(v1);
      const updated = (await store.secrets.list()).find((r) => r.owner === 'bearer_token.github')!;
      expect(updated.sealed.toString('hex')).toBe('cafe');
      expect(updated.updatedAt).toBe('2025-02-01T00:00:00.000Z');
      expect(await store.secrets.delete('mtls_credential.db')).toBe(2);
      expect(await store.secrets.delete('bearer_token.github', 'nope')).toBe(0);
      expect(await store.secrets.version()).toBeGreaterThan(v2);
      expect(await store.secrets.delete('bearer_token.github', 'token')).toBe(1);
      expect(await store.secrets.list()).toEqual([]);
    });

    it('audit: links batches under the head, pages by seq, prunes with a checkpoint', async () => {
      const link = (n: number, baseTs: number) => (head: { seq: number; hash: string } | null) => {
        const rows: AuditRow[] = [];
        let seq = head?.seq ?? 0;
        let prev = head?.hash ?? 'genesis';
        for (let i = 0; i < n; i++) {
          seq++;
          const hash = `h${seq}`;
          rows.push({ seq, ts: baseTs + seq, record: `{"seq":${seq}}`, prevHash: prev, hash });
          prev = hash;
        }
        return { rows, head: { seq, hash: prev, mac: 'm' + seq } };
      };
      expect(await store.audit.head()).toBeNull();
      expect(await store.audit.firstSeq()).toBeNull();
      await store.audit.append(link(3, 1000));
      const written = await store.audit.append(link(2, 1000));
      expect(written.map((r) => r.seq)).toEqual([4, 5]);
      expect(written[0]!.prevHash).toBe('h3');
      expect(await store.audit.head()).toEqual({ seq: 5, hash: 'h5', mac: 'm5' });
      expect(await store.audit.count()).toBe(5);
      const page = await store.audit.range({ afterSeq: 1, limit: 2 });
      expect(page.map((r) => r.seq)).toEqual([2, 3]);
      expect(page[0]).toEqual({ seq: 2, ts: 1002, record: '{"seq":2}', prevHash: 'h1', hash: 'h2' });
      expect((await store.audit.range({ sinceTs: 1004, limit: 10 })).map((r) => r.seq)).toEqual([4, 5]);
      expect(await store.audit.firstSeqAtOrAfter(1003)).toBe(3);
      expect(await store.audit.firstSeqAtOrAfter(99999)).toBeNull();
      expect(await store.audit.prune(2, (seq, hash) => `mac:${seq}:${hash}`)).toBe(2);
      expect(await store.audit.firstSeq()).toBe(3);
      const cp = await store.audit.checkpoint();
      expect(cp).toMatchObject({ seq: 2, hash: 'h2', mac: 'mac:2:h2' });
      expect(await store.audit.count()).toBe(3);
      // a prune to a seq that no longer exists is a no-op
      expect(await store.audit.prune(1, () => null)).toBe(0);
    });

    it('audit: a batch appended again under the same id is not linked twice; its stored rows come back', async () => {
      const link = (tag: string) => (head: { seq: number; hash: string } | null) => {
        const seq = (head?.seq ?? 0) + 1;
        const row = { seq, ts: seq, record: `{"tag":"${tag}"}`, prevHash: head?.hash ?? 'g', hash: `h${seq}` };
        return { rows: [row], head: { seq, hash: row.hash, mac: null } };
      };
      const first = await store.audit.append(link('a'), 'batch-1');
      const again = await store.audit.append(link('a, resent'), 'batch-1');
      expect(again).toEqual(first);
      await store.audit.append(link('b'), 'batch-2');
      await store.audit.append(link('c'));
      expect((await store.audit.range({ limit: 10 })).map((r) => [r.seq, r.record])).toEqual([
        [1, '{"tag":"a"}'],
        [2, '{"tag":"b"}'],
        [3, '{"tag":"c"}'],
      ]);
      expect(await store.audit.head()).toMatchObject({ seq: 3, hash: 'h3' });
    });

    it('audit: concurrent appends never fork the chain', async () => {
      const linkOne = (head: { seq: number; hash: string } | null) => {
        const seq = (head?.seq ?? 0) + 1;
        const row = { seq, ts: seq, record: '{}', prevHash: head?.hash ?? 'g', hash: `h${seq}` };
        return { rows: [row], head: { seq, hash: row.hash, mac: null } };
      };
      await Promise.all(Array.from({ length: 50 }, () => store.audit.append(linkOne)));
      const rows = await store.audit.range({ limit: 100 });
      expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      rows.forEach((r, i) => expect(r.prevHash).toBe(i === 0 ? 'g' : `h${i}`));
    });

    it('reopenOptions() opens a second connection to the same store (the audit writer thread\'s)', async () => {
      const options = store.reopenOptions?.();
      expect(options).toBeDefined();
      const other = await openStore(options!);
      try {
        expect(other.kind).toBe(store.kind);
        expect(other.location).toBe(store.location);
        await store.kv.put('ns', 'shared', { from: 'first' });
        expect(await other.kv.get('ns', 'shared')).toEqual({ from: 'first' });
        await other.audit.append((head) => ({
          rows: [{ seq: (head?.seq ?? 0) + 1, ts: 1, record: '{}', prevHash: head?.hash ?? 'g', hash: 'from-other' }],
          head: { seq: (head?.seq ?? 0) + 1, hash: 'from-other', mac: null },
        }));
        expect(await store.audit.head()).toEqual({ seq: 1, hash: 'from-other', mac: null });
      } finally {
        await other.close();
      }
    });

    if (reopen) {
      it('keeps data across reopen (migrations are idempotent)', async () => {
        await store.kv.put('ns', 'persist', { v: 1 });
        await store.close();
        store = await reopen();
        expect(await store.kv.get('ns', 'persist')).toEqual({ v: 1 });
      });
    }
  });
}
