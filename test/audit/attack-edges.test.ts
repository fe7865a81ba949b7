/**
 * Audit records whose text an agent controls, through the real writer,
 * store, verify and export: control characters, NULs (the writer's own seq
 * marker), lone surrogates, U+2028, `__proto__` and integer-like keys, and a
 * record larger than a storage segment. Each must come back as appended and
 * verify — stored and after an export round trip — and an edit of any of
 * them must still show.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { openStore, type Store } from '../../src/store/index.js';
import { AuditLog, auditRows, exportLine, readRecord, rowsFromLines, verifyChain, verifyStore } from '../../src/audit/index.js';
import { record } from './records.js';
import { editStoredRows } from './support/stored-log.js';

const NASTY = [
  'line\nbreak\r\ttab',
  'nul\u0000inside\u0000twice',
  'lone \ud800 high and \udfff low',
  'separators \u2028 \u2029 and \u0085',
  '"quoted" \\backslash\\ </script> \u001b[31m',
  'emoji 😀 split? \ud83d',
];


// Every test gets a fresh state dir and store.
let root: string;
let store: Store;
const key = randomBytes(32);
beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'clawpatrol-audit-edges-'));
  store = await openStore({ stateDir: join(root, 'state') });
});
afterEach(async () => {
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

describe('audit records with hostile text', () => {
  function hostile(i: number) {
    const headers: Record<string, string> = Object.create(null) as Record<string, string>;
    headers['__proto__'] = NASTY[i % NASTY.length]!;
    headers['10'] = 'integer-like key';
    headers['9'] = 'another';
    headers[`x-\u0000-${i}`] = NASTY[(i + 1) % NASTY.length]!;
    return record(i, {
      reason: NASTY[i % NASTY.length]!,
      facts: { http: { method: 'POST', path: `/p/${NASTY[(i + 2) % NASTY.length]}`, headers, body: NASTY.join('|') } } as never,
    });
  }

  it('round-trips every record, verifies stored and exported, and still catches an edit of the hostile text', async () => {
    const log = new AuditLog({ store, key });
    const big = record(7, { reason: 'x'.repeat((1 << 20) + 17) }); // larger than one segment's text
    const appended = [...Array.from({ length: 6 }, (_, i) => hostile(i + 1)), big, hostile(8)];
    for (const r of appended) log.append(r);
    await log.close();

    expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: appended.length });
    const rows = [];
    for await (const r of auditRows(store)) rows.push(r);
    // Well-formed JSON.stringify writes a lone surrogate as `\ud800`, so it comes back as it went in.
    expect(rows.map(readRecord)).toEqual(appended.map((r, i) => JSON.parse(JSON.stringify({ ...r, seq: i + 1 })) as unknown));

    const lines = rows.map(exportLine);
    expect(lines.every((l) => !l.includes('\n'))).toBe(true);
    expect(await verifyChain({ rows: rowsFromLines(lines) })).toMatchObject({ ok: true, count: appended.length });

    // An edit inside the hostile text: a lone surrogate replaced by U+FFFD (what a UTF-8 round trip does).
    const at = rows.findIndex((r) => r.record.includes('\\ud800'));
    const edited = [...lines];
    edited[at] = edited[at]!.replace('\\ud800', '\ufffd');
    expect(await verifyChain({ rows: rowsFromLines(edited) })).toMatchObject({ ok: false, seq: at + 1, problem: 'edited' });
    const d = new Database(join(root, 'state', 'state.db'));
    editStoredRows(d, (all) => all.map((r) => (r.seq === 2 ? { ...r, record: r.record.replace('\\u0000', '\\u0001') } : r)));
    d.close();
    expect(await verifyStore(store, key)).toMatchObject({ ok: false, seq: 2, problem: 'edited' });
  });
});

describe('stored text the hash does not cover', () => {

  it('an edit that leaves the parsed record equal (a duplicate key a first-wins reader takes, spacing) is still an edit', async () => {
    const log = new AuditLog({ store, key });
    for (let i = 1; i <= 5; i++) log.append(record(i));
    await log.close();
    const d = new Database(join(root, 'state', 'state.db'));
    // Record 3 was denied; put a forged `"verdict":"allow"` first — JSON.parse keeps the last one.
    editStoredRows(d, (all) => all.map((r) => (r.seq === 3 ? { ...r, record: r.record.replace('{', '{"verdict":"allow", ') } : r)));
    d.close();
    expect(await verifyStore(store, key)).toMatchObject({ ok: false, seq: 3, problem: 'edited' });
  });
});

describe('verifying an export that starts mid-chain', () => {

  it('checks it from its first line on, as `audit verify --input` does for an `export --since` file, and still sees edits in it', async () => {
    const log = new AuditLog({ store, key: null });
    for (let i = 1; i <= 40; i++) log.append(record(i));
    await log.close();
    const lines: string[] = [];
    for await (const r of auditRows(store, { afterSeq: 25 })) lines.push(exportLine(r));

    // How cli/audit.ts calls it for --input: rows only, no head, no anchor option.
    const result = await verifyChain({ rows: rowsFromLines(lines) });
    expect(result).toMatchObject({ ok: true, count: 15, firstSeq: 26, lastSeq: 40 });
    expect(result.ok && result.notes).toContain('the export starts at record 26: records before it are not covered');

    const edited = lines.map((l, i) => (i === 3 ? l.replace('"bytesIn":129', '"bytesIn":1') : l));
    expect(await verifyChain({ rows: rowsFromLines(edited) })).toMatchObject({ ok: false, seq: 29, problem: 'edited' });
    expect(await verifyChain({ rows: rowsFromLines([...lines.slice(0, 5), ...lines.slice(6)]) })).toMatchObject({ ok: false, seq: 31, problem: 'deleted' });
  });
});

describe('retention vouches only for records that were intact', () => {
  const now = Date.UTC(2030, 0, 1) + 100_000; // record i is at +i s

  async function filled(): Promise<{ log: AuditLog; errors: Error[] }> {
    const errors: Error[] = [];
    const log = new AuditLog({ store, key, retention: { maxAgeSec: 3600 }, pruneIntervalMs: 0, now: () => now, onError: (e) => errors.push(e) });
    for (let i = 1; i <= 20; i++) log.append(record(i));
    await log.flush();
    return { log, errors };
  }

  it('does not prune young records whose stored time was set back (the deletion got an authentic checkpoint)', async () => {
    const { log, errors } = await filled();
    const d = new Database(join(root, 'state', 'state.db'));
    // The stored time is outside the hash; the record's own `time` is inside it.
    editStoredRows(d, (all) => all.map((r) => (r.seq <= 8 ? { ...r, ts: 0 } : r)));
    d.close();
    await expect(log.prune()).rejects.toThrow(/record 1's stored time is not the time in its record/);
    expect(await store.audit.firstSeq()).toBe(1);
    expect(errors.map((e) => e.message).join('\n')).toMatch(/retention refused/);
    await log.close();
  });

  it('does not sign a checkpoint over an edited record it is about to prune', async () => {
    const { log } = await filled();
    const d = new Database(join(root, 'state', 'state.db'));
    editStoredRows(d, (all) =>
      all.map((r) => (r.seq <= 8 ? { ...r, ts: 0, record: r.record.replace(/"time":"[^"]*"/, '"time":"1970-01-01T00:00:00.000Z"') } : r)),
    );
    d.close();
    await expect(log.prune()).rejects.toThrow(/record 1 was edited/);
    expect(await verifyStore(store, key)).toMatchObject({ ok: false, seq: 1, problem: 'edited' });
    await log.close();
  });
});
