/**
 * The audit writer thread's entry point (started by worker-writer.ts).
 *
 * It opens its own connection to the gateway's store — for SQLite a second
 * connection to the same WAL database — and serves write and prune requests
 * one at a time with a `StoreAuditWriter`, so hashing and the database's work
 * never run on the gateway's event loop (records arrive encoded). A request that fails
 * (store refused, cannot open) is answered with the error; the connection is
 * opened again on the next request if opening was what failed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openStore } from '../store/open.js';
import type { Store } from '../store/types.js';
import { StoreAuditWriter } from './writer.js';
import type { WriterReply, WriterRequest, WriterThreadData } from './worker-protocol.js';

if (!parentPort) throw new Error('audit/worker-main runs only as the audit writer thread');
const port = parentPort;
const data = workerData as WriterThreadData;
const key = data.key ? Buffer.from(data.key) : null;

let store: Store | null = null;
let writer: StoreAuditWriter | null = null;
/** Set when a write failed: the rest of its run, already on its way, is refused so nothing overtakes it. */
let refusing = false;

async function ready(): Promise<StoreAuditWriter> {
  if (!writer) {
    store = await openStore(data.store);
    writer = new StoreAuditWriter(store.audit, key);
  }
  return writer;
}

async function serve(req: WriterRequest): Promise<number> {
  switch (req.op) {
    case 'write': {
      if (req.startsRun) refusing = false;
      if (refusing) throw new Error('not written: an earlier batch failed');
      try {
        return await (await ready()).write(req.batch);
      } catch (err) {
        refusing = true;
        throw err;
      }
    }
    case 'prune':
      return (await ready()).prune(req.retention, req.now);
    case 'close': {
      const s = store;
      store = null;
      writer = null;
      await s?.close();
      return 0;
    }
  }
}

// One request at a time, in order: a prune never interleaves with a write on an async (PostgreSQL) store.
let queue: Promise<void> = Promise.resolve();
port.on('message', (req: WriterRequest) => {
  queue = queue.then(async () => {
    let reply: WriterReply;
    try {
      reply = { id: req.id, ok: true, value: await serve(req) };
    } catch (err) {
      reply = { id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) };
    }
    port.postMessage(reply);
    // With the port closed the thread has nothing left to do and ends.
    if (req.op === 'close') port.close();
  });
});
