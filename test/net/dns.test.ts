import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server } from 'node:net';
import dnsPacket from 'dns-packet';
import { openStore, type Store } from '../../src/store/index.js';
import { VipTable } from '../../src/net/vips.js';
import { DnsResolver, RCODE, reverseNameToIp, type DeclaredName, type DnsNameDirectory } from '../../src/net/dns/resolver.js';
import { forwarder, parseResolvConf } from '../../src/net/dns/upstream.js';
import { parseCidr } from '../../src/net/ip.js';
import { HostIndex, parseHostPattern } from '../../src/policy/hosts.js';

const range4 = parseCidr('10.78.0.0/16');
const range6 = parseCidr('fd78::/64');

function names(mode: { unknown: 'passthrough' | 'deny' }): DnsNameDirectory {
  const idx = new HostIndex<DeclaredName>();
  for (const [h, id] of [['api.example.com', 'https.api'], ['*.svc.example.com', 'https.svc'], ['db.internal:5432', 'postgres.pg'], ['pinned.svc.example.com', 'https.pinned']] as const) {
    const p = parseHostPattern(h);
    if (p.ok) idx.add({ host: p.pattern.host, wildcard: p.pattern.wildcard }, { endpointId: id, wildcard: p.pattern.wildcard });
  }
  return { declaredName: (n) => idx.lookup(n), unknownHost: () => mode.unknown };
}

/** dns-packet decodes `rcode` and `flag_aa`; its typings omit them. */
function decoded(buf: Buffer) {
  return dnsPacket.decode(buf) as ReturnType<typeof dnsPacket.decode> & { rcode: string; flag_aa: boolean };
}

let id = 100;
function query(name: string, type: string, edns = false): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: ++id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: type as 'A', name }],
    ...(edns ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer] } : {}),
  });
}

/** The RFC 8914 Extended DNS Error text of a response, if any. */
function extendedError(p: ReturnType<typeof dnsPacket.decode>): string | null {
  for (const a of p.additionals ?? []) {
    if (a.type !== 'OPT') continue;
    const ede = (a.options as Array<{ code: number; data?: Buffer }>).find((o) => o.code === 15);
    if (ede?.data) return ede.data.subarray(2).toString('utf8');
  }
  return null;
}

/** A stand-in for the gateway host's resolver that speaks real DNS on UDP and TCP. */
async function fakeUpstream(): Promise<{ port: number; seen: string[]; close(): Promise<void> }> {
  const seen: string[] = [];
  const answer = (msg: Buffer) => {
    const q = dnsPacket.decode(msg);
    seen.push(q.questions![0]!.name);
    return dnsPacket.encode({
      type: 'response', id: q.id ?? 0, flags: dnsPacket.RECURSION_AVAILABLE, questions: q.questions,
      answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: '203.0.113.7' }],
    });
  };
  const tcp: Server = createServer((s) => {
    s.once('data', (d: Buffer) => {
      const a = answer(d.subarray(2));
      s.end(Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]));
    });
  });
  await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
  const port = (tcp.address() as { port: number }).port;
  // The UDP port of the same number is almost always free; a clash fails the test loudly.
  const udp: UdpSocket = createSocket('udp4');
  udp.on('message', (m, r) => udp.send(answer(m), r.port, r.address));
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, '127.0.0.1', () => resolve());
  });
  return { port, seen, close: async () => { udp.close(); await new Promise<void>((r) => tcp.close(() => r())); } };
}

describe('tunnel DNS', () => {
  let dir: string;
  let store: Store;
  let upstream: Awaited<ReturnType<typeof fakeUpstream>>;
  const mode = { unknown: 'passthrough' as 'passthrough' | 'deny' };

  const resolver = async (s: Store = store) =>
    new DnsResolver({
      vips: await VipTable.open({ kv: s.kv, range4, range6 }),
      directory: names(mode),
      upstream: forwarder({ servers: [{ host: '127.0.0.1', port: upstream.port }], timeoutMs: 500 }),
      range4,
      range6,
    });
  const ask = async (r: DnsResolver, name: string, type: string, transport: 'udp' | 'tcp' = 'udp', device?: string, edns = false) => {
    const q = query(name, type, edns);
    const reply = await r.answer(q, transport, device);
    const p = decoded(reply!);
    expect(p.id).toBe(q.readUInt16BE(0));
    return p;
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cp-dns-'));
    store = await openStore({ stateDir: join(dir, 'state') });
    upstream = await fakeUpstream();
    mode.unknown = 'passthrough';
  });
  afterEach(async () => {
    await store.close();
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers declared hosts with stable VIPs, v4 and v6 at the same offset', async () => {
    const r = await resolver();
    const a = await ask(r, 'API.example.com.', 'A');
    expect(a.rcode).toBe('NOERROR');
    expect(a.flag_aa).toBe(true);
    const v4 = (a.answers![0] as { data: string }).data;
    expect(v4).toMatch(/^10\.78\./);
    const aaaa = await ask(r, 'api.example.com', 'AAAA');
    const v6 = (aaaa.answers![0] as { data: string }).data;
    expect(v6.startsWith('fd78::')).toBe(true);
    expect(v6.split(':').pop()).toBe(Number(v4.split('.')[3]).toString(16));
    expect(upstream.seen).toEqual([]);
    // The same name after a restart (new resolver over the same store): the same address.
    await store.close();
    store = await openStore({ stateDir: join(dir, 'state') });
    const again = await ask(await resolver(store), 'api.example.com', 'A');
    expect((again.answers![0] as { data: string }).data).toBe(v4);
  });

  it('gives every name under a wildcard its own VIP', async () => {
    const r = await resolver();
    const a = await ask(r, 'one.svc.example.com', 'A');
    const b = await ask(r, 'two.deep.svc.example.com', 'A');
    const x = (a.answers![0] as { data: string }).data;
    const y = (b.answers![0] as { data: string }).data;
    expect(x).not.toBe(y);
    const bare = await ask(r, 'svc.example.com', 'A'); // not covered by *.svc.example.com
    expect(upstream.seen).toContain('svc.example.com');
    expect(bare.rcode).toBe('NOERROR');
  });

  it('gives the same VIP to concurrent first lookups of one name', async () => {
    const r = await resolver();
    const replies = await Promise.all(Array.from({ length: 8 }, () => ask(r, 'new.svc.example.com', 'A')));
    const addrs = new Set(replies.map((p) => (p.answers![0] as { data: string }).data));
    expect(addrs.size).toBe(1);
  });

  it('answers other record types of a declared name with no data', async () => {
    const r = await resolver();
    for (const t of ['MX', 'TXT', 'UNKNOWN_65']) {
      const p = await ask(r, 'api.example.com', t);
      expect(p.rcode).toBe('NOERROR');
      expect(p.answers).toEqual([]);
    }
  });

  it('forwards undeclared names upstream under passthrough, over UDP and TCP', async () => {
    const r = await resolver();
    const udp = await ask(r, 'example.org', 'A', 'udp');
    expect((udp.answers![0] as { data: string }).data).toBe('203.0.113.7');
    const tcp = await ask(r, 'example.net', 'A', 'tcp');
    expect((tcp.answers![0] as { data: string }).data).toBe('203.0.113.7');
    expect(upstream.seen).toEqual(['example.org', 'example.net']);
  });

  it('refuses undeclared names under unknown_host = deny without asking upstream', async () => {
    mode.unknown = 'deny';
    const r = await resolver();
    expect((await ask(r, 'example.org', 'A')).rcode).toBe('REFUSED');
    expect((await ask(r, 'api.example.com', 'A')).rcode).toBe('NOERROR');
    expect(upstream.seen).toEqual([]);
  });

  it('answers SERVFAIL when the upstream resolver is down', async () => {
    await upstream.close();
    const r = await resolver();
    expect((await ask(r, 'example.org', 'A')).rcode).toBe('SERVFAIL');
    upstream = await fakeUpstream();
  });

  it('names a VIP in reverse lookups', async () => {
    const r = await resolver();
    const a = await ask(r, 'api.example.com', 'A');
    const v4 = (a.answers![0] as { data: string }).data;
    const rev = v4.split('.').reverse().join('.') + '.in-addr.arpa';
    const ptr = await ask(r, rev, 'PTR');
    expect((ptr.answers![0] as { data: string }).data).toBe('api.example.com');
    expect((await ask(r, '250.250.78.10.in-addr.arpa', 'PTR')).rcode).toBe('NXDOMAIN');
    expect(reverseNameToIp('5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.7.d.f.ip6.arpa')).toBe('fd78::5');
  });

  it('answers garbage with FORMERR, and never answers a response', async () => {
    const r = await resolver();
    const garbage = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01]), Buffer.alloc(6), Buffer.from([0xff, 0xff])]);
    const reply = decoded((await r.answer(garbage, 'udp'))!);
    expect(reply.id).toBe(0x1234);
    expect(reply.rcode).toBe('FORMERR');
    expect(await r.answer(Buffer.alloc(5), 'udp')).toBeNull();
    const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'api.example.com' }] });
    expect(await r.answer(response, 'udp')).toBeNull();
    const twoQuestions = dnsPacket.encode({ type: 'query', id: 9, questions: [{ type: 'A', name: 'a.b' }, { type: 'A', name: 'c.d' }] });
    expect(decoded((await r.answer(twoQuestions, 'udp'))!).rcode).toBe('FORMERR');
  });

  it('stops allocating at the cap instead of exhausting the range', async () => {
    const vips = await VipTable.open({ kv: store.kv, range4, range6, maxNames: 3 });
    const r = new DnsResolver({ vips, directory: names(mode), upstream: null, range4, range6 });
    for (const n of ['a', 'b', 'c']) expect((await ask(r, `${n}.svc.example.com`, 'A')).rcode).toBe('NOERROR');
    expect((await ask(r, 'd.svc.example.com', 'A')).rcode).toBe('REFUSED');
    expect((await ask(r, 'a.svc.example.com', 'A')).rcode).toBe('NOERROR');
    expect(RCODE.REFUSED).toBe(5);
  });

  it('caps the names one device can mint under wildcards, telling it why; others and declared names are unaffected', async () => {
    const opened = () => VipTable.open({ kv: store.kv, range4, range6, maxWildcardNamesPerDevice: 2 });
    let vips = await opened();
    let r = new DnsResolver({ vips, directory: names(mode), upstream: null, range4, range6 });
    expect((await ask(r, 'a.svc.example.com', 'A', 'udp', 'dev_a')).rcode).toBe('NOERROR');
    expect((await ask(r, 'b.svc.example.com', 'AAAA', 'tcp', 'dev_a')).rcode).toBe('NOERROR');
    const over = await ask(r, 'c.svc.example.com', 'A', 'udp', 'dev_a', true);
    expect(over.rcode).toBe('REFUSED');
    expect(extendedError(over)).toBe('clawpatrol: no virtual IP for c.svc.example.com: device dev_a already has 2 names under wildcard endpoints (the per-device cap)');
    // Without EDNS the refusal carries no OPT record (RFC 6891).
    const plain = await ask(r, 'd.svc.example.com', 'A', 'udp', 'dev_a');
    expect(plain.rcode).toBe('REFUSED');
    expect(plain.additionals).toEqual([]);
    // Names it already has, names declared exactly, and names another device asks for still resolve.
    expect((await ask(r, 'a.svc.example.com', 'A', 'udp', 'dev_a')).rcode).toBe('NOERROR');
    expect((await ask(r, 'api.example.com', 'A', 'udp', 'dev_a')).rcode).toBe('NOERROR');
    expect((await ask(r, 'pinned.svc.example.com', 'A', 'udp', 'dev_a')).rcode).toBe('NOERROR');
    expect((await ask(r, 'c.svc.example.com', 'A', 'udp', 'dev_b')).rcode).toBe('NOERROR');
    // c is allocated now (by dev_b): dev_a gets it without paying for it.
    expect((await ask(r, 'c.svc.example.com', 'A', 'udp', 'dev_a')).rcode).toBe('NOERROR');
    expect(vips.wildcardNamesOf('dev_a')).toBe(2);
    expect(vips.wildcardNamesOf('dev_b')).toBe(1);
    // The count survives a restart: it is read back from the stored records.
    vips = await opened();
    r = new DnsResolver({ vips, directory: names(mode), upstream: null, range4, range6 });
    expect(vips.wildcardNamesOf('dev_a')).toBe(2);
    expect((await ask(r, 'e.svc.example.com', 'A', 'udp', 'dev_a')).rcode).toBe('REFUSED');
  });

  it('reads nameservers from resolv.conf text', () => {
    expect(parseResolvConf('# x\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nsearch lan\nnameserver bogus\n')).toEqual(['10.0.0.53', 'fe80::1']);
  });
});
