/**
 * The post-login life of one agent connection, as a sans-I/O state machine:
 * bytes from the agent and the server go in, decisions come back from the
 * enforcer, and bytes for either side come out through `SessionIO`. No
 * sockets, no timers — the adapter (connection.ts) owns those.
 *
 * Every frontend message is decoded and checked. Messages that run SQL
 * (Query, Parse, an Execute not already covered by its Parse, FunctionCall)
 * wait for a policy decision; nothing behind them is forwarded meanwhile, so
 * a long approval holds this session only. Allowed messages are forwarded
 * byte for byte.
 *
 * A denial never ends the conversation out of step. Instead of the denied
 * message the gateway sends the server something that fails without side
 * effects — a Query with a syntax error, or an Execute of a portal that does
 * not exist — and replaces the server's error with its own 42501. The server
 * itself therefore does exactly what it does for any failed statement: it
 * aborts an open transaction (later statements get 25P02 until ROLLBACK and
 * nothing commits), skips the rest of an extended-protocol batch up to Sync,
 * and answers that Sync with one ReadyForQuery.
 *
 * Parse state: the gateway analyses SQL text as PostgreSQL parses it with
 * `standard_conforming_strings = on` and an ASCII-safe client encoding. The
 * server reports changes to both (ParameterStatus, just before
 * ReadyForQuery); the session ends if either changes, and a Query/Parse is
 * only analysed once every earlier ReadyForQuery has arrived. Inside one
 * extended-protocol batch a SET cannot be observed before the next Sync, so
 * text whose meaning could depend on those settings (a backslash or a
 * non-ASCII byte) that follows an executed statement in the same batch is
 * treated as uninspectable.
 */
import { serialize } from 'pg-protocol';
import { randomBytes } from 'node:crypto';
import type { Action } from '../../policy/types.js';
import type { Enforcement } from '../../gateway/contracts.js';
import type { Scrubber } from '../../vault/scrub.js';
import { errorResponse, type TxStatus } from './backend-messages.js';
import { FrontendDecoder, FrontendProtocolError, type DecodeEvent, type LargeHead, type TypedMessage } from './frontend-decoder.js';
import { AuditGroup, ResponseTracker, type Effects, type ExpectKind } from './response-tracker.js';
import { NON_ASCII, StatementMemory, credentialMismatch, messageAction, type ActionContext, type DecisionInput } from './statements.js';
import type { SqlAnalysis } from './sql.js';
import { SQLSTATE, isAsciiUnsafeClientEncoding } from './wire.js';

export interface SessionConfig extends ActionContext {
  /**
   * `limits.body_buffer`: the largest statement analysed. A larger one is
   * decided without its text (`sql.statement_truncated`), then streamed or denied.
   */
  maxBuffered: number;
  /**
   * Credential the session logged in with (null: none injected). Actions are
   * pinned to it through `credential`; a decision naming another is denied.
   */
  credentialId: string | null;
  /** Redacts the injected password (and its encodings) from everything sent to the agent. */
  scrubber: Scrubber | null;
  /** Transaction status of the server's first ReadyForQuery. */
  txStatus?: TxStatus;
  /** `client_encoding` / `server_encoding` the server reported at login (default UTF8). */
  clientEncoding?: string;
  serverEncoding?: string;
  /** Random portal names for probes (tests inject a fixed one). */
  probeName?: () => string;
}

export interface SessionIO {
  toAgent(data: Buffer): void;
  toUpstream(data: Buffer): void;
  /**
   * Start the enforcement of `action`, one at a time. Either return the
   * Enforcement at once (no approval needed: the session applies it and
   * carries on with the messages behind it), or return nothing and answer
   * later with `session.decided(...)`.
   */
  decide(action: Action): Enforcement | void;
  /** The session is over (after a Terminate, a fatal error or a closed socket). */
  close(reason: string): void;
}

interface MessageItem {
  kind: 'msg';
  msg: TypedMessage;
}

interface LargeItem {
  kind: 'large';
  head: LargeHead;
  frameLength: number;
  chunks: Buffer[];
  complete: boolean;
  mode?: 'forward' | 'discard';
}

type Item = MessageItem | LargeItem;

interface Pending {
  item: Item;
  input: DecisionInput;
  analysis: SqlAnalysis;
  text: string;
  bytesIn: number;
  canceled: boolean;
}

/** Messages the server accepts while it reads COPY data (others abort the COPY). */
const COPY_IN_OK = new Set(['d', 'c', 'f', 'H', 'S']);

/** A Query the grammar can never accept: it fails at parse time, before anything runs. */
const PROBE_QUERY = serialize.query('clawpatrol: statement denied by policy');

/** Held agent bytes above which the adapter should stop reading the agent socket. */
export const AGENT_HIGH_WATER = 4 * 1024 * 1024;

/** PostgreSQL spells it UTF8; it also accepts `utf-8`, `unicode` as input. */
function isUtf8(encoding: string): boolean {
  return ['utf8', 'unicode'].includes(encoding.toLowerCase().replace(/[-_]/g, ''));
}

export class PostgresSession {
  /** Non-ASCII names and text are unknown unless both encodings are known to be UTF-8 (see StatementMemory). */
  readonly memory = new StatementMemory(() => !(this.clientUtf8 && this.serverUtf8) || this.ranSinceReady);
  private readonly tracker: ResponseTracker;
  private readonly queue: Item[] = [];
  private heldBytes = 0;
  private pending: Pending | null = null;
  /** After a denial or a server error in an extended batch: drop agent messages until Sync, as the server would. */
  private discarding = false;
  /** Batches are delimited by Sync/Query/FunctionCall; a Parse decision covers Executes of its batch. */
  private batch = 0;
  /** A Bind/Execute ran since the last message answered with ReadyForQuery. */
  private executedSinceReady = false;
  /** An Execute ran since the last message answered with ReadyForQuery (it may have changed client_encoding unseen). */
  private ranSinceReady = false;
  /** The server is reading COPY FROM STDIN data. */
  private copyIn = false;
  /** Audit group that Bind/Describe/covered Execute of the current batch add their bytes to. */
  private batchGroup: AuditGroup | null = null;
  private fatalAfterFeed: { code: string; message: string } | null = null;
  private closed = false;
  private scrubState = 0;
  private scrubHeld: Buffer | null = null;
  /** `client_encoding` / `server_encoding` as last reported are UTF-8. */
  private clientUtf8: boolean;
  private serverUtf8: boolean;
  txStatus: TxStatus;

  constructor(
    private readonly cfg: SessionConfig,
    private readonly io: SessionIO,
    private readonly decoder: FrontendDecoder = new FrontendDecoder({ maxBuffered: cfg.maxBuffered }),
  ) {
    this.decoder.phase = 'typed';
    this.txStatus = cfg.txStatus ?? 'I';
    this.clientUtf8 = isUtf8(cfg.clientEncoding ?? 'UTF8');
    this.serverUtf8 = isUtf8(cfg.serverEncoding ?? 'UTF8');
    this.tracker = new ResponseTracker({
      parameter: (name, value) => this.onParameter(name, value),
      ready: (status) => {
        this.txStatus = status;
        // Portals live until the end of their transaction; the server drops them
        // all then. Forget them too (else every named Bind is kept forever), but
        // only when nothing forwarded later is unanswered: a Bind of the next
        // batch may already be in flight.
        if (status === 'I' && this.tracker.outstanding === 0) this.memory.transactionEnded();
      },
      skippingUntilSync: () => {
        this.discarding = true;
      },
      copyIn: (active) => {
        this.copyIn = active;
      },
      desync: (reason) => {
        this.fatalAfterFeed ??= { code: SQLSTATE.protocolViolation, message: `lost sync with the server: ${reason}` };
      },
    });
  }

  // ─────────────────────────── inputs ───────────────────────────

  /** Bytes from the agent. */
  fromAgent(chunk: Buffer): void {
    if (this.closed) return;
    this.decoder.push(chunk);
    try {
      for (let ev = this.decoder.next(); ev; ev = this.decoder.next()) this.enqueue(ev);
    } catch (err) {
      if (err instanceof FrontendProtocolError) {
        // Malformed framing ends the session: nothing after it is trusted.
        this.fatal(SQLSTATE.protocolViolation, err.message);
        return;
      }
      throw err;
    }
    this.pump();
  }

  /** Bytes from the server. */
  fromUpstream(chunk: Buffer): void {
    if (this.closed) return;
    const pieces = this.tracker.feed(chunk);
    this.sendToAgent(pieces, this.tracker.atBoundary);
    if (this.fatalAfterFeed) {
      const f = this.fatalAfterFeed;
      this.fatalAfterFeed = null;
      this.fatal(f.code, f.message);
      return;
    }
    this.pump();
  }

  /** The enforcement the session asked for through `io.decide` (when it did not come back at once). */
  decided(enf: Enforcement): void {
    this.settle(enf);
    this.pump();
  }

  /** A CancelRequest for this session arrived. True when it cancelled a pending decision (the adapter aborts it). */
  cancelPending(): boolean {
    if (!this.pending) return false;
    this.pending.canceled = true;
    return true;
  }

  /** Messages forwarded to the server and not answered yet (a cancel must reach them too). */
  get upstreamBusy(): boolean {
    return this.tracker.outstanding > 0;
  }

  /** Waiting for a decision (the adapter cancels upstream queries otherwise). */
  get deciding(): boolean {
    return this.pending !== null;
  }

  /** Agent bytes queued behind a decision; above AGENT_HIGH_WATER the adapter pauses the agent socket. */
  get queuedBytes(): number {
    return this.heldBytes;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** A socket closed: finish every audit record still open. */
  shutdown(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.tracker.finishAll(reason);
    if (this.pending) this.pending.canceled = true;
    this.io.close(reason);
  }

  // ─────────────────────────── queue ───────────────────────────

  private enqueue(ev: DecodeEvent): void {
    switch (ev.kind) {
      case 'message':
        this.queue.push({ kind: 'msg', msg: ev.message });
        this.heldBytes += ev.message.raw.length;
        return;
      case 'large-start':
        this.queue.push({ kind: 'large', head: ev.head, frameLength: ev.frameLength, chunks: [ev.prefix], complete: false });
        this.heldBytes += ev.prefix.length;
        return;
      case 'large-data': {
        const last = this.queue[this.queue.length - 1];
        if (last?.kind === 'large' && !last.complete) {
          last.chunks.push(ev.data);
          this.heldBytes += ev.data.length;
        }
        return;
      }
      case 'large-end': {
        const last = this.queue[this.queue.length - 1];
        if (last?.kind === 'large') last.complete = true;
        return;
      }
      case 'startup':
        // The decoder is in the typed phase; startup packets cannot appear here.
        throw new FrontendProtocolError('unexpected startup packet after login');
    }
  }

  private shift(): void {
    const item = this.queue.shift();
    if (item?.kind === 'msg') this.heldBytes -= item.msg.raw.length;
  }

  private dropItem(item: Item): void {
    if (item.kind === 'msg') {
      this.shift();
    } else {
      item.mode = 'discard';
    }
  }

  private pump(): void {
    while (!this.closed && this.pending === null && this.queue.length > 0) {
      const item = this.queue[0]!;
      if (item.kind === 'large') {
        if (!this.pumpLarge(item)) return;
        continue;
      }
      const m = item.msg;
      if (this.discarding) {
        if (m.type === 'S') {
          this.discarding = false;
          this.forwardSync(m.raw);
        } else if (m.type === 'X') {
          this.terminate(m.raw);
          return;
        }
        this.shift();
        continue;
      }
      if (this.copyIn && !COPY_IN_OK.has(m.type)) {
        this.fatal(SQLSTATE.protocolViolation, `unexpected message type '${m.type}' during COPY from stdin`);
        return;
      }
      switch (m.type) {
        case 'Q':
        case 'P':
          // Barrier: the server reports setting changes just before ReadyForQuery.
          if (this.tracker.readyOutstanding > 0) return;
          if (
            !this.startDecision(
              item,
              m.type === 'Q'
                ? { kind: 'Q', sql: m.sql, settingsUncertain: this.executedSinceReady }
                : { kind: 'P', name: m.name, sql: m.sql, settingsUncertain: this.executedSinceReady },
              m.raw.length,
            )
          ) {
            return;
          }
          continue; // decided at once: the item is consumed
        case 'E':
          if (this.awaitEncoding(m.portal)) return;
          if (this.memory.covers(m.portal, this.batch)) {
            // Parsed and decided in this very batch: that decision covers its execution.
            this.forward(m.raw, 'E', this.batchGroup);
            this.executedSinceReady = true;
            this.ranSinceReady = true;
            break;
          }
          if (!this.startDecision(item, { kind: 'E', portal: m.portal }, m.raw.length)) return;
          continue;
        case 'F':
          if (!this.startDecision(item, { kind: 'F' }, m.raw.length)) return;
          continue;
        case 'B':
          if (this.awaitEncoding(m.portal, m.statement)) return;
          this.forward(m.raw, 'B', this.batchGroup, this.memory.bind(m.portal, m.statement, this.batch));
          this.executedSinceReady = true;
          break;
        case 'D':
          this.forward(m.raw, 'D', this.batchGroup);
          break;
        case 'C':
          if (this.awaitEncoding(m.name)) return;
          if (m.target === 'P') this.memory.closePortal(m.name);
          this.forward(m.raw, 'C', this.batchGroup, m.target === 'S' ? this.memory.closing(m.name) : undefined);
          break;
        case 'S':
          this.forwardSync(m.raw);
          break;
        case 'H':
        case 'd':
          this.io.toUpstream(m.raw);
          this.tracker.forwarded();
          break;
        case 'c':
        case 'f':
          this.io.toUpstream(m.raw);
          this.tracker.copyEnd();
          this.copyIn = false;
          break;
        case 'X':
          this.terminate(m.raw);
          return;
        case 'p':
          this.fatal(SQLSTATE.protocolViolation, 'unexpected password message: the gateway never asks agents for a password');
          return;
      }
      this.shift();
    }
  }

  /**
   * A non-ASCII name means whatever the server's encodings make of its bytes;
   * a `SET client_encoding` still unanswered may change that, and the server
   * reports the change only just before ReadyForQuery. Such a message waits
   * for every earlier ReadyForQuery (like Query/Parse do), so StatementMemory
   * judges its name with the encodings it will be read in.
   */
  private awaitEncoding(...names: string[]): boolean {
    return this.tracker.readyOutstanding > 0 && names.some((n) => NON_ASCII.test(n));
  }

  /** Returns true when the item is done and the loop may continue. */
  private pumpLarge(item: LargeItem): boolean {
    if (item.mode === undefined) {
      if (this.discarding) {
        item.mode = 'discard';
      } else {
        if (this.copyIn && item.head.type !== 'd') {
          this.fatal(SQLSTATE.protocolViolation, `unexpected message type '${item.head.type}' during COPY from stdin`);
          return false;
        }
        switch (item.head.type) {
          case 'Q':
            if (this.tracker.readyOutstanding > 0) return false;
            if (!this.startDecision(item, { kind: 'Q', sql: '', oversize: item.frameLength - 5, maxBuffered: this.cfg.maxBuffered }, item.frameLength)) {
              return false;
            }
            break;
          case 'P':
            if (this.tracker.readyOutstanding > 0) return false;
            if (
              !this.startDecision(
                item,
                { kind: 'P', name: item.head.name, sql: '', oversize: item.frameLength - 5, maxBuffered: this.cfg.maxBuffered },
                item.frameLength,
              )
            ) {
              return false;
            }
            break;
          case 'F':
            if (!this.startDecision(item, { kind: 'F' }, item.frameLength)) return false;
            break;
          case 'B':
            if (this.awaitEncoding(item.head.portal, item.head.statement)) return false;
            this.tracker.expect('B', this.batchGroup, undefined, this.memory.bind(item.head.portal, item.head.statement, this.batch));
            this.executedSinceReady = true;
            item.mode = 'forward';
            break;
          case 'd':
            this.tracker.forwarded();
            item.mode = 'forward';
            break;
        }
      }
    }
    for (const c of item.chunks) {
      if (item.mode === 'forward') this.io.toUpstream(c);
      this.heldBytes -= c.length;
    }
    item.chunks = [];
    if (!item.complete) return false;
    this.queue.shift();
    return true;
  }

  // ─────────────────────────── decisions ───────────────────────────

  /**
   * Ask for the decision on `item`. True when it came back at once and was
   * applied (the item is consumed or set to stream/discard): the pump goes on.
   */
  private startDecision(item: Item, input: DecisionInput, bytesIn: number): boolean {
    const seen = this.memory.decisionInput(input);
    this.pending = { item, input, analysis: seen.analysis, text: seen.text, bytesIn, canceled: false };
    const enf = this.io.decide(messageAction(this.cfg, seen));
    if (!enf) return false;
    this.settle(enf);
    return true;
  }

  /** Apply the enforcement of the pending item. */
  private settle(enf: Enforcement): void {
    const p = this.pending;
    if (!p) {
      enf.finish({ status: 'unexpected' });
      return;
    }
    this.pending = null;
    if (this.closed) {
      enf.finish({ status: 'closed' });
      return;
    }
    if (this.discarding) {
      // The server reported an error in this batch while we were deciding:
      // it skips this message anyway, so it is dropped, not run.
      enf.finish({ bytesIn: p.bytesIn, status: 'skipped' });
      this.dropItem(p.item);
      return;
    }
    let allowed = enf.allowed && !p.canceled;
    let reason = enf.reason;
    const mismatch = allowed ? credentialMismatch(enf, this.cfg.credentialId) : null;
    if (mismatch) {
      allowed = false;
      reason = mismatch;
    }
    if (allowed) this.allow(p, enf);
    else this.deny(p, enf, reason);
  }

  private allow(p: Pending, enf: Enforcement): void {
    const group = new AuditGroup(enf, p.bytesIn);
    const item = p.item;
    const kind = p.input.kind;
    if (item.kind === 'msg') this.io.toUpstream(item.msg.raw);
    this.tracker.expect(kind, group, undefined, this.memory.allowed(p.input, p.analysis, p.text, this.batch));
    const over = this.memory.overLimit();
    if (over) {
      // The message was allowed and goes on; the session ends behind it, before anything else is read.
      this.fatal(SQLSTATE.programLimitExceeded, over);
      return;
    }
    switch (kind) {
      case 'Q':
      case 'F':
        this.endBatch();
        break;
      case 'P':
        this.batchGroup = group;
        break;
      case 'E':
        this.batchGroup = group;
        this.executedSinceReady = true;
        this.ranSinceReady = true;
        break;
    }
    if (item.kind === 'large') item.mode = 'forward'; // pumpLarge streams the bytes
    else this.shift();
  }

  private deny(p: Pending, enf: Enforcement, reason: string): void {
    const code = p.canceled ? SQLSTATE.queryCanceled : SQLSTATE.insufficientPrivilege;
    const message = p.canceled ? 'canceling statement due to user request' : reason || 'denied by policy';
    const d = enf.decision;
    const reply = errorResponse({
      severity: 'ERROR',
      code,
      message,
      detail: d.rule ? `clawpatrol rule "${d.rule}" on ${d.endpoint ?? this.cfg.endpointId}` : `clawpatrol policy on ${this.cfg.endpointId}`,
      ...(p.analysis.inspected ? {} : { hint: `the gateway could not inspect this statement: ${p.analysis.error ?? 'unknown reason'}` }),
    });
    // A denial is final: its audit record is complete now.
    enf.finish({ bytesIn: p.bytesIn, bytesOut: reply.length, status: code });
    if (p.input.kind === 'Q' || p.input.kind === 'F') {
      this.io.toUpstream(PROBE_QUERY);
      this.tracker.expect('probeQ', null, reply);
      this.endBatch();
    } else {
      const portal = this.cfg.probeName?.() ?? `clawpatrol_denied_${randomBytes(12).toString('hex')}`;
      this.io.toUpstream(serialize.execute({ portal, rows: 0 }));
      this.tracker.expect('probeE', null, reply);
      this.batchGroup = null;
      // The server now skips to Sync; so does the gateway (nothing it holds is sent).
      this.discarding = true;
    }
    this.dropItem(p.item);
  }

  // ─────────────────────────── forwarding ───────────────────────────

  /** `effects`: what the statement memory does once the server answers (see Effects). */
  private forward(raw: Buffer, kind: ExpectKind, group: AuditGroup | null, effects?: Effects): void {
    this.io.toUpstream(raw);
    this.tracker.expect(kind, group, undefined, effects);
  }

  private forwardSync(raw: Buffer): void {
    this.io.toUpstream(raw);
    if (this.copyIn) {
      this.tracker.forwarded(); // ignored by the server while it reads COPY data
      return;
    }
    this.tracker.expect('S', null);
    this.endBatch();
  }

  private endBatch(): void {
    this.batch++;
    this.batchGroup = null;
    this.executedSinceReady = false;
    this.ranSinceReady = false;
  }

  private terminate(raw: Buffer): void {
    this.io.toUpstream(raw);
    this.shutdown('terminated by the agent');
  }

  private onParameter(name: string, value: string): void {
    const key = name.toLowerCase();
    if (key === 'client_encoding') this.clientUtf8 = isUtf8(value);
    if (key === 'server_encoding') this.serverUtf8 = isUtf8(value);
    if (key === 'standard_conforming_strings' && value.toLowerCase() !== 'on') {
      this.fatalAfterFeed ??= {
        code: SQLSTATE.featureNotSupported,
        message:
          'standard_conforming_strings was turned off; the gateway inspects SQL as PostgreSQL parses it with the setting on, so the session ends',
      };
    }
    if (key === 'client_encoding' && isAsciiUnsafeClientEncoding(value)) {
      this.fatalAfterFeed ??= {
        code: SQLSTATE.featureNotSupported,
        message: `client_encoding ${value} is not supported through the gateway (ASCII bytes can be part of a multibyte character); the session ends`,
      };
    }
  }

  private fatal(code: string, message: string): void {
    if (this.closed) return;
    this.flushScrubHeld();
    this.io.toAgent(errorResponse({ severity: 'FATAL', code, message }));
    this.shutdown(message);
  }

  // ─────────────────────────── to the agent ───────────────────────────

  /**
   * Write server bytes to the agent, redacting the injected password. Bytes
   * that could be the start of a secret are held back only while the server
   * is in the middle of a message (the agent cannot act on a partial message
   * anyway); at a message boundary everything is released, so nothing waits.
   */
  private sendToAgent(pieces: Buffer[], atBoundary: boolean): void {
    const s = this.cfg.scrubber;
    if (!s || s.empty) {
      for (const p of pieces) this.io.toAgent(p);
      return;
    }
    for (const piece of pieces) {
      const held = this.scrubHeld;
      const joined = held ? Buffer.concat([held, piece]) : piece;
      const r = s.scan(joined, held ? held.length : 0, this.scrubState, held ? joined : null);
      this.scrubState = r.state;
      const emit = r.output.length - r.hold;
      this.scrubHeld = r.hold ? Buffer.from(r.output.subarray(emit)) : null;
      if (emit > 0) this.io.toAgent(r.output.subarray(0, emit));
    }
    if (atBoundary) this.flushScrubHeld();
  }

  private flushScrubHeld(): void {
    if (this.scrubHeld) this.io.toAgent(this.scrubHeld);
    this.scrubHeld = null;
    this.scrubState = 0;
  }
}
