/**
 * The writer thread from the built package: `node` without any TypeScript
 * loader, importing dist/, must find the compiled worker-main.js next to the
 * compiled audit log, from any working directory (run `npm run build` first).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { openStore } from '../../src/store/index.js';
import { verifyStore } from '../../src/audit/index.js';
import { record } from './records.js';

const root = mkdtempSync(join(tmpdir(), 'clawpatrol-audit-dist-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('audit writer thread from dist/', () => {
  it('writes through the compiled worker-main.js and the process exits by itself', async () => {
    const stateDir = join(root, 'state');
    const recordsFile = join(root, 'records.json');
    writeFileSync(recordsFile, JSON.stringify(Array.from({ length: 1000 }, (_, i) => record(i + 1))));
    const key = randomBytes(32);
    const script = fileURLToPath(new URL('./dist-writer.mjs', import.meta.url));
    const r = spawnSync(process.execPath, [script, stateDir, recordsFile], {
      cwd: root, // not the repository: nothing may be resolved from the working directory
      encoding: 'utf8',
      env: { ...process.env, NODE_OPTIONS: '', CLAWPATROL_TEST_AUDIT_KEY: key.toString('hex') },
      timeout: 60_000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { entry: string; url: string; stats: Record<string, unknown> };
    expect(out.entry).toBe('compiled');
    expect(fileURLToPath(out.url)).toBe(resolve('dist/src/audit/worker-main.js'));
    expect(out.stats).toMatchObject({ writer: 'thread', written: 1000, queued: 0, failing: false });
    const store = await openStore({ stateDir });
    try {
      expect(await verifyStore(store, key)).toMatchObject({ ok: true, count: 1000 });
    } finally {
      await store.close();
    }
  }, 90_000);
});
