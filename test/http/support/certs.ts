/**
 * Certificates for the fake *upstreams* (not the gateway's CA, which is the
 * real one from src/vault/ca.ts): a throwaway CA made with the openssl CLI,
 * a server certificate for the test host names and IPs, a client certificate
 * for mTLS, and a self-signed certificate nobody trusts.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestPki {
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  clientCertPem: string;
  clientKeyPem: string;
  untrustedCertPem: string;
  untrustedKeyPem: string;
  /** Path of caPem on disk. */
  caPath: string;
}

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export function makeTestPki(dir: string, names: string[], ips: string[]): TestPki {
  openssl(dir, ['req', '-x509', ...EC, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=clawpatrol upstream test CA', '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const san = [...names.map((n) => `DNS:${n}`), ...ips.map((i) => `IP:${i}`)].join(',');
  writeFileSync(join(dir, 'server.ext'), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  openssl(dir, ['req', ...EC, '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${names[0]}`]);
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext']);
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  openssl(dir, ['req', ...EC, '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=clawpatrol-agent']);
  openssl(dir, ['x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.pem', '-days', '2', '-extfile', 'client.ext']);
  openssl(dir, ['req', '-x509', ...EC, '-keyout', 'untrusted.key', '-out', 'untrusted.pem', '-subj', `/CN=${names[0]}`, '-days', '2',
    '-addext', `subjectAltName=${san}`]);
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    caPem: read('ca.pem'),
    serverCertPem: read('server.pem'),
    serverKeyPem: read('server.key'),
    clientCertPem: read('client.pem'),
    clientKeyPem: read('client.key'),
    untrustedCertPem: read('untrusted.pem'),
    untrustedKeyPem: read('untrusted.key'),
    caPath: join(dir, 'ca.pem'),
  };
}
