/**
 * Test PKI made with the real openssl CLI: a CA, and leaves signed by it.
 * Used to turn on TLS in the throwaway PostgreSQL cluster (upstream sslmode
 * tests) and as a stand-in gateway CA for the agent-side TLS answer.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PgCluster } from '../../support/pg-cluster.js';

export interface TestCa {
  dir: string;
  certPem: string;
  keyPath: string;
  certPath: string;
  /** A leaf for `host` (DNS or IP SAN), signed by this CA. */
  leaf(host: string): { certPem: string; keyPem: string; certPath: string; keyPath: string };
  cleanup(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makeTestCa(name = 'clawpatrol test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'clawpatrol-pki-'));
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], dir);
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-subj', `/CN=${name}`, '-out', 'ca.crt'], dir);
  let n = 0;
  return {
    dir,
    certPem: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    keyPath: join(dir, 'ca.key'),
    certPath: join(dir, 'ca.crt'),
    leaf(host: string) {
      const base = `leaf${n++}`;
      const san = /^[0-9.]+$|:/.test(host) ? `IP:${host}` : `DNS:${host}`;
      writeFileSync(join(dir, `${base}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
      openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${base}.key`], dir);
      openssl(['req', '-new', '-key', `${base}.key`, '-subj', `/CN=${host}`, '-out', `${base}.csr`], dir);
      openssl(
        ['x509', '-req', '-in', `${base}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-sha256', '-extfile', `${base}.ext`, '-out', `${base}.crt`],
        dir,
      );
      return {
        certPem: readFileSync(join(dir, `${base}.crt`), 'utf8'),
        keyPem: readFileSync(join(dir, `${base}.key`), 'utf8'),
        certPath: join(dir, `${base}.crt`),
        keyPath: join(dir, `${base}.key`),
      };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Serve TLS from the cluster with a certificate for `host` signed by `ca`. */
export function enableClusterSsl(cluster: PgCluster, ca: TestCa, host = 'localhost'): void {
  const leaf = ca.leaf(host);
  const cert = join(cluster.dataDir, 'server.crt');
  const key = join(cluster.dataDir, 'server.key');
  copyFileSync(leaf.certPath, cert);
  copyFileSync(leaf.keyPath, key);
  chmodSync(key, 0o600);
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(cert, uid, gid);
    chownSync(key, uid, gid);
  }
  // ALTER SYSTEM refuses to run inside the implicit transaction of a multi-statement -c.
  cluster.sql("ALTER SYSTEM SET ssl_cert_file = 'server.crt'");
  cluster.sql("ALTER SYSTEM SET ssl_key_file = 'server.key'");
  cluster.sql('ALTER SYSTEM SET ssl = on');
  cluster.sql('SELECT pg_reload_conf()');
  for (let i = 0; i < 100 && cluster.sql('SHOW ssl').trim() !== 'on'; i++) execFileSync('sleep', ['0.05']);
}
