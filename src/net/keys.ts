/**
 * WireGuard keys: Curve25519 key pairs as WireGuard writes them (32 raw
 * bytes, base64), and the hex form the UAPI socket wants. Generated with
 * node:crypto so no key ever passes through argv or a child's stdin.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';

export interface WgKeyPair {
  /** base64 of 32 bytes. */
  privateKey: string;
  publicKey: string;
}

const KEY_BYTES = 32;

export function generateKeyPair(): WgKeyPair {
  const { privateKey } = generateKeyPairSync('x25519');
  const jwk = privateKey.export({ format: 'jwk' });
  if (!jwk.d) throw new Error('x25519 key export returned no private part');
  const priv = Buffer.from(jwk.d, 'base64url').toString('base64');
  return { privateKey: priv, publicKey: publicKeyOf(priv) };
}

export function publicKeyOf(privateKeyB64: string): string {
  const raw = decodeKey(privateKeyB64, 'private key');
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: raw.toString('base64url'), x: '' }, format: 'jwk' });
  const jwk = createPublicKey(key).export({ format: 'jwk' });
  if (!jwk.x) throw new Error('x25519 public key export failed');
  return Buffer.from(jwk.x, 'base64url').toString('base64');
}

/** True when `text` is the base64 of exactly 32 bytes (a WireGuard key). */
export function isWgKey(text: unknown): text is string {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(text)) return false;
  return Buffer.from(text, 'base64').length === KEY_BYTES;
}

export function keyToHex(b64: string): string {
  return decodeKey(b64, 'key').toString('hex');
}

export function hexToKey(hex: string): string {
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new Error('not a 32-byte hex key');
  return Buffer.from(hex, 'hex').toString('base64');
}

function decodeKey(b64: string, what: string): Buffer {
  if (!isWgKey(b64)) throw new Error(`invalid WireGuard ${what} (want base64 of 32 bytes)`);
  return Buffer.from(b64, 'base64');
}
