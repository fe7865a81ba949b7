/**
 * Enrolment credentials, kept in the state store by hash only:
 *
 * - one-time join tokens (`clawpatrol devices add --profile p`): single use
 *   (`take` is atomic, also across gateways sharing a store), expiring;
 * - device codes (RFC 8628 style): the joining machine gets a secret device
 *   code to poll with and a short user code that both sides display; an
 *   admin approves the user code and picks the profile.
 */
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { KvStore } from '../store/types.js';

export const TOKEN_NAMESPACE = 'enrol.tokens';
export const DEVICE_CODE_NAMESPACE = 'enrol.device_codes';

export const DEFAULT_TOKEN_TTL_SEC = 3600;
export const DEVICE_CODE_TTL_SEC = 900;
export const MAX_PENDING_DEVICE_CODES = 64;
/** RFC 8628 §6.1: consonants only, so codes spell no words and survive being read aloud. */
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

export class EnrolError extends Error {
  override name = 'EnrolError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface TokenRecord {
  profile: string;
  name?: string;
  createdAt: string;
  expiresAt: string;
}

export interface DeviceCodeRecord {
  userCode: string;
  publicKey: string;
  name: string;
  status: 'pending' | 'approved' | 'denied';
  createdAt: string;
  expiresAt: string;
  deviceId?: string;
  profile?: string;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function hashesEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `wdjb mjht`, `WDJB-MJHT` → `WDJBMJHT`. */
export function normaliseUserCode(code: string): string {
  return code.toUpperCase().replace(/[^A-Z]/g, '');
}

export function formatUserCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

export type PollResult = { status: 'pending' | 'denied' | 'expired' | 'unknown' } | { status: 'approved'; record: DeviceCodeRecord };

export class Enrolment {
  constructor(
    private readonly kv: KvStore,
    private readonly now: () => number = Date.now,
  ) {}

  async mintToken(profile: string, ttlSec = DEFAULT_TOKEN_TTL_SEC, name?: string): Promise<{ token: string; expiresAt: string }> {
    if (!Number.isFinite(ttlSec) || ttlSec <= 0 || ttlSec > 30 * 86400) throw new EnrolError('token lifetime must be between 1 s and 30 days', 400);
    const token = `cpj_${randomBytes(24).toString('base64url')}`;
    const record: TokenRecord = {
      profile,
      ...(name ? { name } : {}),
      createdAt: new Date(this.now()).toISOString(),
      expiresAt: new Date(this.now() + ttlSec * 1000).toISOString(),
    };
    await this.kv.put(TOKEN_NAMESPACE, sha256Hex(token), record);
    return { token, expiresAt: record.expiresAt };
  }

  /** Consume a join token: it works once, and only before it expires. */
  async redeemToken(token: string): Promise<TokenRecord> {
    const record = await this.kv.take<TokenRecord>(TOKEN_NAMESPACE, sha256Hex(token));
    if (!record) throw new EnrolError('unknown or already used join token', 401);
    if (Date.parse(record.expiresAt) <= this.now()) throw new EnrolError('this join token has expired; mint a new one with clawpatrol devices add', 401);
    return record;
  }

  /** Invalidate a join token that was exposed (sent in clear text); true when it existed. */
  async voidToken(token: string): Promise<boolean> {
    return (await this.kv.take(TOKEN_NAMESPACE, sha256Hex(token))) !== undefined;
  }

  async startDeviceCode(publicKey: string, name: string): Promise<{ deviceCode: string; userCode: string; expiresAt: string }> {
    const live = await this.deviceCodes();
    if (live.some((d) => d.record.publicKey === publicKey && d.record.status === 'pending')) {
      throw new EnrolError('an enrolment for this key is already waiting for approval', 409);
    }
    if (live.filter((d) => d.record.status === 'pending').length >= MAX_PENDING_DEVICE_CODES) {
      throw new EnrolError('too many enrolments are waiting for approval; try again later', 429);
    }
    let userCode = '';
    do {
      userCode = Array.from({ length: 8 }, () => USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)]).join('');
    } while (live.some((d) => d.record.userCode === userCode));
    const deviceCode = `cpd_${randomBytes(32).toString('base64url')}`;
    const record: DeviceCodeRecord = {
      userCode,
      publicKey,
      name,
      status: 'pending',
      createdAt: new Date(this.now()).toISOString(),
      expiresAt: new Date(this.now() + DEVICE_CODE_TTL_SEC * 1000).toISOString(),
    };
    await this.kv.put(DEVICE_CODE_NAMESPACE, sha256Hex(deviceCode), record);
    return { deviceCode, userCode: formatUserCode(userCode), expiresAt: record.expiresAt };
  }

  /** Unexpired device codes (expired ones are deleted on the way). */
  async deviceCodes(): Promise<Array<{ key: string; record: DeviceCodeRecord }>> {
    const out: Array<{ key: string; record: DeviceCodeRecord }> = [];
    for (const { key, value } of await this.kv.list<DeviceCodeRecord>(DEVICE_CODE_NAMESPACE)) {
      // Approved codes stay until polled even after expiry: the device is already enrolled.
      if (Date.parse(value.expiresAt) <= this.now() && value.status !== 'approved') {
        await this.kv.delete(DEVICE_CODE_NAMESPACE, key);
        continue;
      }
      out.push({ key, record: value });
    }
    return out;
  }

  async pending(): Promise<DeviceCodeRecord[]> {
    return (await this.deviceCodes()).filter((d) => d.record.status === 'pending').map((d) => d.record);
  }

  /** The pending enrolment with this user code (for approval), or an error naming why not. */
  async pendingByUserCode(userCode: string): Promise<{ key: string; record: DeviceCodeRecord }> {
    const code = normaliseUserCode(userCode);
    const hit = (await this.deviceCodes()).find((d) => d.record.userCode === code);
    if (!hit) throw new EnrolError(`no pending enrolment with code ${userCode} (expired, or never started)`, 404);
    if (hit.record.status !== 'pending') throw new EnrolError(`enrolment ${formatUserCode(code)} was already ${hit.record.status}`, 409);
    return hit;
  }

  async markApproved(key: string, record: DeviceCodeRecord, deviceId: string, profile: string): Promise<void> {
    await this.kv.put(DEVICE_CODE_NAMESPACE, key, { ...record, status: 'approved', deviceId, profile });
  }

  async markDenied(key: string, record: DeviceCodeRecord): Promise<void> {
    await this.kv.put(DEVICE_CODE_NAMESPACE, key, { ...record, status: 'denied' });
  }

  /**
   * Poll with the secret device code. An approved record is taken (deleted)
   * by the one poll that receives the device's credentials.
   */
  async poll(deviceCode: string): Promise<PollResult> {
    const key = sha256Hex(deviceCode);
    const record = await this.kv.get<DeviceCodeRecord>(DEVICE_CODE_NAMESPACE, key);
    if (!record) return { status: 'unknown' };
    if (record.status === 'approved') {
      const taken = await this.kv.take<DeviceCodeRecord>(DEVICE_CODE_NAMESPACE, key);
      return taken ? { status: 'approved', record: taken } : { status: 'unknown' };
    }
    if (Date.parse(record.expiresAt) <= this.now()) {
      await this.kv.delete(DEVICE_CODE_NAMESPACE, key);
      return { status: 'expired' };
    }
    if (record.status === 'denied') {
      await this.kv.delete(DEVICE_CODE_NAMESPACE, key);
      return { status: 'denied' };
    }
    return { status: 'pending' };
  }
}
