/**
 * The gateway CA on the joined machine: its fingerprint (what the operator
 * compares and pins), system-wide trust the Debian way
 * (`/usr/local/share/ca-certificates/*.crt` + `update-ca-certificates`), and
 * the bundle `clawpatrol run` points agents at (system roots + gateway CA).
 */
import { rootCertificates } from 'node:tls';
import { X509Certificate as CryptoX509 } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

export const DEBIAN_CA_DIR = '/usr/local/share/ca-certificates';
export const SYSTEM_BUNDLE_CANDIDATES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];

/**
 * The one CA certificate a gateway served, as it will be pinned: exactly one
 * PEM certificate with the CA flag, re-encoded from its DER so nothing that
 * rode along (a second certificate, text around it) is ever trusted, and its
 * SHA-256 fingerprint as `AB:CD:…` (what `openssl x509 -fingerprint -sha256` prints).
 */
export function pinnableCa(pem: string): { pem: string; fingerprint: string } {
  const blocks = pem.match(/-----BEGIN [^-]+-----/g) ?? [];
  if (blocks.length !== 1 || blocks[0] !== '-----BEGIN CERTIFICATE-----') {
    throw new Error(`the gateway's CA must be exactly one PEM certificate (got ${blocks.length ? blocks.join(', ') : 'none'})`);
  }
  let cert: CryptoX509;
  try {
    cert = new CryptoX509(pem);
  } catch (err) {
    throw new Error(`the gateway's CA is not a PEM certificate: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!cert.ca) throw new Error('the certificate the gateway served is not a CA certificate');
  return { pem: cert.toString(), fingerprint: cert.fingerprint256.toUpperCase() };
}

/** `ab cd:EF…` → `AB:CD:EF:…`; null when it is not 32 bytes of hex. */
export function normaliseFingerprint(text: string): string | null {
  const hex = text.replace(/[\s:]/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) return null;
  return hex.match(/../g)!.join(':');
}

export function trustPathFor(fingerprint: string, dir = DEBIAN_CA_DIR): string {
  return join(dir, `clawpatrol-${fingerprint.replace(/:/g, '').slice(0, 16).toLowerCase()}.crt`);
}

function updateCaCertificates(): void {
  const r = spawnSync('update-ca-certificates', ['--fresh'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`update-ca-certificates failed: ${r.error?.message ?? (r.stderr || r.stdout).trim()}`);
  }
}

/** Trust the CA system-wide; returns the file written. Needs root. */
export function trustSystemWide(pem: string, fingerprint: string): string {
  if (!existsSync(DEBIAN_CA_DIR) && !existsSync('/usr/sbin/update-ca-certificates')) {
    throw new Error(
      `no Debian-style trust store (${DEBIAN_CA_DIR}, update-ca-certificates); install ca-certificates, or join with --no-trust and use the bundle clawpatrol run exports`,
    );
  }
  mkdirSync(DEBIAN_CA_DIR, { recursive: true, mode: 0o755 });
  const path = trustPathFor(fingerprint);
  writeFileSync(path, pem.trim() + '\n', { mode: 0o644 });
  updateCaCertificates();
  return path;
}

export function untrustSystemWide(path: string): void {
  if (!existsSync(path)) return;
  rmSync(path, { force: true });
  updateCaCertificates();
}

/** System roots (the distribution bundle, else Node's) followed by the gateway CA. */
export function caBundle(gatewayPem: string): string {
  let roots = '';
  for (const p of SYSTEM_BUNDLE_CANDIDATES) {
    if (existsSync(p)) {
      roots = readFileSync(p, 'utf8');
      break;
    }
  }
  if (!roots) roots = rootCertificates.join('\n');
  return `${roots.trimEnd()}\n# clawpatrol gateway CA\n${gatewayPem.trim()}\n`;
}
