/**
 * The vault key: 32 random bytes per install, kept outside the database so a
 * copy of `state.db` alone reveals nothing.
 *
 *   - `CLAWPATROL_VAULT_KEY`: the key as base64 (standard or URL-safe, padding
 *     optional) decoding to exactly 32 bytes. Wins over the key file.
 *   - `<state_dir>/vault.key`: the same base64 text plus a newline, mode 0600.
 *     Created on first use when no secret has been sealed yet.
 *
 * The key id (a MAC of a constant under the key) is stored beside the sealed
 * values so a wrong key is reported as such instead of as corruption.
 */
import { randomBytes, createHmac, hkdfSync } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { assertPrivateFile } from '../store/state-dir.js';

export const VAULT_KEY_FILE = 'vault.key';
export const VAULT_KEY_ENV = 'CLAWPATROL_VAULT_KEY';
export const KEY_BYTES = 32;

export class VaultError extends Error {
  override name = 'VaultError';
}

/** A request the vault cannot serve because of what was asked (unknown credential, wrong slot, bad value): a usage error. */
export class VaultUsageError extends VaultError {
  override name = 'VaultUsageError';
}

export interface VaultKey {
  /** Never logged, never serialised. */
  readonly bytes: Buffer;
  /** 16 hex characters identifying the key without revealing it. */
  readonly id: string;
  /** Where it came from, for messages: `env CLAWPATROL_VAULT_KEY` or the key file path. */
  readonly source: string;
}

export function keyId(bytes: Buffer): string {
  return createHmac('sha256', bytes).update('clawpatrol vault key id v1').digest('hex').slice(0, 16);
}

/** Decode the base64 text of a key; throws a VaultError that never echoes the text. */
export function decodeKeyText(text: string, source: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    throw new VaultError(`${source} is not base64 (expected 32 random bytes as base64, e.g. from: openssl rand -base64 32)`);
  }
  const bytes = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes.length !== KEY_BYTES) {
    throw new VaultError(`${source} decodes to ${bytes.length} bytes; the vault key must be exactly ${KEY_BYTES} bytes (openssl rand -base64 32)`);
  }
  return bytes;
}

export function encodeKeyText(bytes: Buffer): string {
  return bytes.toString('base64');
}

function makeKey(bytes: Buffer, source: string): VaultKey {
  return { bytes, id: keyId(bytes), source };
}

/** The key from the environment or the key file, or null when neither exists. */
export function loadVaultKey(stateDir: string, env: NodeJS.ProcessEnv = process.env): VaultKey | null {
  const fromEnv = env[VAULT_KEY_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    return makeKey(decodeKeyText(fromEnv, `environment variable ${VAULT_KEY_ENV}`), `environment variable ${VAULT_KEY_ENV}`);
  }
  const path = join(stateDir, VAULT_KEY_FILE);
  if (!existsSync(path)) return null;
  // Only a regular file: reading a FIFO put there blocked the gateway's start (and every CLI
  // command) forever, and a directory surfaced as a bare EISDIR.
  if (!statSync(path).isFile()) throw new VaultError(`key file ${path} is not a regular file; it must hold the vault key as base64`);
  try {
    assertPrivateFile(path);
  } catch (err) {
    throw new VaultError((err as Error).message);
  }
  return makeKey(decodeKeyText(readFileSync(path, 'utf8'), `key file ${path}`), `key file ${path}`);
}

/** Generate a key and write the key file exclusively (never overwrites an existing key). */
export function createVaultKey(stateDir: string): VaultKey {
  const path = join(stateDir, VAULT_KEY_FILE);
  const bytes = randomBytes(KEY_BYTES);
  try {
    writeFileSync(path, encodeKeyText(bytes) + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      // Another process created it first: use theirs.
      const existing = loadVaultKey(stateDir, {});
      if (existing) return existing;
    }
    throw new VaultError(`cannot create vault key file ${path}: ${(err as Error).message}`);
  }
  return makeKey(bytes, `key file ${path}`);
}

/** A 32-byte subkey for one purpose (audit head MAC, …), so the vault key itself is used only for sealing. */
export function deriveSubkey(key: VaultKey, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key.bytes, Buffer.from('clawpatrol'), Buffer.from(purpose), 32));
}
