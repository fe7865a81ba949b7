/**
 * An audit writer in front of the real store whose writes can be made to
 * fail (`broken = true`: "disk I/O error"), as a full disk or a downed
 * database would — for the tests of what the log and the gateway do while
 * the store refuses records, and once it takes them again.
 */
import { StoreAuditWriter, type AuditWriter } from '../../../src/audit/index.js';
import type { Store } from '../../../src/store/index.js';

export function flakyWriter(store: Store, key: Buffer, broken = false): AuditWriter & { broken: boolean } {
  const real = new StoreAuditWriter(store.audit, key);
  const writer: AuditWriter & { broken: boolean } = {
    broken,
    kind: 'inline',
    maxInFlight: 1,
    write: async (batch) => {
      if (writer.broken) throw new Error('disk I/O error');
      return real.write(batch);
    },
    prune: (r, now) => real.prune(r, now),
    close: () => real.close(),
  };
  return writer;
}
