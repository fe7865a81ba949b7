import { describe, it, expect } from 'vitest';
import { buildRunEnv, isCredentialVariable, CA_VARIABLES } from '../../src/net/client/env.js';
import { nsswitchFor } from '../../src/net/client/tunnel.js';
import { normaliseFingerprint, pinnableCa } from '../../src/net/client/ca-trust.js';
import { tunnelEndpoint } from '../../src/net/client/join.js';

const base = {
  PATH: '/usr/bin:/bin',
  HOME: '/root',
  TERM: 'xterm',
  LANG: 'C.UTF-8',
  PWD: '/work',
  EDITOR: 'vi',
  AWS_ACCESS_KEY_ID: 'AKIA1',
  AWS_SECRET_ACCESS_KEY: 'secret1',
  AWS_REGION: 'eu-west-1',
  GITHUB_TOKEN: 'ghp_real',
  ANTHROPIC_API_KEY: 'sk-ant-real',
  OPENAI_API_KEY: 'sk-real',
  PGPASSWORD: 'pw',
  MY_SERVICE_TOKEN: 't',
  STRIPE_SECRET_KEY: 'sk_live',
  DB_PASSWORD: 'x',
  DATABASE_URL: 'postgres://app:hunter2@db/app',
  WEBHOOK: 'https://user:pass@hooks.example.com/x',
  PLAIN_URL: 'https://example.com/a@b',
  SSH_AUTH_SOCK: '/tmp/ssh-agent.sock',
  CLAWPATROL_SECRET_GH_TOKEN: 'ghp_gateway',
  HTTPS_PROXY: 'http://proxy:3128',
  no_proxy: 'localhost',
  GIT_ASKPASS: '/usr/bin/askpass',
  SUDO_UID: '1000',
};

describe('the environment of a wrapped agent', () => {
  const out = buildRunEnv({
    env: base,
    placeholders: [
      { credential: 'bearer_token.github', placeholder: 'cp_ph_github', env: 'GITHUB_TOKEN' },
      { credential: 'postgres_credential.ro', placeholder: 'PH_ro', env: 'PGUSER' },
      { credential: 'bearer_token.noenv', placeholder: 'cp_ph_x' },
    ],
    caBundlePath: '/run/clawpatrol/dev_x/ca-bundle.pem',
    device: { id: 'dev_x', profile: 'dev' },
    user: { name: 'alice', home: '/home/alice', shell: '/bin/bash' },
  });

  it('removes real credentials and reports their names only', () => {
    for (const v of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION', 'ANTHROPIC_API_KEY', 'OPENAI_API_KEY', 'PGPASSWORD', 'MY_SERVICE_TOKEN',
      'STRIPE_SECRET_KEY', 'DB_PASSWORD', 'DATABASE_URL', 'WEBHOOK', 'SSH_AUTH_SOCK', 'CLAWPATROL_SECRET_GH_TOKEN']) {
      expect(out.env[v], v).toBeUndefined();
      expect(out.removed, v).toContain(v);
    }
    expect(JSON.stringify(out.removed)).not.toMatch(/secret1|ghp_real|hunter2/);
  });

  it('keeps ordinary variables', () => {
    for (const v of ['PATH', 'TERM', 'LANG', 'PWD', 'EDITOR', 'PLAIN_URL', 'GIT_ASKPASS']) expect(out.env[v], v).toBe(base[v as keyof typeof base]);
  });

  it('replaces credentials the profile has placeholders for', () => {
    expect(out.env.GITHUB_TOKEN).toBe('cp_ph_github');
    expect(out.env.PGUSER).toBe('PH_ro');
    expect(out.removed).toContain('GITHUB_TOKEN');
    expect(out.exported).toEqual(['GITHUB_TOKEN (bearer_token.github)', 'PGUSER (postgres_credential.ro)']);
  });

  it('removes proxies, points every CA variable at the bundle, and becomes the invoking user', () => {
    expect(out.env.HTTPS_PROXY).toBeUndefined();
    expect(out.env.no_proxy).toBeUndefined();
    expect(out.proxiesRemoved).toEqual(['HTTPS_PROXY', 'no_proxy']);
    for (const v of CA_VARIABLES) expect(out.env[v]).toBe('/run/clawpatrol/dev_x/ca-bundle.pem');
    expect(out.env).toMatchObject({ HOME: '/home/alice', USER: 'alice', LOGNAME: 'alice', SHELL: '/bin/bash', CLAWPATROL_DEVICE: 'dev_x', CLAWPATROL_PROFILE: 'dev' });
    expect(out.env.SUDO_UID).toBeUndefined();
  });

  it('keeps what --keep-env names', () => {
    const kept = buildRunEnv({ env: { DB_PASSWORD: 'x', HTTPS_PROXY: 'p' }, placeholders: [], caBundlePath: '/b', device: { id: 'd', profile: 'p' }, keep: ['DB_PASSWORD', 'HTTPS_PROXY'] });
    expect(kept.env.DB_PASSWORD).toBe('x');
    expect(kept.env.HTTPS_PROXY).toBe('p');
  });

  it('judges names and values', () => {
    expect(isCredentialVariable('GH_TOKEN', 'x')).toBe(true);
    expect(isCredentialVariable('gitlab_token', 'x')).toBe(true);
    expect(isCredentialVariable('SSH_ASKPASS', 'x')).toBe(false);
    expect(isCredentialVariable('TOKENIZER_MODEL', 'x')).toBe(false);
    expect(isCredentialVariable('REDIS', 'redis://:pw@cache:6379')).toBe(true);
    expect(isCredentialVariable('SSL_CERT_FILE', '/x')).toBe(false);
  });
});

describe('run namespace files and join helpers', () => {
  it('resolves names through the tunnel DNS only', () => {
    expect(nsswitchFor('passwd: files systemd\nhosts: files mdns4_minimal [NOTFOUND=return] resolve dns myhostname\nnetworks: files\n')).toBe(
      'passwd: files systemd\nnetworks: files\nhosts: files dns\n',
    );
  });
  it('normalises fingerprints', () => {
    expect(normaliseFingerprint('ab'.repeat(32))).toBe(Array(32).fill('AB').join(':'));
    expect(normaliseFingerprint('AB:CD')).toBeNull();
  });
  it('refuses a non-CA certificate as the gateway CA', async () => {
    const { execFileSync } = await import('node:child_process');
    const pem = execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=leaf', '-addext', 'basicConstraints=CA:FALSE', '-days', '1'], { encoding: 'utf8' });
    expect(() => pinnableCa(pem)).toThrow(/not a CA/);
    expect(() => pinnableCa('garbage')).toThrow(/exactly one PEM certificate/);
    expect(() => pinnableCa('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')).toThrow(/not a PEM certificate/);
  });
  it('pins exactly one CA certificate: a second one riding along is refused, text around it dropped', async () => {
    const { execFileSync } = await import('node:child_process');
    const mk = (cn: string) => execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-days', '1'], { encoding: 'utf8' });
    const real = mk('real');
    const extra = mk('attacker');
    expect(() => pinnableCa(real + extra)).toThrow(/exactly one PEM certificate \(got -----BEGIN CERTIFICATE-----, -----BEGIN CERTIFICATE-----\)/);
    const pinned = pinnableCa(`comment before\n${real}`);
    expect(pinned.pem).toBe(real.trim() + '\n');
    expect(pinned.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  });
  it('sends the tunnel to wireguard.endpoint, else the gateway URL host', () => {
    const j = { wireguard: { endpoint: null, listenPort: 51820 } } as unknown as Parameters<typeof tunnelEndpoint>[1];
    expect(tunnelEndpoint('http://gw.example.com:8080', j)).toBe('gw.example.com:51820');
    expect(tunnelEndpoint('http://[fd00::1]:8080', j)).toBe('[fd00::1]:51820');
    const k = { wireguard: { endpoint: 'vpn.example.com:4500', listenPort: 51820 } } as unknown as Parameters<typeof tunnelEndpoint>[1];
    expect(tunnelEndpoint('http://gw:8080', k)).toBe('vpn.example.com:4500');
  });
});
