/**
 * A byte-level PostgreSQL client for attack tests: it sends exactly the
 * frames a test builds (pipelined, malformed, FunctionCall…) and records
 * every byte and message the gateway sends back.
 */
import { connect, type Socket } from 'node:net';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';

export interface BackendMsg {
  name: string;
  code?: string;
  message?: string;
  status?: string;
  text?: string;
  fields?: unknown[];
  channel?: string;
  payload?: string;
  processID?: number;
  secretKey?: number;
  severity?: string;
}

/** What each statement came to, in order: its CommandComplete tag or the SQLSTATE of its error. */
export const outcomes = (ms: BackendMsg[]): string[] =>
  ms.filter((m) => m.name === 'error' || m.name === 'commandComplete').map((m) => (m.name === 'error' ? `${m.code}` : `${m.text}`));

/** The rule the bypass tests try to get a DELETE past. */
export const NO_DELETES_RULE = `
rule "no-deletes" {
  endpoint  = postgres.db
  priority  = 50
  condition = "sql.verb == 'delete'"
  verdict   = "deny"
  reason    = "agents do not delete"
}
`;

export class RawClient {
  readonly received: Buffer[] = [];
  readonly messages: BackendMsg[] = [];
  private parser = new Parser();
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.received.push(d);
      this.parser.parse(d, (m) => this.messages.push(m as unknown as BackendMsg));
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static async connect(port: number, startup?: Record<string, string>): Promise<RawClient> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    const c = new RawClient(socket);
    if (startup) {
      socket.write(serialize.startup(startup));
      await c.until((ms) => ms.some((m) => m.name === 'readyForQuery' || (m.name === 'error' && m.severity === 'FATAL')), 10_000);
    }
    return c;
  }

  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  /** Wait until `pred(messages)` holds or the socket closes. */
  async until(pred: (ms: BackendMsg[]) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.messages)) {
      if (this.closed) return;
      if (Date.now() > deadline) throw new Error(`timed out; got ${this.messages.map((m) => m.name).join(',')}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Wait for the n-th ReadyForQuery counted from `since`. */
  async readyCount(n: number, since = 0, timeoutMs = 10_000): Promise<BackendMsg[]> {
    await this.until((ms) => ms.slice(since).filter((m) => m.name === 'readyForQuery').length >= n, timeoutMs);
    return this.messages.slice(since);
  }

  /** Forget the parse so far and re-read the stream from `offset` (after a one-byte SSL/GSS answer). */
  reparseFrom(offset: number): void {
    this.parser = new Parser();
    this.messages.length = 0;
    const rest = this.allBytes().subarray(offset);
    if (rest.length) this.parser.parse(rest, (m) => this.messages.push(m as unknown as BackendMsg));
  }

  allBytes(): Buffer {
    return Buffer.concat(this.received);
  }

  close(): void {
    this.socket.destroy();
  }
}
