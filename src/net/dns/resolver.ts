/**
 * The tunnel's DNS logic, independent of sockets: one query in, one response
 * out (or nothing for garbage). Declared endpoint hosts (and names under a
 * declared wildcard) are answered with their stable virtual IPs; PTR lookups
 * of a VIP name it; everything else is forwarded to the gateway host's
 * resolvers, or REFUSED when `unknown_host = "deny"`.
 */
import dnsPacket from 'dns-packet';
import type { Packet, Question } from 'dns-packet';
import { VipExhaustedError, type VipTable } from '../vips.js';
import { bigintToIp, type Cidr } from '../ip.js';
import { normaliseServerName } from '../sniff.js';
import type { DnsUpstream } from './upstream.js';

export type DnsTransport = 'udp' | 'tcp';

export interface DeclaredName {
  endpointId: string;
  /** Only a wildcard (`*.example.com`) declares it: the asking device pays for its virtual IP. */
  wildcard: boolean;
}

export interface DnsNameDirectory {
  /** The endpoint that claims `name` (normalised, any profile), or null. */
  declaredName(name: string): DeclaredName | null;
  unknownHost(): 'passthrough' | 'deny';
}

export interface DnsResolverOptions {
  vips: VipTable;
  directory: DnsNameDirectory;
  /** Null when the gateway host has no resolver: undeclared names get SERVFAIL. */
  upstream: DnsUpstream | null;
  range4: Cidr;
  range6: Cidr | null;
  /** TTL of VIP answers (seconds). */
  ttl?: number;
  log?: (line: string) => void;
}

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

/** RFC 8914 Extended DNS Error option, and its "Other" info code: the reason travels as text. */
const EDNS_EXTENDED_ERROR = 15;
const EDE_OTHER = 0;
const EDNS_UDP_PAYLOAD = 1232;

const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;

/**
 * A response carrying only a header (and the question when we could read
 * it). With `reason`, and only when the query spoke EDNS (RFC 6891 forbids
 * an OPT record otherwise), the reason rides along as an Extended DNS Error
 * (RFC 8914), so `dig` shows the agent why.
 */
export function errorResponse(query: Buffer, rcode: number, question?: Question, reason?: { edns: boolean; text: string }): Buffer | null {
  if (query.length < 12) return null;
  const id = query.readUInt16BE(0);
  const rd = query.readUInt16BE(2) & FLAG_RD;
  const info = reason?.edns ? Buffer.concat([Buffer.from([EDE_OTHER >> 8, EDE_OTHER & 0xff]), Buffer.from(reason.text.slice(0, 400), 'utf8')]) : null;
  return dnsPacket.encode({
    type: 'response',
    id,
    flags: rd | FLAG_RA | rcode,
    questions: question ? [question] : [],
    ...(info
      ? {
          // dns-packet encodes any option code from its raw `data`; its typings list only four codes.
          additionals: [
            { type: 'OPT', name: '.', udpPayloadSize: EDNS_UDP_PAYLOAD, flags: 0, options: [{ code: EDNS_EXTENDED_ERROR, data: info }] } as unknown as dnsPacket.Answer,
          ],
        }
      : {}),
  });
}

/** `5.0.78.10.in-addr.arpa` / nibble `ip6.arpa` → address text, else null. */
export function reverseNameToIp(name: string): string | null {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.in-addr\.arpa$/.exec(name);
  if (v4) {
    const parts = [v4[4], v4[3], v4[2], v4[1]].map(Number);
    return parts.every((p) => p <= 255) ? parts.join('.') : null;
  }
  const v6 = /^((?:[0-9a-f]\.){32})ip6\.arpa$/.exec(name);
  if (v6?.[1]) {
    const nibbles = v6[1].split('.').filter(Boolean).reverse().join('');
    return bigintToIp(BigInt('0x' + nibbles), 6);
  }
  return null;
}

export class DnsResolver {
  private readonly ttl: number;
  private readonly log: (line: string) => void;

  constructor(private readonly opts: DnsResolverOptions) {
    this.ttl = opts.ttl ?? 300;
    this.log = opts.log ?? (() => {});
  }

  /** `device`: the enrolled device that asked (its wildcard names count against its cap). */
  async answer(query: Buffer, transport: DnsTransport, device?: string): Promise<Buffer | null> {
    let packet: Packet;
    try {
      packet = dnsPacket.decode(query);
    } catch {
      return errorResponse(query, RCODE.FORMERR);
    }
    if (packet.type !== 'query') return null; // never answer a response (reflection loops)
    const question = packet.questions?.[0];
    if ((packet as { opcode?: string }).opcode !== 'QUERY') return errorResponse(query, RCODE.NOTIMP, question);
    if (!question || packet.questions!.length !== 1) return errorResponse(query, RCODE.FORMERR);

    const name = normaliseServerName(question.name);
    if (name === null) return this.unknown(query, question, transport);

    const declared = this.opts.directory.declaredName(name);
    if (declared !== null) return this.declared(query, packet, question, name, declared, device);

    if (question.type === 'PTR') {
      const ip = reverseNameToIp(name);
      if (ip !== null && this.opts.vips.inRange(ip)) {
        const rec = await this.opts.vips.resolve(ip);
        if (!rec) return errorResponse(query, RCODE.NXDOMAIN, question);
        return this.respond(packet, question, [{ type: 'PTR', name: question.name, ttl: this.ttl, data: rec.name }]);
      }
    }
    return this.unknown(query, question, transport);
  }

  private async declared(query: Buffer, packet: Packet, question: Question, name: string, declared: DeclaredName, device: string | undefined): Promise<Buffer | null> {
    let rec;
    try {
      rec = await this.opts.vips.ensure(name, declared.endpointId, { ...(device ? { device } : {}), wildcard: declared.wildcard });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log(`dns: ${name}: ${message}`);
      if (!(err instanceof VipExhaustedError)) return errorResponse(query, RCODE.SERVFAIL, question);
      const edns = (packet.additionals ?? []).some((a) => a.type === 'OPT');
      return errorResponse(query, RCODE.REFUSED, question, { edns, text: `clawpatrol: ${message}` });
    }
    const answers: dnsPacket.Answer[] = [];
    // ANY (type 255) is not in dns-packet's type union; it asks for both.
    const qtype = question.type as string;
    const wantA = qtype === 'A' || qtype === 'ANY';
    const wantAaaa = qtype === 'AAAA' || qtype === 'ANY';
    if (wantA) answers.push({ type: 'A', name: question.name, ttl: this.ttl, data: rec.v4 });
    if (wantAaaa && rec.v6) answers.push({ type: 'AAAA', name: question.name, ttl: this.ttl, data: rec.v6 });
    // Any other type (MX, TXT, HTTPS/SVCB…): the name exists, with no data of that type.
    return this.respond(packet, question, answers);
  }

  private async unknown(query: Buffer, question: Question, transport: DnsTransport): Promise<Buffer | null> {
    if (this.opts.directory.unknownHost() === 'deny') return errorResponse(query, RCODE.REFUSED, question);
    if (!this.opts.upstream) return errorResponse(query, RCODE.SERVFAIL, question);
    try {
      return await this.opts.upstream.query(query, transport);
    } catch (err) {
      this.log(`dns: upstream lookup of ${question.name} failed: ${err instanceof Error ? err.message : String(err)}`);
      return errorResponse(query, RCODE.SERVFAIL, question);
    }
  }

  private respond(packet: Packet, question: Question, answers: dnsPacket.Answer[]): Buffer {
    const rd = (packet.flags ?? 0) & FLAG_RD;
    return dnsPacket.encode({
      type: 'response',
      id: packet.id ?? 0,
      flags: FLAG_QR | FLAG_AA | rd | FLAG_RA | RCODE.NOERROR,
      questions: [question],
      answers,
    });
  }
}
