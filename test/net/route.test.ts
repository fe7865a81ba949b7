import { describe, it, expect } from 'vitest';
import { routeConnection, type RouteInput } from '../../src/net/route.js';
import type { DirectoryEndpoint } from '../../src/net/types.js';
import { HostIndex, parseHostPattern } from '../../src/policy/hosts.js';

/** A directory over host patterns, profile → endpoints, like the gateway's. */
function directory(unknown: 'passthrough' | 'deny') {
  const endpoints: Record<string, { type: DirectoryEndpoint['type']; hosts: string[] }> = {
    'https.api': { type: 'https', hosts: ['api.example.com', '*.wild.example.com'] },
    'postgres.pg': { type: 'postgres', hosts: ['db.internal:5432', '10.9.9.9:5432'] },
    'clickhouse_native.ch': { type: 'clickhouse_native', hosts: ['ch.internal:9000'] },
  };
  const profiles: Record<string, string[]> = { dev: ['https.api', 'postgres.pg', 'clickhouse_native.ch'], narrow: ['https.api'] };
  return {
    endpointFor(host: string, port: number, profile: string): DirectoryEndpoint | null {
      const idx = new HostIndex<string>();
      for (const id of profiles[profile] ?? []) for (const h of endpoints[id]!.hosts) {
        const p = parseHostPattern(h);
        if (p.ok) idx.add(p.pattern, id);
      }
      const id = idx.lookup(host, port);
      return id ? { id, type: endpoints[id]!.type } : null;
    },
    unknownHost: () => unknown,
  };
}

const hello = (sni: string) => {
  const name = Buffer.from(sni);
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  const entry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
  const list = Buffer.concat([u16(entry.length), entry]);
  const ext = Buffer.concat([u16(0), u16(list.length), list]);
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32), Buffer.from([0]), u16(2), u16(0x1301), Buffer.from([1, 0]), u16(ext.length), ext]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs]);
};

function input(over: Partial<RouteInput>): RouteInput {
  return {
    dialedIp: '93.184.216.34',
    dialedPort: 443,
    profile: 'dev',
    bytes: Buffer.alloc(0),
    final: false,
    gatewayAddresses: new Set(['10.55.0.1', 'fd7c::1']),
    vip: { inRange: false },
    directory: directory('passthrough'),
    engines: new Set(['tls', 'http', 'postgres']),
    ...over,
  };
}

describe('routeConnection', () => {
  it('serves only DNS on the gateway tunnel address', () => {
    expect(routeConnection(input({ dialedIp: '10.55.0.1', dialedPort: 53 }))).toEqual({ kind: 'dns' });
    expect(routeConnection(input({ dialedIp: 'fd7c::1', dialedPort: 53 }))).toEqual({ kind: 'dns' });
    expect(routeConnection(input({ dialedIp: '10.55.0.1', dialedPort: 8080 }))).toMatchObject({ kind: 'refuse', style: 'reset' });
  });

  it('sends a VIP of a Postgres host to the postgres engine without waiting for bytes', () => {
    expect(routeConnection(input({ dialedIp: '10.78.0.3', dialedPort: 5432, vip: { inRange: true, name: 'db.internal' } }))).toEqual({
      kind: 'engine', engine: 'postgres', endpointId: 'postgres.pg', dialedHost: 'db.internal',
    });
  });

  it('waits for the first byte of a VIP of an HTTPS host, then picks TLS or plain HTTP', () => {
    const vip = { inRange: true, name: 'api.example.com' };
    expect(routeConnection(input({ dialedIp: '10.78.0.2', vip }))).toEqual({ kind: 'need-bytes' });
    expect(routeConnection(input({ dialedIp: '10.78.0.2', vip, bytes: hello('api.example.com') }))).toEqual({
      kind: 'engine', engine: 'tls', endpointId: 'https.api', dialedHost: 'api.example.com', sni: 'api.example.com',
    });
    expect(routeConnection(input({ dialedIp: '10.78.0.2', dialedPort: 80, vip, bytes: Buffer.from('GET / HTTP/1.1\r\n') }))).toMatchObject({
      kind: 'engine', engine: 'http', endpointId: 'https.api',
    });
  });

  it('refuses an unallocated VIP', () => {
    expect(routeConnection(input({ dialedIp: '10.78.0.99', vip: { inRange: true } }))).toMatchObject({ kind: 'refuse' });
  });

  it('treats a VIP whose name is outside the profile as an unknown host', () => {
    const vip = { inRange: true, name: 'db.internal' };
    expect(routeConnection(input({ profile: 'narrow', dialedPort: 5432, vip, final: true }))).toEqual({
      kind: 'relay', host: 'db.internal', port: 5432, dialedHost: 'db.internal',
    });
    expect(routeConnection(input({ profile: 'narrow', dialedPort: 5432, vip, final: true, directory: directory('deny') }))).toMatchObject({
      kind: 'refuse', reason: expect.stringContaining('profile "narrow"'),
    });
  });

  it('dispatches a real IP by SNI, including wildcard names', () => {
    expect(routeConnection(input({ bytes: hello('x.wild.example.com') }))).toEqual({
      kind: 'engine', engine: 'tls', endpointId: 'https.api', dialedHost: 'x.wild.example.com', sni: 'x.wild.example.com',
    });
  });

  it('dispatches plain HTTP by Host', () => {
    expect(routeConnection(input({ dialedPort: 80, bytes: Buffer.from('GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n') }))).toMatchObject({
      kind: 'engine', engine: 'http', endpointId: 'https.api', dialedHost: 'api.example.com',
    });
  });

  it('dispatches a declared IP:port once the peek is over', () => {
    const raw = input({ dialedIp: '10.9.9.9', dialedPort: 5432, bytes: Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]) });
    expect(routeConnection(raw)).toEqual({ kind: 'engine', engine: 'postgres', endpointId: 'postgres.pg' });
    expect(routeConnection(input({ dialedIp: '10.9.9.9', dialedPort: 5433, final: true }))).toMatchObject({ kind: 'relay' });
  });

  it('relays unknown hosts to what was dialed (never to the SNI) or refuses them in their protocol', () => {
    expect(routeConnection(input({ bytes: hello('evil.example.net') }))).toEqual({
      kind: 'relay', host: '93.184.216.34', port: 443, dialedHost: 'evil.example.net', sni: 'evil.example.net',
    });
    const deny = directory('deny');
    expect(routeConnection(input({ bytes: hello('evil.example.net'), directory: deny }))).toMatchObject({ kind: 'refuse', style: 'tls' });
    expect(routeConnection(input({ dialedPort: 80, bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), directory: deny }))).toMatchObject({
      kind: 'refuse', style: 'http',
    });
    expect(routeConnection(input({ dialedPort: 22, final: true, directory: deny }))).toMatchObject({ kind: 'refuse', style: 'reset' });
  });

  it('refuses when the endpoint has no engine running (fail closed)', () => {
    expect(routeConnection(input({ dialedIp: '10.78.0.4', dialedPort: 9000, vip: { inRange: true, name: 'ch.internal' } }))).toMatchObject({
      kind: 'refuse', reason: expect.stringContaining('no clickhouse engine'),
    });
  });

  it('an SNI naming a declared host does not make an undeclared IP:port relay', () => {
    // The agent dials some IP but names a declared host: inspected by the engine, not passed through.
    const r = routeConnection(input({ dialedIp: '203.0.113.5', bytes: hello('api.example.com'), directory: directory('passthrough') }));
    expect(r).toMatchObject({ kind: 'engine', engine: 'tls', endpointId: 'https.api' });
  });
});
