/**
 * WebSocket (RFC 6455) after the 101: a sans-I/O frame parser and encoder,
 * and a relay that passes every frame through a hook (content inspection)
 * and scrubs injected secrets from what the upstream sends.
 *
 * Scrubbing follows messages, not frames: a secret split across two frames
 * of one fragmented message is still found. The bytes at the end of a frame
 * that could begin a secret are held back and sent at the start of the next
 * frame of the same message (RFC 6455 §5.4 lets an intermediary change how a
 * message is fragmented when no extension is in use — and none is). Control
 * frames (ping, pong, close), which stand alone, are scrubbed whole.
 *
 * The gateway strips `Sec-WebSocket-Extensions` from the handshake, so no
 * compression is negotiated and every payload is readable. A frame with an
 * RSV bit set anyway cannot be inspected: the relay closes with 1002.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { ScrubCursor, Scrubber } from '../../vault/scrub.js';

export interface WsFrame {
  fin: boolean;
  /** RSV1–3 as a 3-bit number (0 unless an extension is in use). */
  rsv: number;
  opcode: number;
  /** Unmasked payload. */
  payload: Buffer;
}

export const OPCODE = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

export class WsProtocolError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

/** Parses frames from one direction. `masked` says whether frames must (client) or must not (server) be masked. */
export class WsFrameParser {
  private buf: Buffer = Buffer.alloc(0);

  constructor(
    private readonly masked: boolean,
    private readonly maxPayload: number = 64 * 1024 * 1024,
  ) {}

  push(chunk: Buffer): WsFrame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: WsFrame[] = [];
    for (;;) {
      const f = this.one();
      if (!f) return frames;
      frames.push(f);
    }
  }

  private one(): WsFrame | null {
    const b = this.buf;
    if (b.length < 2) return null;
    const fin = (b[0]! & 0x80) !== 0;
    const rsv = (b[0]! >> 4) & 0x07;
    const opcode = b[0]! & 0x0f;
    const isMasked = (b[1]! & 0x80) !== 0;
    let len = b[1]! & 0x7f;
    let off = 2;
    if (len === 126) {
      if (b.length < 4) return null;
      len = b.readUInt16BE(2);
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return null;
      const big = b.readBigUInt64BE(2);
      if (big > BigInt(this.maxPayload)) throw new WsProtocolError(1009, 'frame too large');
      len = Number(big);
      off = 10;
    }
    if (isMasked !== this.masked) throw new WsProtocolError(1002, this.masked ? 'unmasked client frame' : 'masked server frame');
    if (opcode >= 8 && (len > 125 || !fin)) throw new WsProtocolError(1002, 'invalid control frame');
    if ((opcode > 2 && opcode < 8) || opcode > 10) throw new WsProtocolError(1002, `unknown opcode ${opcode}`);
    if (len > this.maxPayload) throw new WsProtocolError(1009, 'frame too large');
    const maskOff = off;
    if (isMasked) off += 4;
    if (b.length < off + len) return null;
    const payload = Buffer.from(b.subarray(off, off + len));
    if (isMasked) {
      const key = b.subarray(maskOff, maskOff + 4);
      for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!;
    }
    this.buf = b.subarray(off + len);
    return { fin, rsv, opcode, payload };
  }
}

export function encodeFrame(frame: WsFrame, mask: boolean): Buffer {
  const len = frame.payload.length;
  const extra = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const head = Buffer.alloc(2 + extra + (mask ? 4 : 0));
  head[0] = (frame.fin ? 0x80 : 0) | ((frame.rsv & 7) << 4) | frame.opcode;
  head[1] = (mask ? 0x80 : 0) | (len < 126 ? len : len < 65536 ? 126 : 127);
  if (extra === 2) head.writeUInt16BE(len, 2);
  else if (extra === 8) head.writeBigUInt64BE(BigInt(len), 2);
  if (!mask) return Buffer.concat([head, frame.payload]);
  const key = randomBytes(4);
  key.copy(head, 2 + extra);
  const body = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) body[i] = frame.payload[i]! ^ key[i & 3]!;
  return Buffer.concat([head, body]);
}

export function closeFrame(code: number, reason: string): WsFrame {
  const r = Buffer.from(reason.slice(0, 100), 'utf8');
  const payload = Buffer.alloc(2 + r.length);
  payload.writeUInt16BE(code, 0);
  r.copy(payload, 2);
  return { fin: true, rsv: 0, opcode: OPCODE.close, payload };
}

export type WsDirection = 'agent-to-upstream' | 'upstream-to-agent';

/**
 * Scrubs the data frames of one direction as the message stream they form:
 * the scrubber's state runs across the frames of a message and ends with it.
 */
export class WsMessageScrubber {
  private cursor: ScrubCursor | null = null;

  constructor(private readonly scrubber: Scrubber) {}

  /** The frame to send in place of `frame` (same message content, possibly moved between frames). */
  frame(frame: WsFrame): WsFrame {
    if (this.scrubber.empty) return frame;
    if (frame.opcode >= OPCODE.close) return { ...frame, payload: this.scrubber.scrubBuffer(frame.payload) };
    this.cursor ??= this.scrubber.cursor();
    const out = this.cursor.push(frame.payload);
    if (!frame.fin) return { ...frame, payload: out };
    const tail = this.cursor.end();
    this.cursor = null;
    return { ...frame, payload: tail.length ? Buffer.concat([out, tail]) : out };
  }
}

/**
 * Called for every frame before it is relayed. Return `{ close: reason }` to
 * end the session with 1008 (policy violation) instead of relaying it.
 */
export type WebSocketFrameHook = (
  frame: Readonly<WsFrame> & { direction: WsDirection },
  session: { host: string; path: string; endpoint: string | null },
) => void | { close: string };

export interface RelayOptions {
  agent: Duplex;
  agentHead: Buffer;
  upstream: Duplex;
  upstreamHead: Buffer;
  scrubber: Scrubber;
  hook?: WebSocketFrameHook | undefined;
  session: { host: string; path: string; endpoint: string | null };
  /** Called once when both sides are gone, with bytes read from / written to the agent. */
  onDone: (bytes: { fromAgent: number; toAgent: number }) => void;
}

export function relayWebSocket(o: RelayOptions): void {
  let fromAgent = 0;
  let toAgent = 0;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    o.agent.destroy();
    o.upstream.destroy();
    o.onDone({ fromAgent, toAgent });
  };
  const writeAgent = (frame: WsFrame) => {
    const bytes = encodeFrame(frame, false);
    toAgent += bytes.length;
    return o.agent.write(bytes);
  };
  const fail = (code: number, reason: string) => {
    // Tell both sides why, then cut.
    try {
      writeAgent(closeFrame(code, reason));
      o.upstream.write(encodeFrame(closeFrame(code, reason), true));
    } catch {
      // sockets already gone
    }
    o.agent.end();
    o.upstream.end();
    setTimeout(finish, 1000).unref();
  };

  const fromAgentParser = new WsFrameParser(true);
  const fromUpstreamParser = new WsFrameParser(false);
  const toAgentScrubber = new WsMessageScrubber(o.scrubber);

  /** The complete frames in `chunk`, or null when the stream broke the protocol (the session is then failed). */
  const parse = (parser: WsFrameParser, chunk: Buffer): WsFrame[] | null => {
    try {
      return parser.push(chunk);
    } catch (err) {
      const e = err instanceof WsProtocolError ? err : new WsProtocolError(1002, 'protocol error');
      fail(e.code, e.message);
      return null;
    }
  };

  const onAgentData = (chunk: Buffer) => {
    fromAgent += chunk.length;
    for (const f of parse(fromAgentParser, chunk) ?? []) {
      if (f.rsv !== 0) return fail(1002, 'compressed or extended frames cannot be inspected');
      const verdict = o.hook?.({ ...f, direction: 'agent-to-upstream' }, o.session);
      if (verdict && 'close' in verdict) return fail(1008, verdict.close);
      if (!o.upstream.write(encodeFrame(f, true))) o.agent.pause();
    }
  };
  const onUpstreamData = (chunk: Buffer) => {
    for (const f of parse(fromUpstreamParser, chunk) ?? []) {
      if (f.rsv !== 0) return fail(1002, 'compressed or extended frames cannot be inspected');
      // Length-preserving per message; a frame may carry bytes held back from the one before.
      const clean = toAgentScrubber.frame(f);
      const verdict = o.hook?.({ ...clean, direction: 'upstream-to-agent' }, o.session);
      if (verdict && 'close' in verdict) return fail(1008, verdict.close);
      if (!writeAgent(clean)) o.upstream.pause();
    }
  };

  o.agent.on('data', onAgentData);
  o.upstream.on('data', onUpstreamData);
  o.agent.on('drain', () => o.upstream.resume());
  o.upstream.on('drain', () => o.agent.resume());
  for (const s of [o.agent, o.upstream]) {
    s.on('error', finish);
    s.on('close', finish);
    s.on('end', () => {
      // A half-close from one side ends the session: WebSocket closes are frames, not TCP half-closes.
      (s === o.agent ? o.upstream : o.agent).end();
    });
  }
  if (o.agentHead.length) onAgentData(o.agentHead);
  if (o.upstreamHead.length) onUpstreamData(o.upstreamHead);
  o.agent.resume();
  o.upstream.resume();
}
