/**
 * Appends audit records through the built code in dist/ (spawned by
 * dist-writer.test.ts; run `npm run build` first): argv = stateDir
 * records.json. Prints where the writer thread's code came from and the
 * log's stats, then exits on its own (a closed log leaves no thread behind).
 */
import { readFileSync } from 'node:fs';

const dist = new URL('../../dist/src/', import.meta.url);
const { openStore } = await import(new URL('store/index.js', dist).href);
const { AuditLog, writerThreadEntry } = await import(new URL('audit/index.js', dist).href);

const [stateDir, recordsFile] = process.argv.slice(2);
const records = JSON.parse(readFileSync(recordsFile, 'utf8'));
const store = await openStore({ stateDir });
const log = new AuditLog({ store, key: Buffer.from(process.env.CLAWPATROL_TEST_AUDIT_KEY, 'hex') });
for (const r of records) log.append(r);
await log.close();
await store.close();
const entry = writerThreadEntry();
process.stdout.write(JSON.stringify({ entry: entry.kind, url: entry.url?.href ?? null, stats: log.stats() }) + '\n');
