/**
 * Messages between the audit log (gateway thread) and its writer thread.
 * Structured-cloned, so plain data only. Requests are answered in the order
 * they were sent, one at a time.
 */
import type { OpenStoreOptions } from '../store/types.js';
import type { EncodedBatch } from './record-json.js';
import type { RetentionPolicy } from './writer.js';

export interface WriterThreadData {
  /** How the thread opens its own connection to the gateway's store. */
  store: OpenStoreOptions;
  /** HMAC key of the head and checkpoints (copied into the thread), or null. */
  key: Uint8Array | null;
}

export type WriterRequest =
  /** After a write fails the thread refuses the rest of its run (AuditWriter.write). */
  | { id: number; op: 'write'; batch: EncodedBatch; startsRun: boolean }
  | { id: number; op: 'prune'; retention: RetentionPolicy; now: number }
  /** Close the thread's connection; the thread then ends. */
  | { id: number; op: 'close' };

export type WriterReply = { id: number; ok: true; value: number } | { id: number; ok: false; error: string };
