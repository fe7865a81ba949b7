/**
 * The WebSocket relay's per-message scrubbing, without sockets: a message cut
 * into frames anywhere (control frames in between) comes out with the same
 * content as scrubbing the whole message at once.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Scrubber } from '../../src/vault/scrub.js';
import { OPCODE, WsMessageScrubber, type WsFrame } from '../../src/protocols/http/websocket.js';

const SECRET = 'sk-live-0123456789abcdefXYZ';
const scrubber = new Scrubber([SECRET]);

function fragments(message: Buffer, cuts: number[], opcode: number): WsFrame[] {
  const points = [...new Set(cuts.map((c) => c % (message.length + 1)))].sort((a, b) => a - b);
  const frames: WsFrame[] = [];
  let prev = 0;
  for (const p of [...points, message.length]) {
    frames.push({ fin: false, rsv: 0, opcode: frames.length === 0 ? opcode : OPCODE.continuation, payload: message.subarray(prev, p) });
    prev = p;
  }
  frames[frames.length - 1]!.fin = true;
  return frames;
}

describe('WebSocket message scrubbing', () => {
  it('any fragmentation, pings in between: the message content equals the one-shot scrub, frame kinds are kept', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), fc.array(fc.nat(), { maxLength: 5 }), fc.boolean(), (before, after, cuts, binary) => {
        const message = Buffer.from(`${before}${SECRET}${after}`);
        const s = new WsMessageScrubber(scrubber);
        const sent: WsFrame[] = [];
        for (const f of fragments(message, cuts, binary ? OPCODE.binary : OPCODE.text)) {
          sent.push(s.frame({ fin: true, rsv: 0, opcode: OPCODE.ping, payload: Buffer.from(`p ${SECRET}`) }));
          sent.push(s.frame(f));
        }
        const data = sent.filter((f) => f.opcode < OPCODE.close);
        expect(Buffer.concat(data.map((f) => f.payload)).equals(scrubber.scrubBuffer(message))).toBe(true);
        expect(data[0]!.opcode).toBe(binary ? OPCODE.binary : OPCODE.text);
        expect(data.slice(1).every((f) => f.opcode === OPCODE.continuation)).toBe(true);
        expect(data.map((f) => f.fin)).toEqual(data.map((_, i) => i === data.length - 1));
        for (const p of sent.filter((f) => f.opcode === OPCODE.ping)) expect(p.payload.toString()).toBe(`p ${'*'.repeat(SECRET.length)}`);
      }),
      { numRuns: 300 },
    );
  });

  it('a new message starts with a fresh state: a prefix at the end of one message never joins the next', () => {
    const s = new WsMessageScrubber(scrubber);
    const half = SECRET.length >> 1;
    const first = s.frame({ fin: true, rsv: 0, opcode: OPCODE.text, payload: Buffer.from(`a ${SECRET.slice(0, half)}`) });
    const second = s.frame({ fin: true, rsv: 0, opcode: OPCODE.text, payload: Buffer.from(`${SECRET.slice(half)} b`) });
    expect(first.payload.toString()).toBe(`a ${SECRET.slice(0, half)}`);
    expect(second.payload.toString()).toBe(`${SECRET.slice(half)} b`);
  });
});
