/**
 * The control-API routes of the WireGuard transport, mounted by the
 * gateway's control server:
 *
 *   unauthenticated (each checks its own credential); all but the CA only over TLS
 *     GET    /api/enrol/ca                 the gateway CA (the client pins its fingerprint; plain HTTP allowed)
 *     POST   /api/enrol/token              {token, publicKey, name}         → JoinResult
 *     POST   /api/enrol/device             {publicKey, name}                → {deviceCode, userCode, …}
 *     POST   /api/enrol/device/poll        {deviceCode}                     → {status[, join]}
 *     GET    /api/enrol/self               device token                     → DeviceStatus
 *     DELETE /api/enrol/self               device token                     → the device leaves
 *   admin (the gateway's admin token)
 *     GET    /api/devices                                                   → {devices, pending}
 *     POST   /api/devices/tokens           {profile, ttlSec?, name?}        → {token, expiresAt}
 *     POST   /api/devices/approve          {userCode, profile, name?}       → {device}
 *     POST   /api/devices/deny             {userCode}
 *     POST   /api/devices/<id>/revoke                                       → {revoked, connectionsClosed}
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { ControlRoute } from '../gateway/contracts.js';
import { sendJson } from '../gateway/control-server.js';
import { EnrolError, type Enrolment, formatUserCode, sha256Hex } from './enrolment.js';
import { isWgKey } from './keys.js';
import { PeerError, type PeerRecord, type PeerRegistry } from './peers.js';
import type { Directory, RunPlaceholder } from './types.js';

export interface DeviceInfo {
  id: string;
  name: string;
  profile: string;
  address4: string;
  address6: string | null;
  publicKey: string;
  enrolledBy: PeerRecord['enrolledBy'];
  createdAt: string;
  /** ISO time of the last WireGuard handshake the gateway saw, or null. */
  lastHandshake: string | null;
  /** Where the device's packets come from (`ip:port`), when it has talked. */
  endpoint: string | null;
  rxBytes: number;
  txBytes: number;
  /** Tunnel connections open now. */
  connections: number;
}

export interface JoinResult {
  device: DeviceInfo;
  /** Secret the device presents for `status` / `leave` (`Authorization: Bearer`); stored only hashed here. */
  deviceToken: string;
  wireguard: {
    gatewayPublicKey: string;
    /** `host:port` from `wireguard.endpoint`, or null: the client uses the gateway URL's host and `listenPort`. */
    endpoint: string | null;
    listenPort: number;
    address4: string;
    address6: string | null;
    /** The tunnel DNS servers (the gateway's tunnel addresses). */
    dns: string[];
    mtu: number;
    persistentKeepalive: number;
  };
  caFingerprint: string;
  placeholders: RunPlaceholder[];
}

export interface DeviceStatus {
  device: DeviceInfo;
  caFingerprint: string;
  placeholders: RunPlaceholder[];
}

export interface EnrolRouteDeps {
  enrolment: Enrolment;
  peers: PeerRegistry;
  directory: Directory;
  ca: { certPem: string; fingerprintSha256: string };
  addPeer(input: { name: string; profile: string; publicKey: string; tokenHash: string | null; enrolledBy: PeerRecord['enrolledBy'] }): Promise<PeerRecord>;
  removePeer(id: string, kind: 'revoked' | 'left'): Promise<{ revoked: boolean; connectionsClosed: number }>;
  joinResult(peer: PeerRecord, deviceToken: string): Promise<JoinResult>;
  deviceInfo(peer: PeerRecord): Promise<DeviceInfo>;
  devices(): Promise<DeviceInfo[]>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._ -]{0,62}$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function jsonBody(ctx: { body: () => Promise<Buffer> }): Promise<Record<string, unknown>> {
  const raw = (await ctx.body()).toString('utf8');
  let parsed: unknown;
  try {
    parsed = raw ? JSON.parse(raw) : {};
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new HttpError(400, 'request body must be a JSON object');
  return parsed as Record<string, unknown>;
}

function str(body: Record<string, unknown>, key: string, required: true): string;
function str(body: Record<string, unknown>, key: string, required?: false): string | undefined;
function str(body: Record<string, unknown>, key: string, required = false): string | undefined {
  const v = body[key];
  if (v === undefined || v === null || v === '') {
    if (required) throw new HttpError(400, `missing "${key}"`);
    return undefined;
  }
  if (typeof v !== 'string' || v.length > 512) throw new HttpError(400, `"${key}" must be a string`);
  return v;
}

function deviceName(body: Record<string, unknown>, fallback: string): string {
  const name = str(body, 'name') ?? fallback;
  if (!NAME.test(name)) throw new HttpError(400, 'device name: 1–63 letters, digits, ".", "_", "-" or spaces');
  return name;
}

function publicKey(body: Record<string, unknown>): string {
  const key = str(body, 'publicKey', true);
  if (!isWgKey(key)) throw new HttpError(400, '"publicKey" must be a WireGuard public key (base64 of 32 bytes)');
  return key;
}

/** The body's `profile`, which must be one of the policy's. */
function requiredProfile(deps: EnrolRouteDeps, body: Record<string, unknown>): string {
  const profile = str(body, 'profile', true);
  const known = deps.directory.profiles();
  if (!known.includes(profile)) {
    throw new HttpError(400, `no profile "${profile}" in the policy${known.length ? ` (profiles: ${known.join(', ')})` : ''}`);
  }
  return profile;
}

/** The body's `publicKey`, which must not be enrolled yet. */
function unenrolledKey(deps: EnrolRouteDeps, body: Record<string, unknown>): string {
  const key = publicKey(body);
  if (deps.peers.byPublicKey(key)) throw new HttpError(409, 'this public key is already enrolled');
  return key;
}

/**
 * Who may call a handler: anyone (`public`), anyone over TLS because the
 * request or answer carries a secret — join token, device code, device
 * token, tunnel parameters (`secret`), or the gateway admin (`admin`).
 */
type Access = 'public' | 'secret' | 'admin';
type Run = (req: IncomingMessage, m: RegExpExecArray, ctx: { body: () => Promise<Buffer> }) => Promise<[number, unknown]>;

interface Handler {
  method: string;
  path: RegExp;
  access: Access;
  run: Run;
}

function handler(method: string, path: RegExp, access: Access, run: Run): Handler {
  return { method, path, access, run };
}

/** A handler of a JSON object body. */
function json(fn: (body: Record<string, unknown>, req: IncomingMessage) => Promise<[number, unknown]>): Run {
  return async (req, _m, ctx) => fn(await jsonBody(ctx), req);
}

function bearer(req: IncomingMessage): string | null {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization?.trim() ?? '');
  return m?.[1] ?? null;
}

function newDeviceToken(): { token: string; hash: string } {
  const token = `cpt_${randomBytes(32).toString('base64url')}`;
  return { token, hash: sha256Hex(token) };
}

/**
 * A secret-carrying request that came over plain HTTP. A join token that was
 * sent in clear text is void from now on: whoever watched the wire must not
 * be able to enrol with it over TLS.
 */
async function refusePlainHttp(deps: EnrolRouteDeps, path: string, ctx: { body: () => Promise<Buffer> }): Promise<string> {
  const refusal = `${path} is only served over TLS (the same port speaks it); clawpatrol join pins the gateway CA and never sends secrets in clear text`;
  if (path !== '/api/enrol/token') return refusal;
  let token: string | undefined;
  try {
    token = str(await jsonBody(ctx), 'token');
  } catch {
    return refusal;
  }
  if (token && (await deps.enrolment.voidToken(token))) {
    return `${refusal}. The join token was sent in clear text and is now void: mint a new one with clawpatrol devices add`;
  }
  return refusal;
}

export function createEnrolRoutes(deps: EnrolRouteDeps): ControlRoute {
  // Lookups that miss ask the store once more: the device may have been enrolled (or its token
  // issued) through another gateway sharing the store, moments ago.
  const selfPeer = async (req: IncomingMessage): Promise<PeerRecord> => {
    const token = bearer(req);
    const peer = token ? await deps.peers.find((r) => r.byTokenHash(sha256Hex(token))) : undefined;
    if (!peer) throw new HttpError(401, 'unknown device token: this device is not enrolled (revoked, or it left)');
    return peer;
  };

  const handlers: Handler[] = [
    handler('GET', /^\/api\/enrol\/ca$/, 'public', async () => [200, { caPem: deps.ca.certPem, fingerprint: deps.ca.fingerprintSha256 }]),
    handler('POST', /^\/api\/enrol\/token$/, 'secret', json(async (body) => {
      const token = str(body, 'token', true);
      const key = unenrolledKey(deps, body);
      const name = deviceName(body, 'device');
      const record = await deps.enrolment.redeemToken(token);
      if (!deps.directory.profiles().includes(record.profile)) {
        throw new HttpError(409, `the token's profile "${record.profile}" is no longer in the policy; mint a new token`);
      }
      const device = newDeviceToken();
      const peer = await deps.addPeer({ name: record.name ?? name, profile: record.profile, publicKey: key, tokenHash: device.hash, enrolledBy: 'token' });
      return [200, await deps.joinResult(peer, device.token)];
    })),
    handler('POST', /^\/api\/enrol\/device$/, 'secret', json(async (body) => {
      const key = unenrolledKey(deps, body);
      const started = await deps.enrolment.startDeviceCode(key, deviceName(body, 'device'));
      return [200, { ...started, interval: 2 }];
    })),
    handler('POST', /^\/api\/enrol\/device\/poll$/, 'secret', json(async (body) => {
      const polled = await deps.enrolment.poll(str(body, 'deviceCode', true));
      if (polled.status === 'pending') return [200, { status: 'pending' }];
      if (polled.status === 'unknown') return [404, { status: 'unknown', error: 'unknown device code' }];
      if (polled.status === 'expired') return [410, { status: 'expired', error: 'the enrolment expired before it was approved' }];
      if (polled.status === 'denied') return [403, { status: 'denied', error: 'the enrolment was denied' }];
      if (!('record' in polled)) return [404, { status: 'unknown', error: 'unknown device code' }];
      const deviceId = polled.record.deviceId ?? '';
      const peer = await deps.peers.findById(deviceId);
      if (!peer) return [410, { status: 'expired', error: 'the approved device was revoked before it finished joining' }];
      const device = newDeviceToken();
      const updated = await deps.peers.update(peer.id, { tokenHash: device.hash });
      return [200, { status: 'approved', join: await deps.joinResult(updated, device.token) }];
    })),
    handler('GET', /^\/api\/enrol\/self$/, 'secret', async (req) => {
      const peer = await selfPeer(req);
      const status: DeviceStatus = {
        device: await deps.deviceInfo(peer),
        caFingerprint: deps.ca.fingerprintSha256,
        placeholders: deps.directory.placeholdersFor(peer.profile),
      };
      return [200, status];
    }),
    handler('DELETE', /^\/api\/enrol\/self$/, 'secret', async (req) => {
      const peer = await selfPeer(req);
      const r = await deps.removePeer(peer.id, 'left');
      return [200, { left: r.revoked, id: peer.id }];
    }),
    handler('GET', /^\/api\/devices$/, 'admin', async () => {
      const pending = (await deps.enrolment.pending()).map((p) => ({
        userCode: formatUserCode(p.userCode),
        name: p.name,
        publicKey: p.publicKey,
        createdAt: p.createdAt,
        expiresAt: p.expiresAt,
      }));
      return [200, { devices: await deps.devices(), pending }];
    }),
    handler('POST', /^\/api\/devices\/tokens$/, 'admin', json(async (body) => {
      const profile = requiredProfile(deps, body);
      const ttl = body.ttlSec === undefined ? undefined : Number(body.ttlSec);
      const name = body.name === undefined ? undefined : deviceName(body, '');
      const minted = await deps.enrolment.mintToken(profile, ttl, name);
      return [200, { ...minted, profile, caFingerprint: deps.ca.fingerprintSha256 }];
    })),
    handler('POST', /^\/api\/devices\/approve$/, 'admin', json(async (body) => {
      const profile = requiredProfile(deps, body);
      const { key, record } = await deps.enrolment.pendingByUserCode(str(body, 'userCode', true));
      if (deps.peers.byPublicKey(record.publicKey)) throw new HttpError(409, 'this public key is already enrolled');
      const name = body.name === undefined ? record.name : deviceName(body, record.name);
      const peer = await deps.addPeer({ name, profile, publicKey: record.publicKey, tokenHash: null, enrolledBy: 'device-code' });
      await deps.enrolment.markApproved(key, record, peer.id, profile);
      return [200, { device: await deps.deviceInfo(peer) }];
    })),
    handler('POST', /^\/api\/devices\/deny$/, 'admin', json(async (body) => {
      const { key, record } = await deps.enrolment.pendingByUserCode(str(body, 'userCode', true));
      await deps.enrolment.markDenied(key, record);
      return [200, { denied: formatUserCode(record.userCode) }];
    })),
    handler('POST', /^\/api\/devices\/([A-Za-z0-9_]{1,40})\/revoke$/, 'admin', async (_req, m) => {
      const id = m[1]!;
      if (!(await deps.peers.findById(id))) throw new HttpError(404, `no device ${id}`);
      return [200, await deps.removePeer(id, 'revoked')];
    }),
  ];

  return async (req: IncomingMessage, res: ServerResponse, ctx) => {
    const path = ctx.url.pathname;
    if (!path.startsWith('/api/enrol/') && path !== '/api/devices' && !path.startsWith('/api/devices/')) return false;
    const matching = handlers.filter((h) => h.path.test(path));
    if (matching.length === 0) return false;
    const h = matching.find((x) => x.method === req.method);
    if (!h) {
      sendJson(res, 405, { error: `${req.method} is not allowed on ${path}` });
      return true;
    }
    if (h.access === 'secret' && !ctx.secure) {
      sendJson(res, 403, { error: await refusePlainHttp(deps, path, ctx) });
      return true;
    }
    if (h.access === 'admin' && !ctx.admin) {
      sendJson(res, 401, { error: 'this endpoint needs the gateway admin token (Authorization: Bearer <state_dir>/admin.token)' });
      return true;
    }
    try {
      const [status, body] = await h.run(req, h.path.exec(path)!, ctx);
      sendJson(res, status, body);
    } catch (err) {
      if (err instanceof HttpError || err instanceof EnrolError || err instanceof PeerError) {
        sendJson(res, err.status, { error: err.message });
        return true;
      }
      throw err;
    }
    return true;
  };
}
