/**
 * Look at a connection's first bytes before deciding who serves it (a TLS
 * ClientHello, the HTTP/2 preface): collect them until they are enough,
 * then pause. Nothing is consumed for good — the caller hands the bytes on
 * (`socket.unshift`, or a parser's initial input).
 */
import type { Duplex } from 'node:stream';

export class PeekError extends Error {
  override name = 'PeekError';
}

/**
 * Resolves with every byte read once `enough(bytes)` says so (checked on
 * `initial` first); rejects with a PeekError when the connection ends or
 * `timeoutMs` passes first (`what` names the awaited bytes in the message).
 */
export function peekBytes(socket: Duplex, initial: Buffer, enough: (bytes: Buffer) => boolean, timeoutMs: number, what: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = initial;
    const check = (): boolean => {
      if (!enough(buf)) return false;
      cleanup();
      socket.pause();
      resolve(buf);
      return true;
    };
    const onData = (c: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, c]) : c;
      check();
    };
    const onEnd = () => {
      cleanup();
      reject(new PeekError(`connection closed before ${what}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new PeekError(`${what} not received in time`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
    };
    if (buf.length && check()) return;
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}
