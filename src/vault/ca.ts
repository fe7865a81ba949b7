/**
 * The gateway's certificate authority: an ECDSA P-256 CA created on first
 * start, its private key sealed in the vault (owner `gateway.ca`), stable
 * across restarts. It mints short-lived leaf certificates per SNI host (DNS
 * SAN) or per IP literal (IP SAN) for the HTTPS and Postgres engines,
 * caches them (LRU, bounded) and mints a fresh one once half a leaf's
 * lifetime has passed, well before it expires.
 */
import { webcrypto, createHash, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import * as x509 from '@peculiar/x509';
import type { Vault } from './vault.js';
import { VaultError } from './key.js';

const crypto = webcrypto as unknown as Crypto;
const EC_KEY: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };
const CA_OWNER = 'gateway.ca';
const CA_SLOT = 'bundle';
const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** Clients with a slightly slow clock must still accept a fresh leaf. */
const BACKDATE_MS = HOUR;

export interface LeafCert {
  certPem: string;
  keyPem: string;
  notAfter: Date;
}

export interface GatewayCaOptions {
  /** Leaf validity (default 7 days). */
  leafLifetimeMs?: number;
  /** Mint a new leaf once less than this remains (default half the lifetime). */
  renewBeforeMs?: number;
  /** Leaves kept in memory (default 1000). */
  cacheSize?: number;
  /** CA validity when one is created (default 10 years). */
  caLifetimeMs?: number;
  now?: () => number;
}

export interface GatewayCa {
  readonly caCertPem: string;
  /** SHA-256 of the CA certificate's DER, upper-case hex pairs joined by `:` (as `openssl x509 -fingerprint -sha256`). */
  readonly fingerprintSha256: string;
  leaf(hostOrIp: string): Promise<LeafCert>;
  /** A TLS context serving the leaf for `host`, for `tls.createServer({ SNICallback })` or a TLSSocket. */
  secureContextFor(host: string): Promise<SecureContext>;
  /** `SNICallback` that serves a leaf per server name. */
  sniCallback(): (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
  /** Leaves minted since start (observability, tests). */
  readonly minted: number;
}

interface StoredCa {
  cert: string;
  key: string;
}

/** Load the gateway CA from the vault, creating it on first start. */
export async function openGatewayCa(vault: Vault, opts: GatewayCaOptions = {}): Promise<GatewayCa> {
  const now = opts.now ?? Date.now;
  let stored = readStored(vault);
  if (!stored) {
    const created = await createCa(now(), opts.caLifetimeMs ?? 3650 * DAY);
    // Several gateways may start at once against one shared store: the first CA stored wins.
    await vault.setInternalIfAbsent(CA_OWNER, CA_SLOT, JSON.stringify(created));
    stored = readStored(vault);
    if (!stored) throw new VaultError('the gateway CA could not be stored in the vault');
  }
  const cert = new x509.X509Certificate(stored.cert);
  const key = await crypto.subtle.importKey('pkcs8', pemBody(stored.key), EC_KEY, false, ['sign']);
  return new Ca(cert, key, opts, now);
}

function readStored(vault: Vault): StoredCa | null {
  const text = vault.getInternal(CA_OWNER, CA_SLOT);
  if (text === undefined) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new VaultError('the gateway CA stored in the vault is unreadable');
  }
  const p = parsed as Partial<StoredCa>;
  if (typeof p.cert !== 'string' || typeof p.key !== 'string') throw new VaultError('the gateway CA stored in the vault is incomplete');
  return { cert: p.cert, key: p.key };
}

async function createCa(nowMs: number, lifetimeMs: number): Promise<StoredCa> {
  const keys = (await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
  const tag = randomBytes(4).toString('hex');
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: `CN=clawpatrol gateway CA ${tag}, O=clawpatrol`,
      notBefore: new Date(nowMs - BACKDATE_MS),
      notAfter: new Date(nowMs + lifetimeMs),
      signingAlgorithm: SIGNING,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { cert: cert.toString('pem'), key: await exportKeyPem(keys.privateKey) };
}

/** Positive 128-bit serial (RFC 5280 §4.1.2.2: at most 20 octets, non-negative). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString('hex');
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN PRIVATE KEY-----\n${lines.join('\n')}\n-----END PRIVATE KEY-----\n`;
}

function pemBody(pem: string): ArrayBuffer {
  const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const buf = Buffer.from(b64, 'base64');
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

/** `Host`/SNI as the engines see it → the name a certificate is for: lower-case, no trailing dot, no IPv6 brackets. */
export function normaliseLeafHost(hostOrIp: string): string {
  let h = hostOrIp.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  while (h.endsWith('.')) h = h.slice(0, -1);
  if (!h) throw new VaultError('cannot issue a certificate for an empty host name');
  if (!isIP(h) && !/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(h)) {
    throw new VaultError(`cannot issue a certificate for "${hostOrIp}": not a host name or IP address`);
  }
  return h;
}

interface CachedLeaf {
  leaf: LeafCert;
  renewAt: number;
  context: SecureContext | null;
}

class Ca implements GatewayCa {
  readonly caCertPem: string;
  readonly fingerprintSha256: string;
  minted = 0;
  private readonly cache = new Map<string, CachedLeaf>();
  private readonly inflight = new Map<string, Promise<CachedLeaf>>();
  private readonly lifetime: number;
  private readonly renewBefore: number;
  private readonly cacheSize: number;
  private readonly akiPromise: Promise<x509.AuthorityKeyIdentifierExtension>;

  constructor(
    private readonly cert: x509.X509Certificate,
    private readonly key: CryptoKey,
    opts: GatewayCaOptions,
    private readonly now: () => number,
  ) {
    this.caCertPem = cert.toString('pem');
    this.fingerprintSha256 = formatFingerprint(createHash('sha256').update(Buffer.from(cert.rawData)).digest());
    this.lifetime = opts.leafLifetimeMs ?? 7 * DAY;
    this.renewBefore = opts.renewBeforeMs ?? this.lifetime / 2;
    this.cacheSize = Math.max(1, opts.cacheSize ?? 1000);
    this.akiPromise = x509.AuthorityKeyIdentifierExtension.create(cert.publicKey, false, crypto);
  }

  async leaf(hostOrIp: string): Promise<LeafCert> {
    return (await this.entry(normaliseLeafHost(hostOrIp))).leaf;
  }

  async secureContextFor(host: string): Promise<SecureContext> {
    const entry = await this.entry(normaliseLeafHost(host));
    entry.context ??= createSecureContext({ cert: entry.leaf.certPem, key: entry.leaf.keyPem });
    return entry.context;
  }

  sniCallback(): (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void {
    return (servername, cb) => {
      this.secureContextFor(servername).then(
        (ctx) => cb(null, ctx),
        (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
      );
    };
  }

  private async entry(host: string): Promise<CachedLeaf> {
    const hit = this.cache.get(host);
    if (hit && this.now() < hit.renewAt) {
      // Map iteration order is insertion order: re-inserting marks it most recently used.
      this.cache.delete(host);
      this.cache.set(host, hit);
      return hit;
    }
    const pending = this.inflight.get(host);
    if (pending) return pending;
    const p = this.mint(host).finally(() => this.inflight.delete(host));
    this.inflight.set(host, p);
    const entry = await p;
    this.cache.delete(host);
    this.cache.set(host, entry);
    while (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
    return entry;
  }

  private async mint(host: string): Promise<CachedLeaf> {
    const nowMs = this.now();
    const caEnd = this.cert.notAfter.getTime();
    const notAfter = new Date(Math.min(nowMs + this.lifetime, caEnd));
    const keys = (await crypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])) as CryptoKeyPair;
    const ip = isIP(host) !== 0;
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial(),
        // CN is limited to 64 characters (RFC 5280 ub-common-name); clients use the SAN anyway.
        subject: host.length <= 64 ? `CN=${host}` : '',
        issuer: this.cert.subject,
        notBefore: new Date(nowMs - BACKDATE_MS),
        notAfter,
        signingAlgorithm: SIGNING,
        publicKey: keys.publicKey,
        signingKey: this.key,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: ip ? 'ip' : 'dns', value: host }], host.length > 64),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
          await this.akiPromise,
        ],
      },
      crypto,
    );
    this.minted++;
    const leaf: LeafCert = { certPem: cert.toString('pem'), keyPem: await exportKeyPem(keys.privateKey), notAfter };
    return { leaf, renewAt: Math.max(notAfter.getTime() - this.renewBefore, nowMs + 1), context: null };
  }
}

export function formatFingerprint(digest: Buffer): string {
  return (digest.toString('hex').toUpperCase().match(/../g) ?? []).join(':');
}
