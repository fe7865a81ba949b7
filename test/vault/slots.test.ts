/**
 * The `app` slot of `slack_tokens` (Slack app-level token, Socket Mode): in the
 * slot table, through the vault (sealed, resolved, scrubbed, from the
 * environment) and through the built `clawpatrol secret` CLI (run
 * `npm run build` first).
 */
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openStore, type Store } from '../../src/store/index.js';
import { openVault } from '../../src/vault/index.js';
import { CREDENTIAL_SLOTS, invalidSlotValue } from '../../src/vault/slots.js';
import { credential, modelOf } from './model.js';

// The CLI test spawns the binary a few times; on a loaded 2-core box one spawn can take seconds.
vi.setConfig({ testTimeout: 120_000 });

const APP_TOKEN = 'xapp-1-A0CANARY-' + randomBytes(12).toString('hex');
const slack = credential('slack_tokens', 'ops');
const model = modelOf(slack);

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'clawpatrol-slots-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('slack_tokens app slot', () => {
  it('is an optional slot of slack_tokens only', () => {
    expect(CREDENTIAL_SLOTS.slack_tokens).toEqual({ slots: ['bot', 'signing_secret', 'app'], required: ['bot'] });
    for (const [type, spec] of Object.entries(CREDENTIAL_SLOTS)) {
      if (type !== 'slack_tokens') expect(spec.slots, type).not.toContain('app');
    }
  });

  it('accepts an app-level token and refuses anything else, naming what it expects', () => {
    expect(invalidSlotValue('app', APP_TOKEN)).toBeNull();
    expect(invalidSlotValue('app', 'xoxb-123-bot-token')).toBe('slot app expects a Slack app-level token (xapp-…)');
    expect(invalidSlotValue('app', 'xapp-1\nX-Evil: 1')).toMatch(/takes a single line/);
    // The prefix check is the app slot's own: other slots keep taking any single line.
    expect(invalidSlotValue('bot', 'anything')).toBeNull();
  });

  describe('through the vault', () => {
    let store: Store;
    let stateDir: string;
    beforeAll(async () => {
      stateDir = join(root, 'vault-state');
      store = await openStore({ stateDir });
    });
    afterAll(() => store.close());

    it('is sealed at rest, resolved for the approver, and scrubbed like every secret', async () => {
      const vault = await openVault({ store, stateDir, model: () => model, env: {}, refreshMs: 0 });
      try {
        await vault.set('ops', 'bot', 'xoxb-1');
        await vault.set('ops', 'app', APP_TOKEN);
        await expect(vault.set('ops', 'app', 'xoxb-swapped')).rejects.toThrow('cannot store the secret of slack_tokens.ops (slot app): slot app expects a Slack app-level token (xapp-…)');
        expect(vault.resolve('slack_tokens.ops')).toEqual({ credential: slack, slots: { bot: 'xoxb-1', app: APP_TOKEN } });
        expect(vault.allValues()).toContain(APP_TOKEN);
        for (const f of readdirSync(stateDir)) expect(readFileSync(join(stateDir, f)).includes(Buffer.from(APP_TOKEN)), f).toBe(false);
      } finally {
        await vault.close();
      }
    });

    it('reads CLAWPATROL_SECRET_<NAME>_APP, and refuses a value there that is not an app token', async () => {
      const dir = join(root, 'env-state');
      const s = await openStore({ stateDir: dir });
      const env = { CLAWPATROL_SECRET_OPS: 'xoxb-env', CLAWPATROL_SECRET_OPS_APP: APP_TOKEN };
      const vault = await openVault({ store: s, stateDir: dir, model: () => model, env, refreshMs: 0 });
      expect(vault.resolve('slack_tokens.ops')).toMatchObject({ slots: { bot: 'xoxb-env', app: APP_TOKEN } });
      await vault.close();
      const wrong = await openVault({ store: s, stateDir: dir, model: () => model, env: { ...env, CLAWPATROL_SECRET_OPS_APP: 'xoxb-env' }, refreshMs: 0 });
      expect(wrong.resolve('slack_tokens.ops')).toEqual({
        missing: 'credential slack_tokens.ops: CLAWPATROL_SECRET_OPS_APP: slot app expects a Slack app-level token (xapp-…)',
      });
      await wrong.close();
      await s.close();
    });
  });

  it('clawpatrol secret set <cred> app stores it; list shows the slot as optional; a bot token there is refused', () => {
    const stateDir = join(root, 'cli-state');
    const policy = join(root, 'slack.hcl');
    writeFileSync(policy, `gateway {\n  state_dir = "${stateDir}"\n  proxy { listen = "127.0.0.1:3128" }\n}\ncredential "slack_tokens" "ops" {}\n`);
    const cli = (args: string[], input = '') =>
      spawnSync(process.execPath, ['dist/cli/main.js', 'secret', ...args, '--config', policy], {
        encoding: 'utf8',
        input,
        env: { ...process.env, CLAWPATROL_STATE_DIR: '', CLAWPATROL_VAULT_KEY: '' },
      });
    const set = cli(['set', 'ops', 'app'], APP_TOKEN + '\n');
    expect(set.stderr).toBe('');
    expect(set.stdout).toBe(`stored the app of slack_tokens.ops in the vault (${stateDir})\n`);
    expect(set.status).toBe(0);
    const list = cli(['list']);
    expect(list.stdout.split('\n').find((l) => l.startsWith('slack_tokens.ops') && l.includes(' app '))).toMatch(/app \(optional\)\s+set\s+vault\s+\d{4}-/);
    expect(list.stdout + list.stderr).not.toContain(APP_TOKEN);
    const wrong = cli(['set', 'ops', 'app'], 'xoxb-123\n');
    expect(wrong.stderr).toBe('clawpatrol secret set: cannot store the secret of slack_tokens.ops (slot app): slot app expects a Slack app-level token (xapp-…)\n');
    expect(wrong.status).toBe(2);
  });
});
