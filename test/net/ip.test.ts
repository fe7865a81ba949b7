import { describe, it, expect } from 'vitest';
import { addressAt, canonicalIp, cidrContains, offsetOf, parseCidr, ipToBigint, bigintToIp } from '../../src/net/ip.js';
import { destinationGuard } from '../../src/net/destinations.js';

describe('ip arithmetic', () => {
  it('parses CIDRs and normalises the network address', () => {
    expect(parseCidr('10.55.0.7/24').text).toBe('10.55.0.0/24');
    expect(parseCidr('fd78::5/64').text).toBe('fd78::/64');
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/prefix/);
    expect(() => parseCidr('nonsense/8')).toThrow(/not an IP/);
  });

  it('allocates host addresses at offsets and finds them again', () => {
    const c = parseCidr('10.78.0.0/16');
    expect(addressAt(c, 1)).toBe('10.78.0.1');
    expect(addressAt(c, 256)).toBe('10.78.1.0');
    expect(offsetOf(c, '10.78.1.0')).toBe(256n);
    expect(offsetOf(c, '10.79.0.0')).toBeNull();
    expect(() => addressAt(c, 65536)).toThrow();
    const v6 = parseCidr('fd78::/64');
    expect(addressAt(v6, 5)).toBe('fd78::5');
    expect(offsetOf(v6, 'FD78:0:0:0::5')).toBe(5n);
    expect(offsetOf(v6, '10.78.0.5')).toBeNull();
  });

  it('canonicalises mapped and long-form addresses', () => {
    expect(canonicalIp('::ffff:10.55.0.2')).toBe('10.55.0.2');
    expect(canonicalIp('2001:0db8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
    expect(canonicalIp('fd78:0:0:1:0:0:0:0')).toBe('fd78:0:0:1::');
    expect(bigintToIp(ipToBigint('::ffff:1.2.3.4'), 6)).toBe('::ffff:102:304');
    expect(cidrContains(parseCidr('127.0.0.0/8'), '::ffff:127.0.0.1')).toBe(true);
  });
});

describe('relay destination guard', () => {
  const guard = destinationGuard([parseCidr('10.55.0.0/24'), parseCidr('10.78.0.0/16')], () => new Set(['192.168.1.10', 'fe80::1']));
  it.each([
    ['127.0.0.1', /loopback/],
    ['::ffff:127.0.0.1', /loopback/],
    ['::1', /loopback/],
    ['169.254.169.254', /link-local/],
    ['fd00:ec2::254', /metadata/],
    ['10.55.0.3', /own range/],
    ['10.78.0.9', /own range/],
    ['192.168.1.10', /gateway host itself/],
    ['224.0.0.1', /multicast/],
    ['0.0.0.0', /unspecified/],
  ])('refuses %s', (addr, why) => {
    expect(guard.refusal(addr)).toMatch(why);
  });
  it('lets ordinary destinations through', () => {
    expect(guard.refusal('93.184.216.34')).toBeNull();
    expect(guard.refusal('10.0.0.5')).toBeNull();
    expect(guard.refusal('2606:4700::1111')).toBeNull();
  });
});
