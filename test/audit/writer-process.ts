/**
 * A separate gateway-like process appending audit records to a shared state
 * dir (spawned by the concurrency test): argv = stateDir writerId count, key in CLAWPATROL_TEST_AUDIT_KEY.
 */
import { openStore } from '../../src/store/index.js';
import { AuditLog } from '../../src/audit/index.js';
import { record } from './records.js';

const [stateDir, id, count] = process.argv.slice(2);
const store = await openStore({ stateDir: stateDir! });
const log = new AuditLog({ store, key: Buffer.from(process.env.CLAWPATROL_TEST_AUDIT_KEY!, 'hex'), batchSize: 500 });
for (let i = 0; i < Number(count); i++) {
  log.append(record(i, { peer: `proc-${id}`, bytesIn: i }));
  if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
}
await log.close();
await store.close();
