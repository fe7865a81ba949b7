import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import * as http from 'node:http';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { CredentialMaterial } from '../../src/gateway/contracts.js';
import {
  injectHttpCredential,
  postgresLogin,
  clickhouseLogin,
  mtlsOptions,
  presentedTokens,
  stripClickhouseUrlAuth,
  authHeaderNames,
  InjectionError,
} from '../../src/vault/inject.js';
import { credential } from './model.js';

const m = (c: ReturnType<typeof credential>, slots: Record<string, string>): CredentialMaterial => ({ credential: c, slots });

describe('HTTP injection', () => {
  const agent = {
    host: 'api.example.com',
    Authorization: 'Bearer PH_placeholder',
    'x-api-key': 'PH_other',
    'X-Api-Token': 'Token PH_x',
    accept: 'application/json',
  };

  it('bearer_token: replaces every auth-bearing header with Authorization: Bearer', () => {
    const out = injectHttpCredential(agent, m(credential('bearer_token', 'gh'), { token: 'ghp_real' }));
    expect(out).toEqual({ host: 'api.example.com', 'X-Api-Token': 'Token PH_x', accept: 'application/json', authorization: 'Bearer ghp_real' });
    expect(agent.Authorization).toBe('Bearer PH_placeholder'); // input untouched
  });

  it('header_token: writes <header>: <prefix><token> and drops the agent\'s copy, whatever its case', () => {
    const c = credential('header_token', 'api', { header: 'X-Api-Token', prefix: 'Token ' });
    const out = injectHttpCredential(agent, m(c, { token: 'real' }));
    expect(out).toEqual({ host: 'api.example.com', accept: 'application/json', 'x-api-token': 'Token real' });
    const noPrefix = injectHttpCredential({}, m(credential('header_token', 'p', { header: 'PRIVATE-TOKEN' }), { token: 'glpat' }));
    expect(noPrefix).toEqual({ 'private-token': 'glpat' });
    expect(() => injectHttpCredential({}, m(credential('header_token', 'bad'), { token: 'x' }))).toThrow(/names no header/);
    expect(() => injectHttpCredential({}, m(credential('header_token', 'bad', { header: 'X Bad' }), { token: 'x' }))).toThrow(/not a valid header name/);
  });

  it('basic_auth: Basic base64(username:password)', () => {
    const out = injectHttpCredential(agent, m(credential('basic_auth', 'jira', { username: 'bot@acme' }), { password: 'p:w' }));
    expect(out.authorization).toBe('Basic ' + Buffer.from('bot@acme:p:w').toString('base64'));
    expect(out['x-api-key']).toBeUndefined();
    expect(() => injectHttpCredential({}, m(credential('basic_auth', 'x', { username: 'a:b' }), { password: 'p' }))).toThrow(/cannot contain ":"/);
  });

  it('anthropic_manual_key: x-api-key, and the SDK\'s Bearer placeholder is removed', () => {
    const out = injectHttpCredential(agent, m(credential('anthropic_manual_key', 'claude'), { token: 'sk-ant-real' }));
    expect(out['x-api-key']).toBe('sk-ant-real');
    expect(out.Authorization).toBeUndefined();
    expect(out.authorization).toBeUndefined();
  });

  it('slack_tokens: the bot token as Bearer', () => {
    const out = injectHttpCredential({}, m(credential('slack_tokens', 'ops'), { bot: 'xoxb-1', signing_secret: 's' }));
    expect(out).toEqual({ authorization: 'Bearer xoxb-1' });
  });

  it('clickhouse_credential over HTTP: Basic user:password, agent X-ClickHouse-* and URL credentials dropped', () => {
    const c = credential('clickhouse_credential', 'ch', { user: 'reader' });
    const out = injectHttpCredential({ 'X-ClickHouse-User': 'PH', 'x-clickhouse-key': 'PH' }, m(c, { password: 'pw' }));
    expect(out).toEqual({ authorization: 'Basic ' + Buffer.from('reader:pw').toString('base64') });
    const url = stripClickhouseUrlAuth(new URL('http://ch:8123/?user=PH&password=PH&query=SELECT%201'));
    expect(url.search).toBe('?query=SELECT+1');
  });

  it('passthrough and mtls leave headers alone; postgres cannot go into HTTP', () => {
    expect(injectHttpCredential(agent, m(credential('passthrough', 'p'), {}))).toEqual(agent);
    expect(() => injectHttpCredential(agent, m(credential('postgres_credential', 'pg'), { password: 'x' }))).toThrow(InjectionError);
  });

  it('refuses material that would split a header', () => {
    expect(() => injectHttpCredential({}, m(credential('bearer_token', 'gh'), { token: 'a\r\nX-Evil: 1' }))).toThrow(/line break/);
    expect(() => injectHttpCredential({}, m(credential('bearer_token', 'gh'), {}))).toThrow(/has no secret for slot token/);
  });

  it('what a real HTTP server receives: one Authorization, the real one', async () => {
    let seen: http.IncomingHttpHeaders = {};
    let raw: string[] = [];
    const server = http.createServer((req, res) => {
      seen = req.headers;
      raw = req.rawHeaders;
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const headers = injectHttpCredential(
      { Authorization: 'Bearer PH', authorization: ['Bearer PH2'], 'X-API-KEY': 'smuggled', accept: '*/*' },
      m(credential('bearer_token', 'gh'), { token: 'real-token' }),
    );
    await new Promise<void>((resolve, reject) => {
      http.get({ port, host: '127.0.0.1', path: '/', headers: headers as http.OutgoingHttpHeaders }, (res) => {
        res.resume();
        res.on('end', resolve);
      }).on('error', reject);
    });
    server.close();
    expect(seen.authorization).toBe('Bearer real-token');
    expect(seen['x-api-key']).toBeUndefined();
    expect(raw.filter((h) => /^authorization$/i.test(h))).toHaveLength(1);
  });

  it('authHeaderNames covers configured headers', () => {
    expect(authHeaderNames(credential('header_token', 'x', { header: 'PRIVATE-TOKEN' }))).toEqual(['authorization', 'x-api-key', 'private-token']);
  });
});

describe('handshake injection', () => {
  it('postgres: the credential user (or the agent\'s) and the password', () => {
    expect(postgresLogin(m(credential('postgres_credential', 'pg', { user: 'app' }), { password: 'pw' }), 'PH_user')).toEqual({ user: 'app', password: 'pw' });
    expect(postgresLogin(m(credential('postgres_credential', 'pg'), { password: 'pw' }), 'agent')).toEqual({ user: 'agent', password: 'pw' });
    expect(() => postgresLogin(m(credential('bearer_token', 'x'), { token: 't' }), 'a')).toThrow(/not a postgres_credential/);
  });

  it('clickhouse: user defaults to "default"', () => {
    expect(clickhouseLogin(m(credential('clickhouse_credential', 'ch'), { password: 'pw' }))).toEqual({ user: 'default', password: 'pw' });
  });

  describe('mtls against a real TLS server that requires a client certificate', () => {
    let dir: string;
    const pem = (f: string) => readFileSync(join(dir, f), 'utf8');
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'clawpatrol-mtls-'));
      const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
      run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=test-ca', '-days', '2');
      for (const [name, ext] of [['server', 'subjectAltName=IP:127.0.0.1'], ['client', 'extendedKeyUsage=clientAuth']] as const) {
        writeFileSync(join(dir, `${name}.ext`), ext + '\n');
        run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
        run('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
      }
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('is accepted with the injected cert/key/ca and refused without', async () => {
      const server = tls.createServer({ cert: pem('server.pem'), key: pem('server.key'), ca: pem('ca.pem'), requestCert: true, rejectUnauthorized: true }, (s) =>
        s.end(`cn=${(s.getPeerCertificate().subject as { CN?: string } | undefined)?.CN}`),
      );
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const { port } = server.address() as AddressInfo;
      const connect = (opts: tls.ConnectionOptions) =>
        new Promise<string>((resolve) => {
          const s = tls.connect({ host: '127.0.0.1', port, ...opts });
          let text = '';
          s.setEncoding('utf8');
          s.on('data', (d: string) => (text += d));
          s.on('end', () => resolve(text));
          s.on('error', (e) => resolve(`error: ${e.message}`));
        });
      const material = m(credential('mtls_credential', 'db'), { cert: pem('client.pem'), key: pem('client.key'), ca: pem('ca.pem') });
      const opts = mtlsOptions(material);
      expect(Object.keys(opts).sort()).toEqual(['ca', 'cert', 'key']);
      try {
        expect(await connect(opts)).toBe('cn=client');
        expect(await connect({ ca: pem('ca.pem') })).toMatch(/^error: .*(certificate required|alert)/i);
      } finally {
        server.close();
      }
      expect(mtlsOptions(m(credential('mtls_credential', 'db'), { cert: 'c', key: 'k' }))).toEqual({ cert: 'c', key: 'k' });
    });
  });
});

describe('presentedTokens', () => {
  it('finds placeholders in Authorization (any scheme, Basic decoded), x-api-key and configured headers', () => {
    expect(presentedTokens({ authorization: 'Bearer PH_a' })).toEqual(['PH_a']);
    expect(presentedTokens({ Authorization: 'token PH_b', 'X-Api-Key': 'PH_c' })).toEqual(['PH_b', 'PH_c']);
    expect(presentedTokens({ authorization: 'Basic ' + Buffer.from('PH_user:PH_pw').toString('base64') })).toEqual(['PH_user', 'PH_pw']);
    expect(presentedTokens({ authorization: 'Basic ' + Buffer.from(':PH_only').toString('base64') })).toEqual(['PH_only']);
    expect(presentedTokens({ 'private-token': 'Token PH_d', authorization: 'PH_raw' }, [{ header: 'PRIVATE-TOKEN', prefix: 'Token ' }])).toEqual(['PH_raw', 'PH_d']);
    expect(presentedTokens({ accept: 'x' })).toEqual([]);
  });
});
