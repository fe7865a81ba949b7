/**
 * BackendKeyData the gateway hands to agents, and what a CancelRequest
 * carrying it does. The agent never sees the server's own key: the gateway
 * gives each session a fresh random one and maps it to the session, so a
 * cancel can only reach the session it was issued for (and only from the
 * peer that owns it).
 */
import { randomInt } from 'node:crypto';

export interface CancelTarget {
  /** Peer id that owns the session; cancels from other peers are ignored. */
  peerId: string;
  cancel(): void;
}

export class CancelRegistry {
  private readonly byKey = new Map<string, CancelTarget>();

  /** A new key for `target`; call the returned `release` when the session ends. */
  register(target: CancelTarget): { processId: number; secretKey: number; release(): void } {
    for (;;) {
      const processId = randomInt(1, 0x7fffffff);
      const secretKey = randomInt(-0x80000000, 0x7fffffff);
      const key = `${processId}:${secretKey}`;
      if (this.byKey.has(key)) continue;
      this.byKey.set(key, target);
      return {
        processId,
        secretKey,
        release: () => {
          if (this.byKey.get(key) === target) this.byKey.delete(key);
        },
      };
    }
  }

  /** Handle a CancelRequest; true when it matched a live session of this peer. */
  cancel(processId: number, secretKey: number, peerId: string): boolean {
    const t = this.byKey.get(`${processId}:${secretKey}`);
    if (!t || t.peerId !== peerId) return false;
    t.cancel();
    return true;
  }

  get size(): number {
    return this.byKey.size;
  }
}

/** One registry per process: agents send cancels on a new connection, possibly to another listener. */
export const defaultCancelRegistry = new CancelRegistry();
