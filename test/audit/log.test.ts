import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { openStore, type Store } from '../../src/store/index.js';
import {
  AuditLog,
  AuditClosedError,
  verifyStore,
  verifyChain,
  auditRows,
  exportLine,
  rowsFromLines,
  canonicalJson,
  chainHash,
  StoreAuditWriter,
  type AuditWriter,
} from '../../src/audit/index.js';
import { record } from './records.js';
import { flakyWriter } from './support/flaky-writer.js';
import { encodeInSlices } from '../../src/audit/log.js';
import { encodeBatch } from '../../src/audit/record-json.js';
import { editStoredRows, storedRow } from './support/stored-log.js';

const here = dirname(fileURLToPath(import.meta.url));

describe('audit log', () => {
  let root: string;
  let stateDir: string;
  let store: Store;
  const key = randomBytes(32);
  const db = () => new Database(join(stateDir, 'state.db'));

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'clawpatrol-audit-'));
    stateDir = join(root, 'state');
    store = await openStore({ stateDir });
  });
  afterEach(async () => {
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  async function fill(n: number, opts: Partial<ConstructorParameters<typeof AuditLog>[0]> = {}): Promise<AuditLog> {
    const log = new AuditLog({ store, key, ...opts });
    for (let i = 1; i <= n; i++) log.append(record(i));
    await log.flush();
    return log;
  }

  it('append() only queues; flush() makes the records durable, linked and verifiable', async () => {
    const log = new AuditLog({ store, key });
    log.append(record(1));
    log.append(record(2));
    expect(log.stats().queued).toBe(2);
    expect(await store.audit.count()).toBe(0); // nothing written on the caller's turn
    await log.flush();
    expect(log.stats()).toMatchObject({ queued: 0, written: 2, failing: false });
    const rows = await store.audit.range({ limit: 10 });
    expect(rows.map((r) => r.seq)).toEqual([1, 2]);
    expect(rows[0]!.prevHash).toBe('0'.repeat(64));
    expect(rows[1]!.prevHash).toBe(rows[0]!.hash);
    expect(JSON.parse(rows[0]!.record)).toEqual({ ...record(1), seq: 1 });
    expect(rows[0]!.record).toBe(canonicalJson({ ...record(1), seq: 1 }));
    expect(rows[0]!.hash).toBe(chainHash('0'.repeat(64), rows[0]!.record));
    expect(rows[0]!.ts).toBe(Date.parse(record(1).time));
    expect(await verifyStore(store, key)).toEqual({ ok: true, count: 2, firstSeq: 1, lastSeq: 2, fromCheckpoint: null, notes: [] });
    await log.close();
  });

  it('writes on its own shortly after append, without flush()', async () => {
    const log = new AuditLog({ store, key, flushDelayMs: 5 });
    log.append(record(1));
    await expect.poll(() => store.audit.count(), { timeout: 2000 }).toBe(1);
    await log.close();
  });

  it('a steady trickle is written in batches per delay, not one tiny batch per writer answer', async () => {
    // A real writer whose every write also takes 3 ms (a busy database): records keep arriving meanwhile.
    const real = new StoreAuditWriter(store.audit, key);
    const sizes: number[] = [];
    const slow: AuditWriter = {
      kind: 'inline',
      maxInFlight: 1,
      write: async (batch) => {
        sizes.push(batch.templates.length);
        await new Promise((r) => setTimeout(r, 3));
        return real.write(batch);
      },
      prune: (r, now) => real.prune(r, now),
      close: () => real.close(),
    };
    const log = new AuditLog({ store, key, writer: slow, flushDelayMs: 25 });
    const started = Date.now();
    let i = 0;
    while (Date.now() - started < 300) {
      log.append(record(++i));
      await new Promise((r) => setTimeout(r, 0.2));
    }
    await log.close();
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: i });
    // One write per 25 ms delay at most (plus the final flush): with a write started the moment the
    // previous one answered, this trickle went out as a write every ~3 ms.
    expect(sizes.length).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 25) + 2);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(i);
  });

  it('a batch committed whose answer was lost is sent again as it was, and the store does not write it twice', async () => {
    // What a writer thread dying between its commit and its reply looks like from the log: the write
    // happened, the confirmation did not arrive. A second batch is in flight behind it.
    const real = new StoreAuditWriter(store.audit, key);
    let lose = 1;
    const ids: string[] = [];
    const lossy: AuditWriter = {
      kind: 'thread',
      maxInFlight: 2,
      write: async (batch) => {
        ids.push(batch.id);
        const n = await real.write(batch);
        if (lose-- > 0) throw new Error('audit writer thread stopped before answering (it exited with code 1)');
        return n;
      },
      prune: (r, now) => real.prune(r, now),
      close: () => real.close(),
    };
    const log = new AuditLog({ store, key, writer: lossy, batchSize: 100 });
    for (let i = 1; i <= 250; i++) log.append(record(i));
    await expect(log.flush()).rejects.toThrow(/stopped before answering/);
    expect(log.stats()).toMatchObject({ failing: true, written: 0, queued: 250 });
    for (let i = 251; i <= 260; i++) log.append(record(i));
    await log.close();
    expect(log.stats()).toMatchObject({ failing: false, written: 260, queued: 0 });
    // The lost batch went again under its own id, before anything new.
    expect(ids[ids.indexOf(ids[0]!, 1)]).toBe(ids[0]);
    const rows = await store.audit.range({ limit: 1000 });
    expect(rows.map((r) => (JSON.parse(r.record) as { bytesIn: number }).bytesIn)).toEqual(Array.from({ length: 260 }, (_, i) => 101 + i));
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 260 });
  });

  it('at maxQueued it is unavailable, counts what it cannot keep, and writes one summary record once the store takes records again', async () => {
    const flaky = flakyWriter(store, key, true);
    const errors: string[] = [];
    const log = new AuditLog({ store, key, writer: flaky, maxQueued: 10, onError: (e) => errors.push(e.message) });
    for (let i = 1; i <= 9; i++) log.append(record(i));
    expect(log.unavailable()).toBeNull();
    log.append(record(10));
    await expect(log.flush()).rejects.toThrow(/disk I\/O error/);
    for (let i = 11; i <= 15; i++) log.append(record(i)); // actions under way when the backlog filled
    expect(log.unavailable()).toBe('the audit log cannot record actions: 10 records are waiting to be written (disk I/O error)');
    expect(log.stats()).toMatchObject({ queued: 10, suppressed: 5, failing: true });
    expect(errors).toContain('backlog full (10 records waiting); actions are refused and further records only counted until the store takes records again');
    flaky.broken = false;
    await log.close();
    expect(log.unavailable()).toBeNull();
    const rows = (await store.audit.range({ limit: 100 })).map((r) => JSON.parse(r.record) as Record<string, unknown>);
    expect(rows).toHaveLength(11);
    expect(rows.slice(0, 10).map((r) => r.bytesIn)).toEqual(Array.from({ length: 10 }, (_, i) => 101 + i));
    // records 11–15: i % 3 === 0 is a denial (12, 15), the rest allowed
    expect(rows[10]).toMatchObject({
      family: 'audit',
      outcome: 'deny',
      failClosed: true,
      facts: { audit: { not_recorded: 5, allowed: 3, denied: 2, from: record(11).time, to: record(15).time } },
      reason: `5 action records (3 allowed, 2 denied) between ${record(11).time} and ${record(15).time} were not kept: the audit log's backlog was full`,
    });
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 11 });
  });

  it('close() drains everything queued; append after close is an error', async () => {
    const log = new AuditLog({ store, key, batchSize: 100 });
    for (let i = 1; i <= 5000; i++) log.append(record(i));
    await log.close();
    expect(await store.audit.count()).toBe(5000);
    expect(() => log.append(record(5001))).toThrow(AuditClosedError);
    expect((await verifyStore(store, key)).ok).toBe(true);
  });

  it('interleaved async writers in one process: none lost, one unbroken chain', async () => {
    const log = new AuditLog({ store, key });
    const writers = 20;
    const per = 1000;
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = 0; i < per; i++) {
          log.append(record(i, { peer: `w${w}`, bytesIn: i }));
          if (i % 97 === 0) await new Promise((r) => setImmediate(r));
        }
      }),
    );
    await log.close();
    const seen = new Set<string>();
    for await (const r of auditRows(store)) {
      const rec = JSON.parse(r.record) as { peer: string; bytesIn: number };
      seen.add(`${rec.peer}/${rec.bytesIn}`);
    }
    expect(seen.size).toBe(writers * per);
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: writers * per });
  });

  it('100 000 records from four writer processes sharing one state dir: none lost, one chain', async () => {
    const procs = 4;
    const per = 25_000;
    const runs = Array.from({ length: procs }, (_, id) =>
      new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'writer-process.ts'), stateDir, String(id), String(per)], {
          env: { ...process.env, CLAWPATROL_TEST_AUDIT_KEY: key.toString('hex') },
          stdio: ['ignore', 'inherit', 'inherit'],
        });
        child.on('exit', (code) => resolve(code));
      }),
    );
    expect(await Promise.all(runs)).toEqual([0, 0, 0, 0]);
    const counts = new Map<string, Set<number>>();
    for await (const r of auditRows(store)) {
      const rec = JSON.parse(r.record) as { peer: string; bytesIn: number };
      if (!counts.has(rec.peer)) counts.set(rec.peer, new Set());
      counts.get(rec.peer)!.add(rec.bytesIn);
    }
    expect([...counts.keys()].sort()).toEqual(['proc-0', 'proc-1', 'proc-2', 'proc-3']);
    for (const s of counts.values()) expect(s.size).toBe(per);
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: procs * per });
  }, 120_000);

  it('keeps failed batches queued and writes them once the store recovers', async () => {
    let failures = 2;
    const flaky: Store = {
      ...store,
      kv: store.kv,
      secrets: store.secrets,
      audit: {
        ...store.audit,
        head: () => store.audit.head(),
        append: (link) => (failures-- > 0 ? Promise.reject(new Error('disk I/O error')) : store.audit.append(link)),
      },
      close: () => store.close(),
    };
    const errors: string[] = [];
    const log = new AuditLog({ store: flaky, key, onError: (e) => errors.push(e.message) });
    expect(log.stats().writer).toBe('inline'); // a wrapped store cannot be reopened in a thread: its own append() is used
    for (let i = 1; i <= 10; i++) log.append(record(i));
    await expect(log.flush()).rejects.toThrow('audit: 10 records could not be written: disk I/O error');
    expect(log.stats()).toMatchObject({ queued: 10, failing: true });
    await expect(log.flush()).rejects.toThrow(/could not be written/);
    await log.flush();
    expect(log.stats()).toMatchObject({ queued: 0, written: 10, failing: false });
    expect(errors).toEqual(['disk I/O error', 'disk I/O error']);
    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 10 });
    await log.close();
  });

  describe('verify pinpoints tampering', () => {
    beforeEach(async () => {
      await (await fill(100)).close();
    });

    it('passes on an intact log', async () => {
      expect(await verifyStore(store, key)).toEqual({ ok: true, count: 100, firstSeq: 1, lastSeq: 100, fromCheckpoint: null, notes: [] });
    });

    it('an edited record', async () => {
      const d = db();
      editStoredRows(d, (rows) => rows.map((r) => (r.seq === 57 ? { ...r, record: r.record.replace('"bytesIn":157', '"bytesIn":1') } : r)));
      d.close();
      expect(await verifyStore(store, key)).toEqual({
        ok: false,
        seq: 57,
        problem: 'edited',
        message: 'record 57 was edited: its content does not match its hash',
        count: 56,
      });
    });

    it('a stored segment damaged in place (its compressed body cut short)', async () => {
      const d = db();
      const seg = d.prepare('SELECT first_seq, last_seq FROM audit_segments WHERE first_seq <= 57 ORDER BY first_seq DESC LIMIT 1').get() as {
        first_seq: number;
        last_seq: number;
      };
      d.prepare('UPDATE audit_segments SET body = substr(body, 1, 20) WHERE first_seq = ?').run(seg.first_seq);
      d.close();
      expect(await verifyStore(store, key)).toMatchObject({
        ok: false,
        seq: seg.first_seq,
        problem: 'unreadable',
        message: expect.stringMatching(new RegExp(`^record ${seg.first_seq} cannot be read: the stored segment of records ${seg.first_seq}–${seg.last_seq} cannot be decoded`)),
        count: seg.first_seq - 1,
      });
    });

    it('an edited record whose hash was recomputed', async () => {
      const d = db();
      editStoredRows(d, (rows) =>
        rows.map((r) => {
          if (r.seq !== 57) return r;
          const forged = r.record.replace('"bytesIn":157', '"bytesIn":1');
          return { ...r, record: forged, hash: chainHash(r.prevHash, forged) };
        }),
      );
      d.close();
      expect(await verifyStore(store, key)).toMatchObject({ ok: false, seq: 58, problem: 'relinked', count: 57 });
    });

    it('a rewritten chain (every hash and the head recomputed) fails on the keyed head', async () => {
      const d = db();
      let prev = '';
      editStoredRows(d, (rows) => {
        prev = rows[55]!.prevHash;
        return rows.map((r) => {
          if (r.seq < 56) return r;
          const rec = r.seq === 57 ? r.record.replace('"bytesIn":157', '"bytesIn":1') : r.record;
          const linked = { ...r, record: rec, prevHash: prev, hash: chainHash(prev, rec) };
          prev = linked.hash;
          return linked;
        });
      });
      d.prepare('UPDATE audit_head SET hash = ?').run(prev);
      d.close();
      expect(await verifyStore(store, key)).toMatchObject({ ok: false, seq: 100, problem: 'head' });
      // Without the key the rewrite cannot be detected — and verify says so.
      const unkeyed = await verifyStore(store, null);
      expect(unkeyed).toMatchObject({ ok: true, count: 100 });
      expect(unkeyed.ok && unkeyed.notes.join(' ')).toMatch(/head was not authenticated/);
    });

    it('a deleted record, and a deleted range', async () => {
      const d = db();
      editStoredRows(d, (rows) => rows.filter((r) => r.seq !== 57));
      expect(await verifyStore(store, key)).toEqual({ ok: false, seq: 57, problem: 'deleted', message: 'record 57 is missing (deleted)', count: 56 });
      editStoredRows(d, (rows) => rows.filter((r) => r.seq !== 58 && r.seq !== 59));
      expect(await verifyStore(store, key)).toMatchObject({ seq: 57, message: 'records 57–59 are missing (deleted)' });
      editStoredRows(d, (rows) => rows.filter((r) => r.seq !== 1));
      expect(await verifyStore(store, key)).toMatchObject({ seq: 1, problem: 'deleted', count: 0 });
      d.close();
    });

    it('reordered records', async () => {
      const d = db();
      // Records 57 and 58 swap places (each keeps its own content, prev_hash and hash).
      editStoredRows(d, (rows) => rows.map((r) => (r.seq === 57 ? { ...rows[57]!, seq: 57 } : r.seq === 58 ? { ...rows[56]!, seq: 58 } : r)));
      d.close();
      expect(await verifyStore(store, key)).toEqual({
        ok: false,
        seq: 57,
        problem: 'reordered',
        message: 'position 57 holds record 58: records were reordered or renumbered',
        count: 56,
      });
    });

    it('reordered records with their seq fields rewritten to match', async () => {
      const d = db();
      const swap = (r: string, seq: number) => canonicalJson({ ...(JSON.parse(r) as object), seq });
      editStoredRows(d, (rows) => {
        const [a, b] = [rows[56]!, rows[57]!];
        return rows.map((r) => {
          if (r.seq === 57) return { ...r, record: swap(b.record, 57), prevHash: b.prevHash, hash: chainHash(b.prevHash, swap(b.record, 57)) };
          if (r.seq === 58) return { ...r, record: swap(a.record, 58), prevHash: a.prevHash, hash: chainHash(a.prevHash, swap(a.record, 58)) };
          return r;
        });
      });
      d.close();
      expect(await verifyStore(store, key)).toMatchObject({ ok: false, seq: 57, problem: 'relinked' });
    });

    it('a truncated tail', async () => {
      const d = db();
      editStoredRows(d, (rows) => rows.filter((r) => r.seq <= 97));
      expect(await verifyStore(store, key)).toEqual({
        ok: false,
        seq: 98,
        problem: 'truncated',
        message: 'the log ends at record 97 but the head is record 100: records 98–100 are missing (truncated tail)',
        count: 97,
      });
      d.exec('DELETE FROM audit_segments');
      expect(await verifyStore(store, key)).toMatchObject({ ok: false, seq: 1, problem: 'truncated', count: 0 });
      d.close();
    });

    it('records appended behind the gateway\'s back', async () => {
      const d = db();
      const forged = canonicalJson({ ...record(101), seq: 101 });
      editStoredRows(d, (rows) => {
        const last = rows[99]!;
        return [...rows, { seq: 101, ts: 0, record: forged, prevHash: last.hash, hash: chainHash(last.hash, forged) }];
      });
      d.close();
      expect(await verifyStore(store, key)).toMatchObject({
        ok: false,
        seq: 101,
        problem: 'head',
        message: 'record 101 is not covered by the head (record 100): it was added outside the gateway',
      });
    });

    it('a deleted or rolled-back head', async () => {
      const d = db();
      const head = d.prepare('SELECT seq, hash, mac FROM audit_head').get() as { seq: number; hash: string; mac: string };
      d.exec('DELETE FROM audit_head');
      expect(await verifyStore(store, key)).toMatchObject({ ok: false, problem: 'head', message: 'the log has 100 records but no head record (the head was deleted)' });
      // Truncate, and put back an older head: without its MAC matching, it is caught.
      const older = storedRow(d, 90);
      d.prepare('INSERT INTO audit_head (id, seq, hash, mac) VALUES (1, ?, ?, ?)').run(older.seq, older.hash, head.mac);
      editStoredRows(d, (rows) => rows.filter((r) => r.seq <= 90));
      expect(await verifyStore(store, key)).toMatchObject({ ok: false, problem: 'head', seq: 90 });
      d.close();
    });
  });

  describe('retention', () => {
    it('maxRecords prunes the oldest and checkpoints the pruned head; the chain still verifies', async () => {
      const log = await fill(100, { retention: { maxRecords: 30 }, pruneIntervalMs: 0 });
      expect(await log.prune()).toBe(70);
      expect(await store.audit.count()).toBe(30);
      expect(await store.audit.checkpoint()).toMatchObject({ seq: 70 });
      expect(await verifyStore(store, key)).toEqual({ ok: true, count: 30, firstSeq: 71, lastSeq: 100, fromCheckpoint: 70, notes: [] });
      for (let i = 101; i <= 110; i++) log.append(record(i));
      await log.flush();
      expect(await log.prune()).toBe(10);
      expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 30, firstSeq: 81, fromCheckpoint: 80 });
      // Deleting the first record after the checkpoint is still caught.
      const d = db();
      editStoredRows(d, (rows) => rows.filter((r) => r.seq !== 81));
      expect(await verifyStore(store, key)).toMatchObject({ ok: false, seq: 81, problem: 'deleted' });
      // A forged checkpoint (to hide more deletions) fails its MAC.
      d.prepare('UPDATE audit_checkpoints SET seq = 81, hash = ? WHERE seq = 80').run(storedRow(d, 82).prevHash);
      expect(await verifyStore(store, key)).toMatchObject({ ok: false, problem: 'checkpoint', seq: 81 });
      d.close();
      await log.close();
    });

    it('maxAgeSec keeps the contiguous suffix of young records', async () => {
      const now = Date.UTC(2030, 0, 1) + 100_000; // record i is at +i s
      const log = await fill(100, { retention: { maxAgeSec: 40 }, pruneIntervalMs: 0, now: () => now });
      expect(await log.prune()).toBe(59); // records 60..100 are within 40 s of now
      expect(await store.audit.firstSeq()).toBe(60);
      expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 41, fromCheckpoint: 59 });
      // everything old: the whole log is pruned, the checkpoint equals the head, and it still verifies (0 records)
      const later = new AuditLog({ store, key, retention: { maxAgeSec: 1 }, pruneIntervalMs: 0, now: () => now + 3_600_000 });
      expect(await later.prune()).toBe(41);
      expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 0, fromCheckpoint: 100 });
      later.append(record(101));
      await later.flush();
      expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 1, firstSeq: 101 });
      await later.close();
      await log.close();
    });
  });

  describe('export', () => {
    it('round-trips: every record comes back as appended and the exported chain verifies', async () => {
      await (await fill(250)).close();
      const lines: string[] = [];
      for await (const r of auditRows(store)) lines.push(exportLine(r));
      expect(lines).toHaveLength(250);
      const first = JSON.parse(lines[0]!) as Record<string, unknown>;
      expect(first).toMatchObject({ ...record(1), seq: 1, prev_hash: '0'.repeat(64) });
      const parsed = JSON.parse(lines[9]!) as Record<string, unknown>;
      const { prev_hash: _p, hash: _h, seq: _s, ...rest } = parsed;
      expect(rest).toEqual(record(10));
      const r = await verifyChain({ rows: rowsFromLines(lines) });
      expect(r).toMatchObject({ ok: true, count: 250, firstSeq: 1, lastSeq: 250 });
      expect(r.ok && r.notes[0]).toMatch(/truncated tail cannot be detected/);
      // A slice from the middle verifies when anchored at its first line.
      expect(await verifyChain({ rows: rowsFromLines(lines.slice(100, 150)), anchorAtFirstRow: true })).toMatchObject({ ok: true, count: 50, firstSeq: 101 });
      // An edit in the exported file is caught at that line's record.
      const edited = [...lines];
      edited[41] = edited[41]!.replace('"bytesIn":142', '"bytesIn":1');
      expect(await verifyChain({ rows: rowsFromLines(edited) })).toMatchObject({ ok: false, seq: 42, problem: 'edited' });
      // Lines out of order in the file.
      const swapped = [...lines];
      [swapped[5], swapped[6]] = [swapped[6]!, swapped[5]!];
      expect(await verifyChain({ rows: rowsFromLines(swapped) })).toMatchObject({ ok: false, seq: 6, problem: 'deleted' });
    });
  });
});

describe('handing a batch over: encoding in time-boxed slices', () => {
  it('yields the event loop every ≈ 50 µs of encoding, not every fixed number of records', async () => {
    // Records slow to encode (≈ 22 KB of escaped text each, tens of µs): 32 of them per turn (the
    // former fixed slice, 7 turns for 256 records) would hold every connection for a millisecond or more.
    const body = 'lorem "ipsum" \\ dolor '.repeat(1000);
    const records = Array.from({ length: 256 }, (_, i) => record(i + 1, { facts: { http: { method: 'POST', path: '/v1/x', body: `${body}${i}` } } }));
    let turns = 0;
    const batch = await encodeInSlices(records, Date.now(), async () => {
      turns++;
    });
    expect(batch.templates).toHaveLength(256);
    expect(batch.templates[7]).toBe(encodeBatch([records[7]!], 0).templates[0]);
    // A few records per slice at most (being descheduled mid-slice only ends a slice sooner).
    expect(turns).toBeGreaterThanOrEqual(32);
  });
});
