/**
 * `clawpatrol join <gateway-url>`: enrol this machine.
 *
 *   1. fetch the gateway CA (the only request over an unauthenticated
 *      channel), show its fingerprint, pin it (`--ca-fingerprint`
 *      non-interactively, else the operator confirms on a terminal); from
 *      here on every request goes over TLS verified against that CA alone,
 *      so the join token and the tunnel parameters never travel in clear;
 *   2. generate the device's WireGuard key pair (the private key never
 *      leaves this machine);
 *   3. redeem a one-time token, or run the device-code flow (a code shown
 *      here and approved on the gateway);
 *   4. trust the CA system-wide (unless `--no-trust`), write the 0600
 *      configuration.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair } from '../keys.js';
import type { JoinResult } from '../enrol-routes.js';
import { GatewayApi, GatewayApiError, GatewayTlsError, fetchGatewayCa } from './gateway-api.js';
import { normaliseFingerprint, pinnableCa, trustSystemWide } from './ca-trust.js';
import { defaultConfigPath, saveClientConfig, type ClientConfig } from './config.js';

export interface JoinOptions {
  gatewayUrl: string;
  token?: string;
  name?: string;
  caFingerprint?: string;
  trust: boolean;
  configPath?: string;
  force?: boolean;
  /** Ask the human; absent when there is no terminal. */
  confirm?: (question: string) => Promise<boolean>;
  out: (line: string) => void;
  /** Device-code polling interval override (tests). */
  pollIntervalMs?: number;
}

export class JoinError extends Error {
  override name = 'JoinError';
}

/** Where the tunnel's UDP goes: `wireguard.endpoint`, else the gateway URL's host at `listen_port`. */
export function tunnelEndpoint(gatewayUrl: string, join: JoinResult): string {
  if (join.wireguard.endpoint) return join.wireguard.endpoint;
  const host = new URL(gatewayUrl).hostname; // `[::1]` keeps its brackets
  return `${host}:${join.wireguard.listenPort}`;
}

function sanitizedName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9._ -]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 63);
  return cleaned || 'device';
}

async function deviceCodeFlow(api: GatewayApi, publicKey: string, name: string, opts: JoinOptions): Promise<JoinResult> {
  const started = await api.startDeviceCode(publicKey, name);
  opts.out(`Enrolment code: ${started.userCode}`);
  opts.out(`Approve it on the gateway host:  clawpatrol devices approve ${started.userCode} --profile <profile>`);
  opts.out(`Waiting for approval (until ${new Date(started.expiresAt).toLocaleTimeString()})…`);
  const interval = opts.pollIntervalMs ?? Math.max(1, started.interval) * 1000;
  for (;;) {
    await sleep(interval);
    let polled;
    try {
      polled = await api.pollDeviceCode(started.deviceCode);
    } catch (err) {
      // A gateway restart while we wait is not fatal: keep polling until the code expires.
      // A certificate that fails the pinned CA is not a restart: stop at once.
      const unreachable = err instanceof GatewayApiError && err.status === 0 && !(err instanceof GatewayTlsError);
      if (unreachable && Date.parse(started.expiresAt) > Date.now()) continue;
      throw err;
    }
    if (polled.status === 'pending') continue;
    if (polled.status === 'approved' && polled.join) return polled.join;
    throw new JoinError(`enrolment ${started.userCode} ${polled.status}${polled.error ? `: ${polled.error}` : ''}`);
  }
}

export async function joinGateway(opts: JoinOptions): Promise<{ config: ClientConfig; path: string }> {
  const path = opts.configPath ?? defaultConfigPath();
  if (existsSync(path) && !opts.force) {
    throw new JoinError(`this machine already joined a gateway (${path}); run clawpatrol leave first, or pass --force`);
  }
  if (opts.trust && process.getuid?.() !== 0) {
    throw new JoinError('trusting the gateway CA system-wide needs root: sudo clawpatrol join …, or --no-trust to skip it');
  }
  let pinned: string | null = null;
  if (opts.caFingerprint !== undefined) {
    pinned = normaliseFingerprint(opts.caFingerprint);
    if (!pinned) throw new JoinError('--ca-fingerprint must be a SHA-256 fingerprint (64 hex digits, colons optional)');
  }

  const served = await fetchGatewayCa(opts.gatewayUrl);
  let ca: { pem: string; fingerprint: string };
  try {
    ca = pinnableCa(served.caPem);
  } catch (err) {
    throw new JoinError(`${err instanceof Error ? err.message : String(err)}; refusing to join`);
  }
  const fingerprint = ca.fingerprint;
  if (normaliseFingerprint(served.fingerprint) !== fingerprint) {
    throw new JoinError(`the gateway's CA does not match the fingerprint it announces (${served.fingerprint}); refusing to join`);
  }
  opts.out(`Gateway CA fingerprint (SHA-256): ${fingerprint}`);
  if (pinned) {
    if (pinned !== fingerprint) {
      throw new JoinError(`CA fingerprint mismatch: expected ${pinned}, the gateway at ${opts.gatewayUrl} presents ${fingerprint}. Something is intercepting, or this is the wrong gateway.`);
    }
  } else if (opts.confirm) {
    const ok = await opts.confirm('Does this match the fingerprint shown on the gateway (clawpatrol devices add / the gateway log)? [y/N] ');
    if (!ok) throw new JoinError('fingerprint not confirmed; nothing was changed');
  } else {
    throw new JoinError('no terminal to confirm the CA fingerprint: pass --ca-fingerprint <sha256> to pin it');
  }

  // Nothing secret has been sent yet; everything that follows is pinned TLS.
  const api = new GatewayApi(opts.gatewayUrl, ca.pem);
  const keys = generateKeyPair();
  const name = sanitizedName(opts.name ?? hostname());
  const join = opts.token ? await api.joinWithToken(opts.token, keys.publicKey, name) : await deviceCodeFlow(api, keys.publicKey, name, opts);
  if (normaliseFingerprint(join.caFingerprint) !== fingerprint) {
    throw new JoinError('the enrolment answer names a different CA than the one pinned; refusing to use it');
  }

  let trustedPath: string | null = null;
  if (opts.trust) trustedPath = trustSystemWide(ca.pem, fingerprint);

  const config: ClientConfig = {
    version: 1,
    gatewayUrl: opts.gatewayUrl,
    device: {
      id: join.device.id,
      name: join.device.name,
      profile: join.device.profile,
      address4: join.device.address4,
      address6: join.device.address6,
    },
    privateKey: keys.privateKey,
    publicKey: keys.publicKey,
    deviceToken: join.deviceToken,
    wireguard: {
      gatewayPublicKey: join.wireguard.gatewayPublicKey,
      endpoint: tunnelEndpoint(opts.gatewayUrl, join),
      dns: join.wireguard.dns,
      mtu: join.wireguard.mtu,
      persistentKeepalive: join.wireguard.persistentKeepalive,
    },
    ca: { pem: ca.pem, fingerprint, trustedPath },
    placeholders: join.placeholders,
    joinedAt: new Date().toISOString(),
  };
  saveClientConfig(path, config);
  return { config, path };
}
