/**
 * Backpressure for every writer in the engine (agent sockets and streams,
 * upstream connections and HTTP/2 streams): wait until the destination takes
 * more, or fail when it closes first.
 */
import type { EventEmitter } from 'node:events';

/** Resolves on 'drain'; rejects with `closedMessage` when the destination closes before that. */
export function drained(dest: EventEmitter, closedMessage: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      dest.removeListener('close', onClose);
      resolve();
    };
    const onClose = () => {
      dest.removeListener('drain', onDrain);
      reject(new Error(closedMessage));
    };
    dest.once('drain', onDrain);
    dest.once('close', onClose);
  });
}
