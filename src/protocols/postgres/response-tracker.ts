/**
 * The upstream half of a session: frames the server's byte stream and pairs
 * every response with the frontend message that caused it.
 *
 * PostgreSQL answers strictly in order: each forwarded Parse/Bind/Describe/
 * Execute/Close gets exactly one completion (or an ErrorResponse, after which
 * the server skips everything up to the next Sync), each Sync/Query/
 * FunctionCall ends with one ReadyForQuery. Keeping a FIFO of "expectations"
 * lets the gateway:
 *   - put its own 42501 ErrorResponse exactly where the server reports the
 *     failure of the deliberately failing "probe" it sent in place of a
 *     denied message (so ordering, error-skip and transaction abort are the
 *     server's own);
 *   - know when no ReadyForQuery is outstanding (the session's parse-state
 *     barrier) and what the transaction status is;
 *   - attribute bytes and a status (SQLSTATE or command tag) to the audit
 *     record of each decided statement.
 *
 * The byte stream is forwarded as the server chunked it (zero copy); only the
 * few message kinds the gateway reads (ErrorResponse, ParameterStatus,
 * ReadyForQuery, CommandComplete) have their bodies collected.
 */
import type { Enforcement } from '../../gateway/contracts.js';
import { readCommandTag, readErrorFields, readParameterStatus, type TxStatus } from './backend-messages.js';

export type ExpectKind =
  | 'P'
  | 'B'
  | 'D'
  | 'E'
  | 'C'
  | 'S'
  | 'Q'
  | 'F'
  /** The failing Query sent in place of a denied Query/FunctionCall. */
  | 'probeQ'
  /** The failing Execute sent in place of a denied Parse/Execute. */
  | 'probeE';

/** Kinds whose response ends with ReadyForQuery. */
function endsWithReady(kind: ExpectKind): boolean {
  return kind === 'S' || kind === 'Q' || kind === 'F' || kind === 'probeQ';
}

/** One decided statement's audit bookkeeping. */
export class AuditGroup {
  bytesOut = 0;
  /** First SQLSTATE reported for the statement (or the gateway's own, e.g. 42501). */
  error: string | undefined;
  /** Last command tag (`SELECT 3`), EMPTY or SUSPENDED. */
  tag: string | undefined;
  lastSeq = -1;
  finished = false;
  constructor(
    readonly enforcement: Enforcement,
    public bytesIn: number,
    error?: string,
  ) {
    this.error = error;
  }
  /** Audit status: the SQLSTATE when it failed, else the command tag. */
  finish(fallback = 'ok'): void {
    if (this.finished) return;
    this.finished = true;
    this.enforcement.finish({
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      status: this.error ?? this.tag ?? fallback,
    });
  }
}

/**
 * What the session's statement memory does once the server has answered a
 * message: the gateway must not believe a statement was deallocated, closed
 * or re-parsed before the server says so, or its memory and the server's
 * drift apart (and `EXECUTE p` is decided as something p is not).
 */
export interface Effects {
  /** The message (a Query: every statement in it) completed without error. */
  confirmed?(): void;
  /** The server failed the message or skipped it (after an earlier error in the batch). */
  voided?(): void;
}

interface Expectation {
  kind: ExpectKind;
  seq: number;
  group: AuditGroup | null;
  /** For probes: the ErrorResponse the agent gets instead of the probe's. */
  replacement?: Buffer;
  effects?: Effects;
  /** An ErrorResponse arrived for it (a Query's later statements did not run). */
  failed?: boolean;
}

export interface TrackerHooks {
  /** A ParameterStatus arrived (reported GUCs). */
  parameter(name: string, value: string): void;
  /** A ReadyForQuery was forwarded. */
  ready(status: TxStatus): void;
  /** The server reported an extended-protocol error and skips until a Sync the session has not sent yet. */
  skippingUntilSync(): void;
  /** COPY FROM STDIN started (CopyInResponse) / ended by a server error. */
  copyIn(active: boolean): void;
  /** The stream cannot be interpreted any more (fail closed: the session ends). */
  desync(reason: string): void;
}

/** What completeMessage returns for every message the agent gets as is (one shared object: it runs per message). */
const KEPT: { swallowed: boolean; replacement?: Buffer } = Object.freeze({ swallowed: false });

/** Message types whose body the tracker reads. */
const COLLECT = new Set([0x45 /* E */, 0x53 /* S */, 0x5a /* Z */, 0x43 /* C */]);
const MAX_COLLECT = 256 * 1024;

export class ResponseTracker {
  private readonly q: Expectation[] = [];
  private seq = 0;
  private readonly groups: AuditGroup[] = [];
  /** Sequence numbers of CopyDone/CopyFail sent upstream (to void Syncs the server ignores during COPY). */
  private copyEnds: number[] = [];
  /** Sequence number of the latest Query/Execute forwarded (the messages that can start a COPY). */
  private lastCopyCapable = -1;
  private copyOwner: Expectation | null = null;
  /** Syncs voided because they were sent inside the running COPY (see onCopyIn). */
  private copyVoidedSyncs = 0;

  // framing state
  private held: Buffer | null = null;
  private bodyLeft = 0;
  private curType = 0;
  private curLen = 0;
  private collected: Buffer[] | null = null;
  private collectedBytes = 0;
  private swallowing: Expectation | null = null;
  private curGroup: AuditGroup | null = null;

  /** Total backend bytes seen (for the session's own accounting). */
  bytesIn = 0;
  failed = false;

  constructor(private readonly hooks: TrackerHooks) {}

  /** Record that a frontend message was forwarded; returns its sequence number. */
  forwarded(): number {
    return this.seq++;
  }

  /** Forward a message that expects a response. */
  expect(kind: ExpectKind, group: AuditGroup | null, replacement?: Buffer, effects?: Effects): void {
    const e: Expectation = { kind, seq: this.forwarded(), group };
    if (kind === 'Q' || kind === 'E') this.lastCopyCapable = e.seq;
    if (replacement) e.replacement = replacement;
    if (effects) e.effects = effects;
    if (group) {
      group.lastSeq = e.seq;
      if (!this.groups.includes(group)) this.groups.push(group);
    }
    this.q.push(e);
  }

  /** CopyDone / CopyFail forwarded. */
  copyEnd(): void {
    const seq = this.forwarded();
    // A COPY is ended by the first CopyDone/CopyFail sent after the message that
    // started it, so only those are kept: ones older than every outstanding
    // message, or with no Query/Execute since the previous one, can never be it.
    // (Keeping "the last 32" instead let an agent push the one that ends the COPY
    // out with 64 more; the Syncs behind it were then voided though the server
    // answers them, and a stray ReadyForQuery released the next Query's barrier
    // before a SET standard_conforming_strings = off was reported.)
    const oldest = this.q[0]?.seq ?? seq;
    while (this.copyEnds.length > 0 && this.copyEnds[0]! < oldest) this.copyEnds.shift();
    const last = this.copyEnds[this.copyEnds.length - 1];
    if (last !== undefined && last > this.lastCopyCapable) return;
    this.copyEnds.push(seq);
  }

  /** Number of outstanding messages that end with ReadyForQuery. */
  get readyOutstanding(): number {
    let n = 0;
    for (const e of this.q) if (endsWithReady(e.kind)) n++;
    return n;
  }

  /** True when the bytes seen so far end exactly at a message boundary. */
  get atBoundary(): boolean {
    return this.bodyLeft === 0 && this.held === null;
  }

  get outstanding(): number {
    return this.q.length;
  }

  /** A group with no expectation left is finished at the next ReadyForQuery; at close, everything is. */
  finishAll(fallback: string): void {
    for (const g of this.groups) g.finish(fallback);
    this.groups.length = 0;
  }

  /**
   * Consume server bytes; returns the pieces to write to the agent, in order.
   * A partial message header at the end of a chunk is held back (the agent
   * could not use it anyway) so that every message's type is known before
   * any of its bytes are forwarded.
   */
  feed(input: Buffer): Buffer[] {
    let chunk = input;
    if (this.held) {
      chunk = Buffer.concat([this.held, input]);
      this.held = null;
    }
    this.bytesIn += input.length;
    const out: Buffer[] = [];
    let segStart = 0;
    let pos = 0;
    const len = chunk.length;
    while (pos < len && !this.failed) {
      if (this.bodyLeft > 0) {
        const n = Math.min(this.bodyLeft, len - pos);
        if (this.collected && this.collectedBytes < MAX_COLLECT) {
          this.collected.push(chunk.subarray(pos, pos + n));
          this.collectedBytes += n;
        }
        pos += n;
        this.bodyLeft -= n;
        if (this.bodyLeft === 0) {
          const r = this.completeMessage();
          if (r.swallowed) {
            if (r.replacement) out.push(r.replacement);
            segStart = pos;
          }
        }
        continue;
      }
      if (len - pos < 5) {
        this.held = Buffer.from(chunk.subarray(pos));
        break;
      }
      const type = chunk[pos]!;
      const mlen = chunk.readInt32BE(pos + 1);
      if (mlen < 4) {
        this.fail(`invalid message length ${mlen} from the server`);
        break;
      }
      this.startMessage(type, mlen);
      if (this.swallowing && pos > segStart) {
        out.push(chunk.subarray(segStart, pos));
      }
      if (this.swallowing) segStart = len; // nothing of this message is forwarded
      pos += 5;
      this.bodyLeft = mlen - 4;
      if (this.bodyLeft === 0) {
        const r = this.completeMessage();
        if (r.swallowed) {
          if (r.replacement) out.push(r.replacement);
          segStart = pos;
        }
      }
    }
    if (this.failed) return out;
    const end = this.held ? len - this.held.length : len;
    if (!this.swallowing && end > segStart) out.push(chunk.subarray(segStart, end));
    return out;
  }

  private fail(reason: string): void {
    this.failed = true;
    this.hooks.desync(reason);
  }

  private head(): Expectation | undefined {
    return this.q[0];
  }

  private startMessage(type: number, mlen: number): void {
    this.curType = type;
    this.curLen = mlen + 1;
    this.collected = COLLECT.has(type) ? [] : null;
    this.collectedBytes = 0;
    const h = this.head();
    this.curGroup = h?.group ?? null;
    if (this.curGroup) this.curGroup.bytesOut += this.curLen;
    // The probe's ErrorResponse is replaced by the gateway's own.
    this.swallowing = type === 0x45 && h && (h.kind === 'probeQ' || h.kind === 'probeE') ? h : null;
  }

  private body(): Buffer {
    const parts = this.collected ?? [];
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  private completeMessage(): { swallowed: boolean; replacement?: Buffer } {
    const type = this.curType;
    const swallowed = this.swallowing;
    this.swallowing = null;
    const h = this.head();
    switch (type) {
      case 0x5a: /* Z ReadyForQuery */ {
        const status = this.body().toString('latin1', 0, 1) as TxStatus;
        this.onReady(status);
        return KEPT;
      }
      case 0x45: /* E ErrorResponse */ {
        const fields = readErrorFields(this.body());
        const code = fields.get('C') ?? 'XX000';
        if (swallowed) {
          const g = swallowed.group;
          if (swallowed.kind === 'probeE') {
            this.q.shift();
            this.skipExtended();
          }
          if (g) g.bytesOut += (swallowed.replacement?.length ?? 0) - this.curLen;
          return { swallowed: true, ...(swallowed.replacement ? { replacement: swallowed.replacement } : {}) };
        }
        if (this.curGroup && this.curGroup.error === undefined) this.curGroup.error = code;
        if (h && this.copyOwner === h) {
          this.copyOwner = null;
          this.hooks.copyIn(false);
          if (this.copyVoidedSyncs > 0) {
            // The COPY failed part-way: Syncs the server reads after the failure are
            // answered after all, and which of the voided ones those are cannot be
            // known. Counting wrong would release a Query barrier early (fail closed).
            this.copyVoidedSyncs = 0;
            this.fail('a COPY failed with Syncs sent inside it; the gateway cannot tell which of them the server will answer');
            return KEPT;
          }
        }
        if (h && !endsWithReady(h.kind)) {
          this.q.shift();
          this.skipExtended(h);
        } else if (h) {
          h.failed = true;
        }
        return KEPT;
      }
      case 0x53: /* S ParameterStatus */ {
        const p = readParameterStatus(this.body());
        if (p) this.hooks.parameter(p[0], p[1]);
        return KEPT;
      }
      case 0x43: /* C CommandComplete */ {
        const tag = readCommandTag(this.body());
        if (this.curGroup) this.curGroup.tag = tag;
        if (h && h.kind === 'E') this.complete('E', h);
        if (h && this.copyOwner === h) {
          this.copyOwner = null;
          this.hooks.copyIn(false);
        }
        return KEPT;
      }
      case 0x49: /* I EmptyQueryResponse */
        if (this.curGroup) this.curGroup.tag = 'EMPTY';
        if (h && h.kind === 'E') this.complete('E', h);
        return KEPT;
      case 0x73: /* s PortalSuspended */
        if (this.curGroup) this.curGroup.tag = 'SUSPENDED';
        this.expectHead('E', 'PortalSuspended');
        return KEPT;
      case 0x31: /* 1 ParseComplete */
        this.expectHead('P', 'ParseComplete');
        return KEPT;
      case 0x32: /* 2 BindComplete */
        this.expectHead('B', 'BindComplete');
        return KEPT;
      case 0x33: /* 3 CloseComplete */
        this.expectHead('C', 'CloseComplete')?.effects?.confirmed?.();
        return KEPT;
      case 0x74: /* t ParameterDescription */
        if (!h || h.kind !== 'D') this.fail('unexpected ParameterDescription from the server');
        return KEPT;
      case 0x54: /* T RowDescription */
        if (h && h.kind === 'D') this.q.shift();
        else if (!h || !(h.kind === 'Q' || h.kind === 'E')) this.fail('unexpected RowDescription from the server');
        return KEPT;
      case 0x6e: /* n NoData */
        this.expectHead('D', 'NoData');
        return KEPT;
      case 0x47: /* G CopyInResponse */
        this.onCopyIn();
        return KEPT;
      case 0x57: /* W CopyBothResponse */
        this.fail('COPY BOTH (replication) is not supported through the gateway');
        return KEPT;
      case 0x44: /* D DataRow */
      case 0x64: /* d CopyData */
      case 0x63: /* c CopyDone */
      case 0x48: /* H CopyOutResponse */
      case 0x56: /* V FunctionCallResponse */
      case 0x4e: /* N NoticeResponse */
      case 0x41: /* A NotificationResponse */
        return KEPT;
      default:
        this.fail(`unexpected message type 0x${type.toString(16)} from the server`);
        return KEPT;
    }
  }

  private complete(kind: ExpectKind, h: Expectation): void {
    if (h.kind !== kind) return;
    this.q.shift();
  }

  private expectHead(kind: ExpectKind, what: string): Expectation | undefined {
    const h = this.head();
    if (!h || h.kind !== kind) {
      this.fail(`unexpected ${what} from the server`);
      return undefined;
    }
    return this.q.shift();
  }

  /**
   * After an extended-protocol error the server skips every message up to the
   * next Sync — Query and FunctionCall included (postgres.c ignore_till_sync),
   * so they produce no ReadyForQuery either. `failed` (the message the error
   * is about) and the skipped ones are voided, latest first, so that each
   * undo restores the state the one before it left.
   */
  private skipExtended(failed?: Expectation): void {
    const voided = failed ? [failed] : [];
    while (this.q.length > 0 && this.q[0]!.kind !== 'S') voided.push(this.q.shift()!);
    for (let i = voided.length - 1; i >= 0; i--) voided[i]!.effects?.voided?.();
    if (this.q.length === 0) this.hooks.skippingUntilSync();
  }

  private onReady(status: TxStatus): void {
    // Messages skipped by the server produce nothing; they sit before the Sync.
    while (this.q.length > 0 && !endsWithReady(this.q[0]!.kind)) this.q.shift();
    const h = this.q.shift();
    if (!h) {
      // A ReadyForQuery nobody waits for: a Sync the gateway assumed the
      // server ignored during COPY was answered after all. Forward it.
      this.hooks.ready(status);
      return;
    }
    if (this.copyOwner) {
      this.copyOwner = null;
      this.hooks.copyIn(false);
    }
    if (!h.failed) h.effects?.confirmed?.();
    for (let i = 0; i < this.groups.length; ) {
      const g = this.groups[i]!;
      if (g.lastSeq <= h.seq) {
        g.finish();
        this.groups.splice(i, 1);
      } else i++;
    }
    this.hooks.ready(status);
  }

  private onCopyIn(): void {
    const owner = this.head();
    if (!owner || !(owner.kind === 'E' || owner.kind === 'Q')) {
      this.fail('unexpected CopyInResponse from the server');
      return;
    }
    this.copyOwner = owner;
    // The server ignores Sync/Flush while it reads COPY data; Syncs sent
    // between the COPY and its CopyDone/CopyFail get no ReadyForQuery.
    const end = this.copyEnds.find((s) => s > owner.seq) ?? Infinity;
    this.copyVoidedSyncs = 0;
    for (let i = 1; i < this.q.length; ) {
      const e = this.q[i]!;
      if (e.kind === 'S' && e.seq > owner.seq && e.seq < end) {
        this.q.splice(i, 1);
        this.copyVoidedSyncs++;
      } else i++;
    }
    // Only when the agent has not already ended the COPY is the server now waiting for its data.
    if (end === Infinity) this.hooks.copyIn(true);
  }
}
