/**
 * `clawpatrol secret …` through the built binary (run `npm run build` first).
 */
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { openStore } from '../../src/store/index.js';
import { openVault } from '../../src/vault/index.js';
import { credential, modelOf } from './model.js';
import { typeAtPrompt } from './support/cli-pty.js';
import { mkdtempSync, rmSync, writeFileSync, readdirSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const CANARY = 'cnry_' + randomBytes(16).toString('hex');
// Every test spawns the CLI a few times; on a loaded 2-core box one spawn can take seconds.
vi.setConfig({ testTimeout: 120_000 });

let root: string;
let stateDir: string;
let policy: string;

function cli(args: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  const r = spawnSync(process.execPath, ['dist/cli/main.js', ...args], {
    encoding: 'utf8',
    input: opts.input ?? '',
    env: { ...process.env, CLAWPATROL_STATE_DIR: '', CLAWPATROL_VAULT_KEY: '', ...opts.env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function policyText(dir: string): string {
  return `
schema_version = 1
gateway {
  state_dir = "${dir}"
  proxy { listen = "127.0.0.1:3128" }
}
endpoint "https" "github" { hosts = ["api.github.com"] }
endpoint "postgres" "pg" { host = "127.0.0.1:5432" }
credential "bearer_token" "github" { endpoint = https.github }
credential "postgres_credential" "pg" {
  endpoint = postgres.pg
  user     = "app"
}
credential "mtls_credential" "client" { endpoint = https.github }
`;
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'clawpatrol-secret-cli-'));
  stateDir = join(root, 'state');
  policy = join(root, 'gateway.hcl');
  writeFileSync(policy, policyText(stateDir));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('clawpatrol secret', () => {
  it('set reads the value from stdin, stores it sealed and never prints it', () => {
    const r = cli(['secret', 'set', 'github', '--config', policy], { input: CANARY + '\n' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`stored the token of bearer_token.github in the vault (${stateDir})\n`);
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    for (const f of readdirSync(stateDir)) expect(readFileSync(join(stateDir, f)).includes(Buffer.from(CANARY)), f).toBe(false);
  });

  it('list shows names, slots, set/unset, source and update time — never values', () => {
    const r = cli(['secret', 'list', '--config', policy], { env: { CLAWPATROL_SECRET_PG: 'from-env-pw' } });
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^CREDENTIAL\s+SLOT\s+STATUS\s+SOURCE\s+UPDATED$/);
    expect(lines.find((l) => l.startsWith('bearer_token.github'))).toMatch(/^bearer_token\.github\s+token\s+set\s+vault\s+\d{4}-\d{2}-\d{2}T/);
    expect(lines.find((l) => l.startsWith('postgres_credential.pg'))).toMatch(/password\s+set\s+env CLAWPATROL_SECRET_PG\s+-$/);
    expect(lines.find((l) => l.includes('mtls_credential.client') && l.includes(' ca '))).toMatch(/ca \(optional\)\s+unset\s+-\s+-$/);
    expect(r.stderr).toBe('1 credential without a required secret: mtls_credential.client\n');
    expect(r.stdout + r.stderr).not.toContain(CANARY);
    expect(r.stdout + r.stderr).not.toContain('from-env-pw');
    const j = cli(['secret', 'list', '--config', policy, '--json']);
    const parsed = JSON.parse(j.stdout) as { stateDir: string; slots: Array<Record<string, unknown>> };
    expect(parsed.stateDir).toBe(stateDir);
    expect(parsed.slots.find((s) => s.credential === 'bearer_token.github')).toMatchObject({ slot: 'token', set: true, source: 'vault' });
    expect(j.stdout).not.toContain(CANARY);
  });

  it('--from-file reads PEM for multi-slot credentials', () => {
    const pem = join(root, 'client.pem');
    writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const r = cli(['secret', 'set', 'mtls_credential.client', 'cert', '--from-file', pem, '--config', policy, '--json']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ credential: 'mtls_credential.client', slot: 'cert', stored: true, stateDir });
    expect(cli(['secret', 'set', 'client', 'cert', '--from-file', join(root, 'nope'), '--config', policy]).status).toBe(2);
  });

  it('usage errors exit 2: unknown credential (did you mean), missing slot, slot the type lacks, empty value', () => {
    const unknown = cli(['secret', 'set', 'githb', '--config', policy], { input: 'x' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toBe('clawpatrol secret set: unknown credential "githb"; did you mean "bearer_token.github"?\n');
    const slot = cli(['secret', 'set', 'github', 'password', '--config', policy], { input: 'x' });
    expect(slot.status).toBe(2);
    expect(slot.stderr).toBe('clawpatrol secret set: credential bearer_token.github (bearer_token) has no slot "password"; its slots: token\n');
    const several = cli(['secret', 'set', 'client', '--config', policy], { input: 'x' });
    expect(several.status).toBe(2);
    expect(several.stderr).toContain('has several slots; name one: cert, key, ca');
    const empty = cli(['secret', 'set', 'github', '--config', policy], { input: '' });
    expect(empty.status).toBe(2);
    expect(empty.stderr).toContain('no value given for bearer_token.github (token)');
    expect(cli(['secret', 'set', 'github']).status).toBe(2); // --config is required
    expect(cli(['secret', 'set', 'github', 'token', 'extra-arg', '--config', policy]).status).toBe(2);
  });

  it('a value on the command line is never taken as the secret', () => {
    // The only positional after the credential is the slot name; a token there is an unknown slot.
    const r = cli(['secret', 'set', 'github', 'ghp_on_the_command_line', '--config', policy], { input: 'x' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('has no slot "ghp_on_the_command_line"');
  });

  it('a policy that does not load is a usage error with its diagnostics', () => {
    const bad = join(root, 'bad.hcl');
    writeFileSync(bad, 'credential "bearer_token" "x" { endpoint = https.nowhere }\n');
    const r = cli(['secret', 'list', '--config', bad]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/error: .*bad\.hcl:1:/);
  });

  it('CLAWPATROL_STATE_DIR overrides the policy\'s state_dir', () => {
    const other = join(root, 'other-state');
    const r = cli(['secret', 'set', 'github', '--config', policy], { input: 'other-value', env: { CLAWPATROL_STATE_DIR: other } });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`(${other})`);
    expect(existsSync(join(other, 'vault.key'))).toBe(true);
  });

  it('the wrong vault key is a clear error (exit 1) that prints no secret', () => {
    const r = cli(['secret', 'set', 'github', '--config', policy], { input: 'y'.repeat(10), env: { CLAWPATROL_VAULT_KEY: randomBytes(32).toString('base64') } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^clawpatrol secret set: wrong vault key: this vault was sealed with key [0-9a-f]{16}/);
    expect(r.stderr).not.toContain(CANARY);
  });

  it('rm removes a credential\'s secrets; removing nothing exits 1', () => {
    expect(cli(['secret', 'rm', 'github', '--config', policy]).stdout).toBe('removed 1 secret of github\n');
    const again = cli(['secret', 'rm', 'github', '--config', policy]);
    expect(again.status).toBe(1);
    expect(again.stderr).toBe('clawpatrol secret rm: no secret stored for github\n');
    const list = cli(['secret', 'list', '--config', policy]);
    expect(list.stdout.split('\n').find((l) => l.startsWith('bearer_token.github'))).toMatch(/unset/);
  });

  it('on a terminal it prompts and reads the value without echoing it (real pty via script(1))', async () => {
    const typed = 'typed_' + randomBytes(8).toString('hex');
    const { code, screen } = await typeAtPrompt(['secret', 'set', 'github', '--config', policy], 'secret for bearer_token.github (token): ', typed + '\r', {
      CLAWPATROL_STATE_DIR: '',
      CLAWPATROL_VAULT_KEY: '',
    });
    expect(code).toBe(0);
    expect(screen).toContain('stored the token of bearer_token.github in the vault');
    expect(screen).not.toContain(typed);
    const store = await openStore({ stateDir });
    const vault = await openVault({ store, stateDir, model: () => modelOf(credential('bearer_token', 'github')), env: {}, key: 'optional', refreshMs: 0 });
    expect(vault.resolve('bearer_token.github')).toMatchObject({ slots: { token: typed } });
    await store.close();
  });

  it('--help documents stdin and exit codes', () => {
    const r = cli(['secret', 'set', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('never from arguments');
    expect(r.stdout).toContain('Exit status: 0 stored, 1 vault error, 2 usage error.');
  });
});
