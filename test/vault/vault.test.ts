import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, rmSync, readdirSync, readFileSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { openStore, type Store } from '../../src/store/index.js';
import { openVault, VaultError, type Vault } from '../../src/vault/index.js';
import { credential, modelOf } from './model.js';

const CANARY = 'cnry_' + randomBytes(12).toString('hex');
const PEM_CERT = '-----BEGIN CERTIFICATE-----\nMIIBfake' + CANARY + '\n-----END CERTIFICATE-----';
const PEM_KEY = '-----BEGIN PRIVATE KEY-----\nMIIBfake\n-----END PRIVATE KEY-----';

const github = credential('bearer_token', 'github');
const apiKey = credential('header_token', 'internal-api', { header: 'X-Api-Token', prefix: 'Token ' });
const basic = credential('basic_auth', 'jira', { username: 'bot' });
const anthropic = credential('anthropic_manual_key', 'claude');
const slack = credential('slack_tokens', 'ops');
const pg = credential('postgres_credential', 'pg', { user: 'app' });
const ch = credential('clickhouse_credential', 'ch', { user: 'default' });
const mtls = credential('mtls_credential', 'db-client');
const pass = credential('passthrough', 'open');
const model = modelOf(github, apiKey, basic, anthropic, slack, pg, ch, mtls, pass);

/** Every byte form a canary could be stored in if it leaked. */
function forms(secret: string): string[] {
  const b = Buffer.from(secret);
  return [secret, b.toString('base64'), b.toString('base64url'), b.toString('hex'), b.toString('utf16le')];
}

function scanDir(dir: string, secret: string): string[] {
  const hits: string[] = [];
  for (const f of readdirSync(dir)) {
    const bytes = readFileSync(join(dir, f));
    for (const form of forms(secret)) if (bytes.includes(Buffer.from(form, 'latin1'))) hits.push(`${f}: ${form}`);
  }
  return hits;
}

describe('vault', () => {
  let root: string;
  let stateDir: string;
  let store: Store;
  const open = (over: Partial<Parameters<typeof openVault>[0]> = {}) =>
    openVault({ store, stateDir, model: () => model, env: {}, refreshMs: 0, ...over });

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'clawpatrol-vault-'));
    stateDir = join(root, 'state');
    store = await openStore({ stateDir });
  });
  afterEach(async () => {
    await store.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('creates a 0600 base64 key file on first use and round-trips every credential type', async () => {
    const vault = await open();
    const keyFile = join(stateDir, 'vault.key');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64')).toHaveLength(32);
    await vault.set('bearer_token.github', undefined, 'ghp_' + CANARY);
    await vault.set('internal-api', 'token', 'tok-1');
    await vault.set('jira', undefined, 'jira-pw');
    await vault.set('claude', undefined, 'sk-ant-1');
    await vault.set('ops', 'bot', 'xoxb-1');
    await vault.set('pg', undefined, 'pg pw with spaces');
    await vault.set('ch', undefined, 'ch-pw');
    await vault.set('db-client', 'cert', PEM_CERT);
    await vault.set('db-client', 'key', PEM_KEY);
    expect(vault.resolve('bearer_token.github')).toEqual({ credential: github, slots: { token: 'ghp_' + CANARY } });
    expect(vault.resolve('header_token.internal-api')).toMatchObject({ slots: { token: 'tok-1' } });
    expect(vault.resolve('basic_auth.jira')).toMatchObject({ slots: { password: 'jira-pw' } });
    expect(vault.resolve('anthropic_manual_key.claude')).toMatchObject({ slots: { token: 'sk-ant-1' } });
    expect(vault.resolve('slack_tokens.ops')).toEqual({ credential: slack, slots: { bot: 'xoxb-1' } });
    expect(vault.resolve('postgres_credential.pg')).toMatchObject({ slots: { password: 'pg pw with spaces' } });
    expect(vault.resolve('clickhouse_credential.ch')).toMatchObject({ slots: { password: 'ch-pw' } });
    expect(vault.resolve('mtls_credential.db-client')).toEqual({ credential: mtls, slots: { cert: PEM_CERT, key: PEM_KEY } });
    expect(vault.resolve('passthrough.open')).toEqual({ credential: pass, slots: {} });
    expect(new Set(vault.allValues())).toEqual(
      new Set(['ghp_' + CANARY, 'tok-1', 'jira-pw', 'sk-ant-1', 'xoxb-1', 'pg pw with spaces', 'ch-pw', PEM_CERT, PEM_KEY]),
    );
    vault.close();
  });

  it('a missing secret is a clear "has no secret", naming the credential (and the slot when partial)', async () => {
    const vault = await open();
    expect(vault.resolve('bearer_token.github')).toEqual({ missing: 'credential bearer_token.github has no secret' });
    await vault.set('db-client', 'cert', PEM_CERT);
    expect(vault.resolve('mtls_credential.db-client')).toEqual({
      missing: 'credential mtls_credential.db-client has no secret for slot key',
    });
    expect(vault.resolve('bearer_token.nope')).toEqual({ missing: 'credential bearer_token.nope is not defined in the policy' });
  });

  it('keeps the canary out of the database, its WAL, and every other file next to the key', async () => {
    const vault = await open();
    await vault.set('github', undefined, CANARY);
    await vault.set('db-client', 'cert', PEM_CERT);
    await vault.set('db-client', 'key', PEM_KEY);
    expect(vault.resolve('bearer_token.github')).toMatchObject({ slots: { token: CANARY } });
    // The WAL still holds the pages written above (no checkpoint yet): scan it too.
    const files = readdirSync(stateDir).sort();
    expect(files).toEqual(expect.arrayContaining(['state.db', 'state.db-wal', 'vault.key']));
    expect(scanDir(stateDir, CANARY)).toEqual([]);
    await store.close();
    expect(scanDir(stateDir, CANARY)).toEqual([]);
    store = await openStore({ stateDir });
  });

  it('sealed values are bound to their credential and slot: moving one fails to open', async () => {
    const vault = await open();
    await vault.set('github', undefined, CANARY);
    await vault.set('claude', undefined, 'other');
    const db = new Database(join(stateDir, 'state.db'));
    // Swap the sealed blobs of two credentials: each still has a valid tag under the key, but not under its AAD.
    db.exec(`
      UPDATE secrets SET owner = 'tmp' WHERE owner = 'bearer_token.github';
      UPDATE secrets SET owner = 'bearer_token.github', slot = 'token' WHERE owner = 'anthropic_manual_key.claude';
      UPDATE secrets SET owner = 'anthropic_manual_key.claude' WHERE owner = 'tmp';
      UPDATE counters SET value = value + 1 WHERE name = 'secrets';`);
    db.close();
    await vault.refresh();
    const r = vault.resolve('anthropic_manual_key.claude');
    expect(r).toEqual({
      missing:
        'credential anthropic_manual_key.claude: the secret of anthropic_manual_key.claude (slot token) cannot be decrypted: the vault is corrupted or the entry was tampered with',
    });
    expect(JSON.stringify(r)).not.toContain(CANARY);
  });

  it('a corrupted entry is a clear error with no partial plaintext', async () => {
    const vault = await open();
    const long = CANARY.repeat(8);
    await vault.set('github', undefined, long);
    const db = new Database(join(stateDir, 'state.db'));
    const row = db.prepare("SELECT sealed FROM secrets WHERE owner = 'bearer_token.github'").get() as { sealed: Buffer };
    for (const at of [0, 5, row.sealed.length - 20, row.sealed.length - 1]) {
      const bad = Buffer.from(row.sealed);
      bad[at]! ^= 0x01;
      db.prepare("UPDATE secrets SET sealed = ? WHERE owner = 'bearer_token.github'").run(bad);
      db.exec("UPDATE counters SET value = value + 1 WHERE name = 'secrets'");
      await vault.refresh();
      const r = vault.resolve('bearer_token.github');
      expect('missing' in r && r.missing).toMatch(/cannot be decrypted: the vault is corrupted or the entry was tampered with/);
      expect(JSON.stringify(r)).not.toContain(CANARY.slice(0, 8));
      expect(vault.allValues()).toEqual([]);
    }
    db.close();
  });

  it('a corrupted database file is refused with a clear error', async () => {
    await (await open()).set('github', undefined, CANARY);
    await store.close();
    for (const f of readdirSync(stateDir)) if (f.startsWith('state.db-')) rmSync(join(stateDir, f));
    const path = join(stateDir, 'state.db');
    const bytes = readFileSync(path);
    randomBytes(1024).copy(bytes, 0);
    writeFileSync(path, bytes);
    const err = await openStore({ stateDir }).then(() => null, (e: unknown) => e as Error);
    expect(err?.message).toMatch(new RegExp(`cannot (open|use) ${path.replace(/[.]/g, '\\.')}: .*not a database`));
    expect(err?.message).not.toContain(CANARY);
    store = await openStore({ stateDir: join(root, 'other') });
  });

  it('the wrong key is refused up front, naming both key ids, never decrypting', async () => {
    const first = await open();
    await first.set('github', undefined, CANARY);
    const realId = first.keyId!;
    const wrong = randomBytes(32).toString('base64');
    const err = await open({ env: { CLAWPATROL_VAULT_KEY: wrong } }).then(() => null, (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(VaultError);
    expect(err!.message).toContain(`wrong vault key: this vault was sealed with key ${realId}`);
    expect(err!.message).toContain('environment variable CLAWPATROL_VAULT_KEY');
    expect(err!.message).not.toContain(wrong);
    // Replacing the key file is caught the same way.
    writeFileSync(join(stateDir, 'vault.key'), wrong + '\n', { mode: 0o600 });
    await expect(open()).rejects.toThrow(/wrong vault key/);
  });

  it('CLAWPATROL_VAULT_KEY accepts the key as base64 or base64url and rejects anything else without echoing it', async () => {
    const key = randomBytes(32);
    const a = await open({ env: { CLAWPATROL_VAULT_KEY: key.toString('base64') } });
    await a.set('github', undefined, CANARY);
    const b = await open({ env: { CLAWPATROL_VAULT_KEY: key.toString('base64url') } });
    expect(b.resolve('bearer_token.github')).toMatchObject({ slots: { token: CANARY } });
    // The env key wins over (and never creates) a key file.
    expect(readdirSync(stateDir)).not.toContain('vault.key');
    await expect(open({ env: { CLAWPATROL_VAULT_KEY: 'short' } })).rejects.toThrow(
      'environment variable CLAWPATROL_VAULT_KEY decodes to 3 bytes; the vault key must be exactly 32 bytes',
    );
    await expect(open({ env: { CLAWPATROL_VAULT_KEY: 'not base64 at all!' } })).rejects.toThrow(/is not base64/);
  });

  it('refuses to start without the key once secrets exist, and never makes a new one over them', async () => {
    await (await open()).set('github', undefined, CANARY);
    rmSync(join(stateDir, 'vault.key'));
    await expect(open()).rejects.toThrow(/the vault holds sealed secrets .* but no vault key was found/);
    expect(readdirSync(stateDir)).not.toContain('vault.key');
    // Listing works without the key; opening values does not.
    const keyless = await open({ key: 'optional' });
    expect((await keyless.status()).find((s) => s.credential === 'bearer_token.github')).toMatchObject({ set: true, source: 'vault' });
    expect(keyless.resolve('bearer_token.github')).toEqual({
      missing: 'credential bearer_token.github: the vault key is not available',
    });
  });

  it('refuses a key file others can read', async () => {
    await open();
    chmodSync(join(stateDir, 'vault.key'), 0o644);
    await expect(open()).rejects.toThrow(`chmod 600 ${join(stateDir, 'vault.key')}`);
  });

  it('rejects values that would break a header or handshake, and non-PEM in PEM slots', async () => {
    const vault = await open();
    await expect(vault.set('github', undefined, 'abc\r\nX-Evil: 1')).rejects.toThrow(/takes a single line/);
    await expect(vault.set('github', undefined, '')).rejects.toThrow(/the value is empty/);
    await expect(vault.set('github', undefined, 'a\0b')).rejects.toThrow(/NUL/);
    await expect(vault.set('db-client', 'cert', 'not pem')).rejects.toThrow(/expects PEM text/);
  });

  it('unknown credentials get a did-you-mean; wrong slots list the type\'s slots', async () => {
    const vault = await open();
    await expect(vault.set('bearer_token.githb', undefined, 'x')).rejects.toThrow(
      'unknown credential "bearer_token.githb"; did you mean "bearer_token.github"?',
    );
    await expect(vault.set('gihtub', undefined, 'x')).rejects.toThrow('did you mean "bearer_token.github"?');
    await expect(vault.set('zzzzzzzzzzzz', undefined, 'x')).rejects.toThrow(/unknown credential "zzzzzzzzzzzz" \(known: bearer_token.github/);
    await expect(vault.set('github', 'password', 'x')).rejects.toThrow(
      'credential bearer_token.github (bearer_token) has no slot "password"; its slots: token',
    );
    await expect(vault.set('db-client', undefined, PEM_CERT)).rejects.toThrow('has several slots; name one: cert, key, ca');
    await expect(vault.set('open', undefined, 'x')).rejects.toThrow(/holds no secret/);
  });

  it('falls back to CLAWPATROL_SECRET_<NAME>[_<SLOT>] (and @file), after the vault', async () => {
    const file = join(root, 'pw.txt');
    writeFileSync(file, 'from-file\n');
    const env = {
      CLAWPATROL_SECRET_GITHUB: 'env-bare',
      CLAWPATROL_SECRET_INTERNAL_API_TOKEN: 'env-slot',
      CLAWPATROL_SECRET_JIRA: '@' + file,
      CLAWPATROL_SECRET_CLAUDE: '@@literal-at',
      CLAWPATROL_SECRET_OPS_SIGNING_SECRET: 'sig',
      CLAWPATROL_SECRET_OPS: 'xoxb-env',
      CLAWPATROL_SECRET_PG_PASSWORD: '@' + join(root, 'missing'),
      CLAWPATROL_SECRET_CH: 'bad\nvalue',
    };
    const vault = await open({ env });
    expect(vault.resolve('bearer_token.github')).toMatchObject({ slots: { token: 'env-bare' } });
    expect(vault.resolve('header_token.internal-api')).toMatchObject({ slots: { token: 'env-slot' } });
    expect(vault.resolve('basic_auth.jira')).toMatchObject({ slots: { password: 'from-file' } });
    expect(vault.resolve('anthropic_manual_key.claude')).toMatchObject({ slots: { token: '@literal-at' } });
    expect(vault.resolve('slack_tokens.ops')).toMatchObject({ slots: { bot: 'xoxb-env', signing_secret: 'sig' } });
    expect(vault.resolve('postgres_credential.pg')).toEqual({
      missing: `credential postgres_credential.pg: CLAWPATROL_SECRET_PG_PASSWORD names file ${join(root, 'missing')}, which cannot be read (ENOENT)`,
    });
    expect(vault.resolve('clickhouse_credential.ch')).toEqual({
      missing: 'credential clickhouse_credential.ch: CLAWPATROL_SECRET_CH: slot password takes a single line; the value contains a line break',
    });
    // A non-primary slot never reads the bare variable.
    expect(vault.resolve('mtls_credential.db-client')).toEqual({ missing: 'credential mtls_credential.db-client has no secret' });
    // The vault wins over the environment.
    await vault.set('github', undefined, 'from-vault');
    expect(vault.resolve('bearer_token.github')).toMatchObject({ slots: { token: 'from-vault' } });
    expect(vault.allValues()).toEqual(expect.arrayContaining(['from-vault', 'env-slot', 'from-file', 'xoxb-env', 'sig']));
    expect(vault.allValues()).not.toContain('env-bare');
    const status = (await vault.status());
    expect(status.find((s) => s.credential === 'basic_auth.jira')).toMatchObject({ set: true, source: 'env', envVar: 'CLAWPATROL_SECRET_JIRA' });
    expect(status.find((s) => s.credential === 'bearer_token.github')).toMatchObject({ set: true, source: 'vault' });
  });

  it('ignores an environment variable two credential slots map to', async () => {
    const a = credential('bearer_token', 'svc');
    const b = credential('header_token', 'svc', { header: 'X-T' });
    const c = credential('bearer_token', 'other');
    const ambiguousModel = modelOf(a, b, c);
    const vault = await open({
      model: () => ambiguousModel,
      env: { CLAWPATROL_SECRET_SVC: 'shared', CLAWPATROL_SECRET_OTHER: 'fine' },
    });
    expect(vault.resolve('bearer_token.svc')).toEqual({ missing: 'credential bearer_token.svc has no secret' });
    expect(vault.resolve('bearer_token.other')).toMatchObject({ slots: { token: 'fine' } });
    expect((await vault.status()).find((s) => s.credential === 'bearer_token.svc')?.ambiguousEnv).toEqual([
      'CLAWPATROL_SECRET_SVC_TOKEN',
      'CLAWPATROL_SECRET_SVC',
    ]);
  });

  it('sees secrets another process set (refresh) and credentials a reload added (model getter)', async () => {
    let current = modelOf(github);
    const gateway = await open({ model: () => current });
    const cli = await open({ model: () => modelOf(github, anthropic) });
    await cli.set('github', undefined, 'rotated');
    expect(gateway.resolve('bearer_token.github')).toEqual({ missing: 'credential bearer_token.github has no secret' });
    await gateway.refresh();
    expect(gateway.resolve('bearer_token.github')).toMatchObject({ slots: { token: 'rotated' } });
    await cli.set('claude', undefined, 'k2');
    await gateway.refresh();
    expect(gateway.resolve('anthropic_manual_key.claude')).toEqual({
      missing: 'credential anthropic_manual_key.claude is not defined in the policy',
    });
    current = modelOf(github, anthropic);
    expect(gateway.resolve('anthropic_manual_key.claude')).toMatchObject({ slots: { token: 'k2' } });
    expect(gateway.allValues()).toEqual(expect.arrayContaining(['rotated', 'k2']));
    await cli.remove('github');
    await gateway.refresh();
    expect(gateway.resolve('bearer_token.github')).toEqual({ missing: 'credential bearer_token.github has no secret' });
  });

  it('polls for changes on its own when refreshMs is set', async () => {
    const gateway = await open({ refreshMs: 20 });
    const cli = await open();
    await cli.set('github', undefined, 'polled');
    await expect.poll(() => gateway.resolve('bearer_token.github'), { timeout: 2000 }).toMatchObject({ slots: { token: 'polled' } });
    gateway.close();
  });

  it('status lists every slot without values, and vault entries the policy dropped', async () => {
    const vault = await open();
    await vault.set('github', undefined, CANARY);
    const wider = await open({ model: () => modelOf(github, credential('bearer_token', 'retired')) });
    await wider.set('retired', undefined, 'old');
    const status = (await vault.status());
    expect(JSON.stringify(status)).not.toContain(CANARY);
    expect(status.find((s) => s.credential === 'bearer_token.github')).toMatchObject({ slot: 'token', required: true, set: true, source: 'vault' });
    expect(status.find((s) => s.credential === 'mtls_credential.db-client' && s.slot === 'ca')).toMatchObject({ required: false, set: false, source: null });
    expect(status.find((s) => s.credential === 'bearer_token.retired')).toMatchObject({ orphan: true, set: true });
    expect(await vault.remove('bearer_token.retired')).toBe(1);
    expect((await vault.status()).find((s) => s.credential === 'bearer_token.retired')).toBeUndefined();
    expect(vault.allValues()).toEqual([CANARY]);
  });

  it('internal secrets (the CA key) are sealed too but never offered for injection or listing', async () => {
    const vault = await open();
    await vault.setInternal('gateway.ca', 'key', PEM_KEY + CANARY);
    expect(vault.getInternal('gateway.ca', 'key')).toBe(PEM_KEY + CANARY);
    expect(vault.allValues()).toEqual([]);
    expect((await vault.status()).some((s) => s.credential === 'gateway.ca')).toBe(false);
    expect(() => vault.getInternal('bearer_token.github', 'token')).toThrow(/internal vault owner/);
    expect(scanDir(stateDir, CANARY)).toEqual([]);
  });
});
