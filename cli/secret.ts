/**
 * `clawpatrol secret set|list|rm` — the secrets credentials inject, sealed in
 * the vault of the policy's state dir (`gateway.state_dir`, overridden by
 * CLAWPATROL_STATE_DIR). Values come from stdin or --from-file, never from
 * argv, and are never printed.
 *
 * Exit status: 0 done, 1 failed (vault key problems, nothing to remove),
 * 2 usage (bad arguments, unknown credential or slot, unusable policy).
 */
import type { Command } from 'commander';
import { openSync, readSync, closeSync } from 'node:fs';
import { loadPolicy, formatDiagnostic, type PolicyModel } from '../src/policy/index.js';
import { openStoreFor, stateDirFor, type Store } from '../src/store/index.js';
import {
  openVault,
  normaliseSecretInput,
  VaultUsageError,
  MIN_SECRET_BYTES,
  type Vault,
  type SlotStatus,
} from '../src/vault/index.js';

type Out = Pick<NodeJS.WriteStream, 'write'>;

export interface SecretIo {
  out: Out;
  err: Out;
  env: NodeJS.ProcessEnv;
  /** Reads the secret when --from-file is not given. */
  readInput: (prompt: string, multiline: boolean) => Promise<string>;
}

const defaultIo = (): SecretIo => ({ out: process.stdout, err: process.stderr, env: process.env, readInput: readStdin });

class UsageError extends Error {}

/**
 * The longest value `secret set` reads (a PEM chain is a few KB). Input is read
 * only up to this: `yes | clawpatrol secret set …` or `--from-file /dev/zero`
 * used to fill memory until the process died.
 */
export const MAX_SECRET_INPUT_BYTES = 1024 * 1024;

function tooLong(): UsageError {
  return new UsageError(`the value is longer than ${MAX_SECRET_INPUT_BYTES} bytes; a secret is at most ${MAX_SECRET_INPUT_BYTES / 1024} KiB`);
}

/** A file's text, read in pieces so a device or FIFO that never ends is cut off at the limit. */
function readFileBounded(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      total += n;
      if (total > MAX_SECRET_INPUT_BYTES) throw tooLong();
      chunks.push(chunk.subarray(0, n));
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

interface Opened {
  model: PolicyModel;
  stateDir: string;
  store: Store;
  vault: Vault;
}

async function openFor(configPath: string, keyMode: 'create' | 'optional', io: SecretIo): Promise<Opened> {
  const r = await loadPolicy(configPath);
  if (!r.ok) {
    for (const d of r.diagnostics) io.err.write(`${formatDiagnostic(d)}\n`);
    throw new UsageError(`${configPath}: the policy does not load`);
  }
  const model = r.policy.model;
  const stateDir = stateDirFor(model.gateway, io.env);
  const store = await openStoreFor(model.gateway, io.env);
  try {
    const vault = await openVault({ store, stateDir, model: () => model, env: io.env, key: keyMode, refreshMs: 0 });
    return { model, stateDir, store, vault };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/** Map an error to an exit status and a message on stderr. */
function fail(cmd: string, err: unknown, io: SecretIo): number {
  const message = err instanceof Error ? err.message : String(err);
  io.err.write(`clawpatrol ${cmd}: ${message}\n`);
  return err instanceof UsageError || err instanceof VaultUsageError ? 2 : 1;
}

/** Open the policy's vault, run `body`, map errors to an exit status, and always close the store. */
async function withVault(cmd: string, config: string, keyMode: 'create' | 'optional', io: SecretIo, body: (opened: Opened) => Promise<number>): Promise<number> {
  let opened: Opened | null = null;
  try {
    opened = await openFor(config, keyMode, io);
    return await body(opened);
  } catch (err) {
    return fail(cmd, err, io);
  } finally {
    opened?.vault.close();
    await opened?.store.close();
  }
}

export async function runSecretSet(
  credentialRef: string,
  slot: string | undefined,
  opts: { config: string; fromFile?: string; json?: boolean },
  io: SecretIo = defaultIo(),
): Promise<number> {
  return withVault('secret set', opts.config, 'create', io, async ({ vault, stateDir }) => {
    // Validate the target before asking for the value.
    const credential = vault.findCredential(credentialRef);
    const chosen = vault.pickSlot(credential, slot);
    const multiline = ['cert', 'key', 'ca'].includes(chosen);
    let raw: string;
    if (opts.fromFile !== undefined) {
      try {
        raw = opts.fromFile === '-' ? await io.readInput('', multiline) : readFileBounded(opts.fromFile);
      } catch (err) {
        if (err instanceof UsageError) throw err;
        throw new UsageError(`cannot read ${opts.fromFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    } else {
      raw = await io.readInput(`secret for ${credential.id} (${chosen}): `, multiline);
    }
    const value = normaliseSecretInput(raw);
    if (!value) throw new UsageError(`no value given for ${credential.id} (${chosen}): pipe it on stdin or use --from-file`);
    const stored = await vault.set(credential.id, chosen, value);
    if (opts.json) {
      io.out.write(`${JSON.stringify({ credential: stored.credential, slot: stored.slot, stored: true, stateDir, keyId: vault.keyId })}\n`);
    } else {
      io.out.write(`stored the ${stored.slot} of ${stored.credential} in the vault (${stateDir})\n`);
    }
    if (Buffer.byteLength(value) < MIN_SECRET_BYTES) {
      io.err.write(`warning: values shorter than ${MIN_SECRET_BYTES} bytes are not scrubbed from what the agent receives\n`);
    }
    return 0;
  });
}

export async function runSecretList(opts: { config: string; json?: boolean }, io: SecretIo = defaultIo()): Promise<number> {
  return withVault('secret list', opts.config, 'optional', io, async (opened) => {
    const status = await opened.vault.status();
    if (opts.json) {
      io.out.write(`${JSON.stringify({ stateDir: opened.stateDir, slots: status }, null, 2)}\n`);
      return 0;
    }
    if (status.length === 0) {
      io.out.write('the policy defines no credentials that hold secrets\n');
      return 0;
    }
    io.out.write(formatTable(status));
    const missing = status.filter((s) => s.required && !s.set);
    for (const s of status.filter((x) => x.ambiguousEnv?.length)) {
      io.err.write(`note: ${s.ambiguousEnv!.join(', ')} ${s.ambiguousEnv!.length === 1 ? 'is' : 'are'} ignored for ${s.credential}: several credentials map to the same variable\n`);
    }
    if (missing.length) {
      const creds = [...new Set(missing.map((s) => s.credential))];
      io.err.write(`${creds.length} credential${creds.length === 1 ? '' : 's'} without a required secret: ${creds.join(', ')}\n`);
    }
    return 0;
  });
}

function formatTable(rows: SlotStatus[]): string {
  const cells = rows.map((s) => [
    s.credential + (s.orphan ? ' (not in policy)' : ''),
    s.slot + (s.required ? '' : ' (optional)'),
    s.set ? 'set' : 'unset',
    s.source === 'env' ? `env ${s.envVar}` : s.source ?? '-',
    s.updatedAt ?? '-',
  ]);
  const header = ['CREDENTIAL', 'SLOT', 'STATUS', 'SOURCE', 'UPDATED'];
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(widths[i]!))).join('  ') + '\n';
  return line(header) + cells.map(line).join('');
}

export async function runSecretRm(
  credentialRef: string,
  slot: string | undefined,
  opts: { config: string; json?: boolean },
  io: SecretIo = defaultIo(),
): Promise<number> {
  return withVault('secret rm', opts.config, 'optional', io, async (opened) => {
    const n = await opened.vault.remove(credentialRef, slot);
    const what = slot ? `the ${slot} of ${credentialRef}` : credentialRef;
    if (opts.json) io.out.write(`${JSON.stringify({ credential: credentialRef, slot: slot ?? null, removed: n })}\n`);
    if (n === 0) {
      if (!opts.json) io.err.write(`clawpatrol secret rm: no secret stored for ${what}\n`);
      return 1;
    }
    if (!opts.json) io.out.write(`removed ${n} secret${n === 1 ? '' : 's'} of ${credentialRef}${slot ? ` (${slot})` : ''}\n`);
    return 0;
  });
}

/** The secret from stdin: hidden prompt on a terminal, everything piped otherwise. */
export async function readStdin(prompt: string, multiline: boolean): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const c of stdin) {
      const chunk = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
      total += chunk.length;
      // Leaving the loop destroys stdin: an endless pipe is not drained.
      if (total > MAX_SECRET_INPUT_BYTES) throw tooLong();
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }
  if (multiline) throw new UsageError('PEM values span lines: pipe them on stdin or use --from-file <path>');
  return promptHidden(prompt);
}

function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  // Echo goes off before the prompt invites typing: a user (or a script) who types as soon as
  // the prompt shows must never see the secret echoed, however late this process gets the CPU.
  stdin.setRawMode(true);
  process.stderr.write(prompt);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (s: string) => {
      for (const ch of s) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          done();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          done();
          reject(new UsageError('interrupted'));
          return;
        }
        // One code point, not one UTF-16 unit: slice(0, -1) left half an emoji behind, so the user's next
        // backspace removed that half instead of the character they saw, and a lone surrogate was stored as U+FFFD.
        if (ch === '\u007f' || ch === '\b') value = Array.from(value).slice(0, -1).join('');
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

export function register(program: Command): void {
  const secret = program
    .command('secret')
    .description('manage the secrets credentials inject (sealed in the vault of the policy\'s state dir)');

  secret
    .command('set')
    .description('store the secret of a credential slot; the value is read from stdin or --from-file, never from arguments')
    .argument('<credential>', 'credential id (bearer_token.github) or unique name (github)')
    .argument('[slot]', 'slot of the credential type (token, password, bot, signing_secret, app, cert, key, ca); optional when the type has one')
    .requiredOption('--config <policy>', 'the gateway policy (file or directory)')
    .option('--from-file <path>', 'read the value from this file (- for stdin)')
    .option('--json', 'print a JSON result')
    .addHelpText(
      'after',
      `
Examples:
  printf %s "$GITHUB_TOKEN" | clawpatrol secret set github --config policies/
  clawpatrol secret set mtls_credential.db cert --from-file client.pem --config policies/
  clawpatrol secret set github --config policies/        (prompts, input hidden)

Trailing line breaks (LF and CR) are removed. Exit status: 0 stored, 1 vault error, 2 usage error.`,
    )
    .action(async (credential: string, slot: string | undefined, opts: { config: string; fromFile?: string; json?: boolean }) => {
      process.exitCode = await runSecretSet(credential, slot, opts);
    });

  secret
    .command('list')
    .description('list every credential slot: set or unset, from the vault or the environment, when it was updated — never values')
    .requiredOption('--config <policy>', 'the gateway policy (file or directory)')
    .option('--json', 'print JSON')
    .action(async (opts: { config: string; json?: boolean }) => {
      process.exitCode = await runSecretList(opts);
    });

  secret
    .command('rm')
    .description('remove the stored secret of a credential (every slot, or one)')
    .argument('<credential>', 'credential id or unique name (also one the policy no longer has, by id)')
    .argument('[slot]', 'only this slot')
    .requiredOption('--config <policy>', 'the gateway policy (file or directory)')
    .option('--json', 'print a JSON result')
    .action(async (credential: string, slot: string | undefined, opts: { config: string; json?: boolean }) => {
      process.exitCode = await runSecretRm(credential, slot, opts);
    });
}
