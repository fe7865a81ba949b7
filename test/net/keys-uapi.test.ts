import { describe, it, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { generateKeyPair, publicKeyOf, isWgKey, keyToHex, hexToKey } from '../../src/net/keys.js';
import { encodeSet, parseGet, parseSetReply, UapiError } from '../../src/net/uapi.js';

describe('WireGuard keys', () => {
  it('derives the same public key as wg pubkey', () => {
    const pair = generateKeyPair();
    expect(isWgKey(pair.privateKey)).toBe(true);
    const wg = execFileSync('wg', ['pubkey'], { input: pair.privateKey + '\n', encoding: 'utf8' }).trim();
    expect(pair.publicKey).toBe(wg);
  });
  it('reads keys made by wg genkey', () => {
    const priv = execFileSync('wg', ['genkey'], { encoding: 'utf8' }).trim();
    const pub = execFileSync('wg', ['pubkey'], { input: priv + '\n', encoding: 'utf8' }).trim();
    expect(publicKeyOf(priv)).toBe(pub);
    expect(hexToKey(keyToHex(pub))).toBe(pub);
  });
  it('rejects malformed keys', () => {
    expect(isWgKey('abc')).toBe(false);
    expect(isWgKey('A'.repeat(43) + '=')).toBe(true);
    expect(() => keyToHex('not a key\nprivate_key=00')).toThrow(/invalid/);
  });
});

describe('UAPI text protocol', () => {
  const pair = generateKeyPair();
  it('encodes a set request from typed values only', () => {
    const text = encodeSet({
      privateKey: pair.privateKey,
      listenPort: 51820,
      replacePeers: true,
      peers: [
        { publicKey: pair.publicKey, replaceAllowedIps: true, allowedIps: ['10.55.0.2/32', 'fd7c::2/128'], endpoint: '192.168.1.1:51820', persistentKeepalive: 25 },
        { publicKey: pair.publicKey, remove: true },
      ],
    });
    expect(text).toBe(
      `set=1\nprivate_key=${keyToHex(pair.privateKey)}\nlisten_port=51820\nreplace_peers=true\n` +
        `public_key=${keyToHex(pair.publicKey)}\nendpoint=192.168.1.1:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\n` +
        `allowed_ip=10.55.0.2/32\nallowed_ip=fd7c::2/128\npublic_key=${keyToHex(pair.publicKey)}\nremove=true\n\n`,
    );
  });
  it('refuses values that would inject lines', () => {
    expect(() => encodeSet({ peers: [{ publicKey: pair.publicKey, endpoint: '1.2.3.4:5\nremove=true' }] })).toThrow(UapiError);
    expect(() => encodeSet({ peers: [{ publicKey: pair.publicKey, allowedIps: ['10.0.0.1/32\nx=1'] }] })).toThrow();
    expect(() => encodeSet({ listenPort: 70000 })).toThrow(UapiError);
  });
  it('parses get replies', () => {
    const hex = keyToHex(pair.publicKey);
    const s = parseGet(
      `private_key=${'ab'.repeat(32)}\nlisten_port=51820\npublic_key=${hex}\nendpoint=10.0.0.2:40000\nlast_handshake_time_sec=1700000000\n` +
        `last_handshake_time_nsec=500000000\ntx_bytes=10\nrx_bytes=20\nallowed_ip=10.55.0.2/32\npublic_key=${hex}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nerrno=0\n\n`,
    );
    expect(s.listenPort).toBe(51820);
    expect(s.peers).toHaveLength(2);
    expect(s.peers[0]).toEqual({ publicKey: pair.publicKey, endpoint: '10.0.0.2:40000', lastHandshakeMs: 1700000000500, rxBytes: 20, txBytes: 10, allowedIps: ['10.55.0.2/32'] });
    expect(s.peers[1]!.lastHandshakeMs).toBeNull();
    expect(() => parseGet('errno=22\n\n')).toThrow(/errno=22/);
    expect(() => parseSetReply('errno=1\n\n')).toThrow(/refused/);
    expect(() => parseSetReply('errno=0\n\n')).not.toThrow();
  });
});
