/**
 * Adversarial edges of the scrubber and the secret input path: encodings real
 * encoders produce that a simpler form list misses, data shapes that once
 * skipped scrubbing, and input that once cost quadratic time.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { spawn, execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Scrubber, secretForms } from '../../src/vault/scrub.js';
import { normaliseSecretInput } from '../../src/vault/slots.js';
import { openStore } from '../../src/store/index.js';
import { openVault, VaultError } from '../../src/vault/index.js';
import { loadVaultKey } from '../../src/vault/key.js';
import { credential, modelOf } from './model.js';
import { typeAtPrompt } from './support/cli-pty.js';
import { MAX_SECRET_INPUT_BYTES } from '../../cli/secret.js';

/** A password with every character form encoders treat differently from encodeURIComponent. */
const PUNCTUATED = "pa~ss!wo(rd)*it's x";

describe('scrubber: URL form encodings as real encoders write them', () => {
  const s = new Scrubber([PUNCTUATED]);

  it('WHATWG URLSearchParams / Java URLEncoder (`~ ! \' ( )` encoded, `*` kept, space as +)', () => {
    const body = new URLSearchParams({ user: 'ops', password: PUNCTUATED }).toString();
    const clean = s.scrubText(body);
    expect(clean).toMatch(/^user=ops&password=\*+$/);
    expect(clean.length).toBe(body.length);
  });

  it('PHP urlencode (also `*` and `~` encoded, space as +), both hex cases', () => {
    const php = new URLSearchParams({ p: PUNCTUATED }).toString().slice(2).replace(/\*/g, '%2A');
    for (const form of [php, php.replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase())]) {
      expect(s.scrubText(`p=${form}&x=1`)).toBe(`p=${'*'.repeat(form.length)}&x=1`);
    }
  });
});

describe('scrubber: scrubDeep on deeply nested values', () => {
  const SECRET = 'deep-secret-0123456789';
  const s = new Scrubber([SECRET]);

  it('a secret nested deeper than the recursion limit is still overwritten', () => {
    let value: unknown = { leaf: SECRET, [SECRET]: 1 };
    for (let i = 0; i < 200; i++) value = i % 2 ? { a: value } : [value];
    const text = JSON.stringify(s.scrubDeep(value));
    expect(text).not.toContain(SECRET);
    expect(text).toContain('*'.repeat(SECRET.length));
  });

  it('a value too deep even to serialise is dropped with a marker, not passed through or crashing', () => {
    let value: unknown = { leaf: SECRET };
    for (let i = 0; i < 200_000; i++) value = { a: value };
    const text = JSON.stringify(s.scrubDeep({ top: { a: value } }));
    expect(text).not.toContain(SECRET);
    expect(text).toContain('nested too deeply to scrub');
  });
});

describe('scrubber: JSON escapes as other encoders write them', () => {
  const SECRET = 'tok/é😀-0123';
  const s = new Scrubber([SECRET]);
  const asciiOnly = (hex: (h: string) => string) =>
    JSON.stringify(SECRET).slice(1, -1).replace(/[\u007f-\uffff]/g, (c) => '\\u' + hex(c.charCodeAt(0).toString(16).padStart(4, '0')));

  it("PHP json_encode's default: `\\/` and non-ASCII as lower-case `\\uXXXX` together", () => {
    const php = asciiOnly((h) => h).replace(/\//g, '\\/');
    expect(php).toBe('tok\\/\\u00e9\\ud83d\\ude00-0123');
    expect(s.scrubText(`{"t":"${php}"}`)).toBe(`{"t":"${'*'.repeat(php.length)}"}`);
  });

  it("Jackson's ESCAPE_NON_ASCII: non-ASCII as upper-case `\\uXXXX` (surrogate pairs too)", () => {
    const jackson = asciiOnly((h) => h.toUpperCase());
    expect(jackson).toContain('\\uD83D\\uDE00');
    expect(s.scrubText(`{"t":"${jackson}"}`)).toBe(`{"t":"${'*'.repeat(jackson.length)}"}`);
  });
});

describe('secret input normalisation', () => {
  it('strips every trailing CR and LF and keeps inner ones', () => {
    expect(normaliseSecretInput('tok\r\n\n\r')).toBe('tok');
    expect(normaliseSecretInput('a\nb\r\n')).toBe('a\nb');
    expect(normaliseSecretInput('\n\n')).toBe('');
  });

  it('a long run of line breaks before the end costs linear time (the test timeout catches a quadratic scan)', () => {
    const raw = '\n'.repeat(150_000) + 'x';
    expect(normaliseSecretInput(raw)).toBe(raw);
  });
});

describe('clawpatrol secret set: reading the value (run `npm run build` first)', () => {
  let root: string;
  let stateDir: string;
  let policy: string;
  const env = { CLAWPATROL_STATE_DIR: '', CLAWPATROL_VAULT_KEY: '' };
  const args = () => ['secret', 'set', 'github', '--config', policy];
  const PROMPT = 'secret for bearer_token.github (token): ';

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'clawpatrol-attack-edges-'));
    stateDir = join(root, 'state');
    policy = join(root, 'gateway.hcl');
    writeFileSync(
      policy,
      `schema_version = 1
gateway {
  state_dir = "${stateDir}"
  proxy { listen = "127.0.0.1:3128" }
}
endpoint "https" "github" { hosts = ["api.github.com"] }
credential "bearer_token" "github" { endpoint = https.github }
`,
    );
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  async function stored(): Promise<unknown> {
    const store = await openStore({ stateDir });
    try {
      const vault = await openVault({ store, stateDir, model: () => modelOf(credential('bearer_token', 'github')), env: {}, key: 'optional', refreshMs: 0 });
      return vault.resolve('bearer_token.github');
    } finally {
      await store.close();
    }
  }

  it('backspace deletes a whole character, also one outside the BMP (an emoji is two UTF-16 units)', async () => {
    const { code, screen } = await typeAtPrompt(args(), PROMPT, 'tok-é😀\u007f\u007fe-1234\r', env);
    expect(code).toBe(0);
    expect(screen).not.toContain('tok-');
    expect(await stored()).toMatchObject({ slots: { token: 'tok-e-1234' } });
  }, 120_000);

  /** The CLI with stdin from `stdin`; killed (code null) if it has not exited within a minute. */
  async function setFrom(stdin: number | 'pipe', extra: string[] = []): Promise<{ code: number | null; stderr: string }> {
    const child = spawn(process.execPath, ['dist/cli/main.js', ...args(), ...extra], { env: { ...process.env, ...env }, stdio: [stdin, 'pipe', 'pipe'], timeout: 60_000 });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    return { code, stderr };
  }

  it('input that never ends (a pipe from /dev/zero, --from-file /dev/zero) is refused at 1 MiB, stores nothing', async () => {
    const before = await stored();
    const zero = openSync('/dev/zero', 'r');
    try {
      for (const r of [await setFrom(zero), await setFrom('pipe', ['--from-file', '/dev/zero'])]) {
        expect(r.code).toBe(2);
        expect(r.stderr).toBe(`clawpatrol secret set: the value is longer than ${MAX_SECRET_INPUT_BYTES} bytes; a secret is at most 1024 KiB\n`);
      }
    } finally {
      closeSync(zero);
    }
    expect(await stored()).toEqual(before);
  }, 150_000);

  it('Ctrl-C at the prompt stores nothing and exits 2', async () => {
    const before = await stored();
    const { code, screen } = await typeAtPrompt(args(), PROMPT, 'half-typed\u0003', env);
    expect(code).toBe(2);
    expect(screen).toContain('clawpatrol secret set: interrupted');
    expect(screen).not.toContain('half-typed');
    expect(await stored()).toEqual(before);
  }, 120_000);
});

describe('scrubber: .NET System.Text.Json default escaping', () => {
  it("`+ & ' < > \\` \"` and non-ASCII as upper-case `\\u00XX` (a base64 token's + included)", () => {
    const secret = 'ab+cd/ef"g\'h<é>';
    const s = new Scrubber([secret]);
    // What JavaScriptEncoder.Default writes for the string's content.
    const dotnet = 'ab\\u002Bcd/ef\\u0022g\\u0027h\\u003C\\u00E9\\u003E';
    expect(s.scrubText(`{"t":"${dotnet}"}`)).toBe(`{"t":"${'*'.repeat(dotnet.length)}"}`);
  });
});

describe('scrubber: every form of a non-ASCII secret, cut into three chunks at every pair of offsets', () => {
  it('streamed through one cursor equals the one-shot result, with no byte of the form left', () => {
    const secret = 'k😀y/+é~ &';
    const s = new Scrubber([secret]);
    for (const form of secretForms(secret)) {
      const input = Buffer.concat([Buffer.from('<'), form, Buffer.from('>')]);
      const expected = s.scrubBuffer(input);
      expect(expected.subarray(1, -1).every((b) => b === 0x2a), form.toString()).toBe(true);
      for (let i = 0; i <= input.length; i++) {
        for (let j = i; j <= input.length; j++) {
          const cursor = s.cursor();
          const out = Buffer.concat([cursor.push(input.subarray(0, i)), cursor.push(input.subarray(i, j)), cursor.push(input.subarray(j)), cursor.end()]);
          if (!out.equals(expected)) expect.fail(`${form.toString()} cut at ${i},${j}: ${out.toString()}`);
        }
      }
    }
  });
});

describe('vault key file that is not a regular file', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'clawpatrol-keyfile-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a FIFO or a directory named vault.key is a clear VaultError, never a read that blocks forever', () => {
    // The directory first: should the check regress, the test fails there instead of blocking on the FIFO.
    for (const make of ['dir', 'fifo'] as const) {
      const stateDir = join(dir, make);
      mkdirSync(stateDir, { mode: 0o700 });
      const keyPath = join(stateDir, 'vault.key');
      if (make === 'fifo') execFileSync('mkfifo', ['-m', '600', keyPath]);
      else mkdirSync(keyPath, { mode: 0o700 });
      expect(() => loadVaultKey(stateDir, {})).toThrow(new VaultError(`key file ${keyPath} is not a regular file; it must hold the vault key as base64`));
    }
  });
});
