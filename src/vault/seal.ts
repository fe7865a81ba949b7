/**
 * AES-256-GCM sealing of one vault value. Each value gets a fresh 96-bit
 * nonce; the owner (credential id) and slot are the additional authenticated
 * data, so a sealed value moved to another credential or slot fails to open.
 * Opening authenticates before anything is returned: a wrong key or a
 * flipped bit yields an error, never partial plaintext.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { VaultError, type VaultKey } from './key.js';

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

function aad(owner: string, slot: string): Buffer {
  return Buffer.from(`clawpatrol vault v1\0${owner}\0${slot}`, 'utf8');
}

export function sealValue(key: VaultKey, owner: string, slot: string, plaintext: string): { nonce: Buffer; sealed: Buffer } {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.bytes, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(owner, slot));
  const input = Buffer.from(plaintext, 'utf8');
  const sealed = Buffer.concat([cipher.update(input), cipher.final(), cipher.getAuthTag()]);
  input.fill(0);
  return { nonce, sealed };
}

export function openValue(
  key: VaultKey,
  row: { owner: string; slot: string; keyId: string; nonce: Buffer; sealed: Buffer },
): string {
  const where = `${row.owner} (slot ${row.slot})`;
  if (row.keyId !== key.id) {
    throw new VaultError(
      `the secret of ${where} was sealed with vault key ${row.keyId}, but the key in use (${key.source}) is ${key.id}; ` +
        `restore the original key file or CLAWPATROL_VAULT_KEY`,
    );
  }
  if (row.nonce.length !== NONCE_BYTES || row.sealed.length < TAG_BYTES) {
    throw new VaultError(`the secret of ${where} is corrupted (malformed entry)`);
  }
  const decipher = createDecipheriv('aes-256-gcm', key.bytes, row.nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad(row.owner, row.slot));
  decipher.setAuthTag(row.sealed.subarray(row.sealed.length - TAG_BYTES));
  // GCM's update() emits unauthenticated plaintext: keep it private until final() has checked the tag.
  const body = decipher.update(row.sealed.subarray(0, row.sealed.length - TAG_BYTES));
  try {
    decipher.final();
  } catch {
    body.fill(0);
    throw new VaultError(
      `the secret of ${where} cannot be decrypted: the vault is corrupted or the entry was tampered with`,
    );
  }
  const text = body.toString('utf8');
  body.fill(0);
  return text;
}
