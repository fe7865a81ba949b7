import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { openStore, type Store } from '../../src/store/index.js';
import { openVault, openGatewayCa, type GatewayCa, type Vault } from '../../src/vault/index.js';
import { modelOf } from './model.js';

const DAY = 86_400_000;
let root: string;
let stateDir: string;
let store: Store;
let vault: Vault;
let ca: GatewayCa;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'clawpatrol-ca-'));
  stateDir = join(root, 'state');
  store = await openStore({ stateDir });
  vault = await openVault({ store, stateDir, model: () => modelOf(), env: {}, refreshMs: 0 });
  ca = await openGatewayCa(vault);
});
afterAll(async () => {
  await store.close();
  rmSync(root, { recursive: true, force: true });
});

function openssl(args: string[]): { status: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

function writePem(name: string, pem: string): string {
  const p = join(root, name);
  writeFileSync(p, pem);
  return p;
}

describe('gateway CA', () => {
  it('is an ECDSA P-256 CA certificate', () => {
    const cert = new X509Certificate(ca.caCertPem);
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyType).toBe('ec');
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.checkIssued(cert)).toBe(true);
    const text = openssl(['x509', '-noout', '-text', '-in', writePem('ca.pem', ca.caCertPem)]).out;
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Certificate Sign, CRL Sign/);
  });

  it('reports the SHA-256 fingerprint exactly as openssl does', () => {
    const out = openssl(['x509', '-noout', '-fingerprint', '-sha256', '-in', writePem('ca.pem', ca.caCertPem)]).out;
    expect(out.trim()).toBe(`sha256 Fingerprint=${ca.fingerprintSha256}`);
    expect(ca.fingerprintSha256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });

  it('is created once and stays the same across restarts', async () => {
    const store2 = await openStore({ stateDir });
    const vault2 = await openVault({ store: store2, stateDir, model: () => modelOf(), env: {}, refreshMs: 0 });
    const again = await openGatewayCa(vault2);
    expect(again.fingerprintSha256).toBe(ca.fingerprintSha256);
    expect(again.caCertPem).toBe(ca.caCertPem);
    // and a leaf from the restarted CA verifies against the original certificate
    const leaf = await again.leaf('restart.example');
    expect(new X509Certificate(leaf.certPem).checkIssued(new X509Certificate(ca.caCertPem))).toBe(true);
    await store2.close();
  });

  it('keeps its private key sealed: no key bytes in any file of the state dir', async () => {
    const key = vault.getInternal('gateway.ca', 'bundle');
    const pemKey = JSON.parse(key!).key as string;
    const body = pemKey.split('\n').filter((l) => l && !l.startsWith('-----')).join('');
    const der = Buffer.from(body, 'base64');
    for (const f of readdirSync(stateDir)) {
      const bytes = readFileSync(join(stateDir, f));
      expect(bytes.includes(Buffer.from(body.slice(0, 40)))).toBe(false);
      expect(bytes.includes(der.subarray(der.length - 32))).toBe(false);
    }
  });

  it('mints leaves openssl verifies for a DNS name and for IPv4/IPv6 literals', async () => {
    const caFile = writePem('ca.pem', ca.caCertPem);
    const name = await ca.leaf('API.Example.COM.');
    const nameFile = writePem('name.pem', name.certPem);
    expect(openssl(['verify', '-CAfile', caFile, '-verify_hostname', 'api.example.com', nameFile]).out).toContain(': OK');
    const wrong = openssl(['verify', '-CAfile', caFile, '-verify_hostname', 'evil.example.com', nameFile]);
    expect(wrong.status).not.toBe(0);
    expect(wrong.out).toMatch(/hostname mismatch/);

    const v4 = writePem('v4.pem', (await ca.leaf('10.1.2.3')).certPem);
    expect(openssl(['verify', '-CAfile', caFile, '-verify_ip', '10.1.2.3', v4]).out).toContain(': OK');
    expect(openssl(['verify', '-CAfile', caFile, '-verify_ip', '10.1.2.4', v4]).status).not.toBe(0);
    const v6 = writePem('v6.pem', (await ca.leaf('[::1]')).certPem);
    expect(openssl(['verify', '-CAfile', caFile, '-verify_ip', '::1', v6]).out).toContain(': OK');

    const text = openssl(['x509', '-noout', '-text', '-in', nameFile]).out;
    expect(text).toMatch(/DNS:api\.example\.com/);
    expect(text).toMatch(/TLS Web Server Authentication/);
    expect(text).toMatch(/CA:FALSE/);
    expect(openssl(['x509', '-noout', '-text', '-in', v4]).out).toMatch(/IP Address:10\.1\.2\.3/);
  });

  it('serves leaves to real Node TLS clients: by SNI name, and by IP without SNI', async () => {
    const ipLeaf = await ca.leaf('127.0.0.1');
    const server = tls.createServer(
      // Without SNI (IP-literal clients) the server's own cert is used: the engine picks the leaf of the dialed IP.
      { SNICallback: ca.sniCallback(), cert: ipLeaf.certPem, key: ipLeaf.keyPem },
      (socket) => socket.end(`hello ${(socket as tls.TLSSocket & { servername?: string | false }).servername || 'ip'}\n`),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const talk = (opts: tls.ConnectionOptions) =>
      new Promise<{ authorized: boolean; text: string; error?: string }>((resolve) => {
        const s = tls.connect({ port, host: '127.0.0.1', ca: ca.caCertPem, ...opts }, () => {
          let text = '';
          s.setEncoding('utf8');
          s.on('data', (d: string) => (text += d));
          s.on('end', () => resolve({ authorized: s.authorized, text }));
        });
        s.on('error', (e) => resolve({ authorized: false, text: '', error: e.message }));
      });
    try {
      expect(await talk({ servername: 'db.internal.example' })).toEqual({ authorized: true, text: 'hello db.internal.example\n' });
      expect(await talk({})).toEqual({ authorized: true, text: 'hello ip\n' });
      // A client that does not trust the gateway CA refuses the leaf.
      const untrusted = await talk({ servername: 'db.internal.example', ca: undefined });
      expect(untrusted.authorized).toBe(false);
      expect(untrusted.error).toMatch(/self[- ]signed|unable to (get|verify)/i);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('issues short-lived leaves, backdated for clock skew, and renews them at half-life', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const timed = await openGatewayCa(vault, { now: () => now, leafLifetimeMs: 7 * DAY });
    const first = await timed.leaf('svc.example');
    const cert = new X509Certificate(first.certPem);
    expect(Date.parse(cert.validFrom)).toBe(now - 3600_000);
    expect(Date.parse(cert.validTo)).toBe(now + 7 * DAY);
    now += 3 * DAY;
    expect((await timed.leaf('svc.example')).certPem).toBe(first.certPem);
    expect(timed.minted).toBe(1);
    now += 0.6 * DAY; // past half of the lifetime: renewed, days before expiry
    const second = await timed.leaf('svc.example');
    expect(second.certPem).not.toBe(first.certPem);
    expect(timed.minted).toBe(2);
    expect(Date.parse(new X509Certificate(second.certPem).validTo)).toBe(now + 7 * DAY);
  });

  it('bounds its cache (least recently used goes first) and mints once for concurrent requests', async () => {
    const small = await openGatewayCa(vault, { cacheSize: 2 });
    const same = await Promise.all(Array.from({ length: 10 }, () => small.leaf('a.example')));
    expect(new Set(same.map((l) => l.certPem)).size).toBe(1);
    expect(small.minted).toBe(1);
    await small.leaf('b.example');
    await small.leaf('a.example'); // a is now most recently used
    await small.leaf('c.example'); // evicts b
    expect(small.minted).toBe(3);
    await small.leaf('a.example');
    expect(small.minted).toBe(3);
    await small.leaf('b.example');
    expect(small.minted).toBe(4);
  });

  it('refuses names that are not host names or IPs', async () => {
    await expect(ca.leaf('')).rejects.toThrow(/empty host name/);
    await expect(ca.leaf('a b.example')).rejects.toThrow(/not a host name or IP address/);
    await expect(ca.leaf('x.example/../y')).rejects.toThrow(/not a host name/);
    await expect(ca.leaf('*.example.com')).rejects.toThrow(/not a host name/);
  });

  it('long host names get a SAN-only leaf that still verifies', async () => {
    const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.example`;
    const leaf = await ca.leaf(long);
    const r = openssl(['verify', '-CAfile', writePem('ca.pem', ca.caCertPem), '-verify_hostname', long, writePem('long.pem', leaf.certPem)]);
    expect(r.out).toContain(': OK');
  });
});
