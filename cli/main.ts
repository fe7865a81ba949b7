#!/usr/bin/env node
/**
 * `clawpatrol` entry point. Each command lives in its own file under cli/
 * and exports `register(program)`; this file only wires them together and
 * maps uncaught usage errors to exit code 2.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

type CommandModule = { register(p: Command): void };

/**
 * Commands by name, loaded on demand: `clawpatrol run` should not pay for
 * loading the gateway's engines. Help and unknown commands load them all.
 */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  validate: () => import('./validate.js'),
  test: () => import('./test.js'),
  gateway: () => import('./gateway.js'),
  secret: () => import('./secret.js'),
  audit: () => import('./audit.js'),
  approvals: () => import('./approvals.js'),
  devices: () => import('./devices.js'),
  join: () => import('./join.js'),
  run: () => import('./run.js'),
  status: () => import('./status.js'),
  leave: () => import('./leave.js'),
};

const here = dirname(fileURLToPath(import.meta.url));

function packageVersion(): string {
  // dist/cli/main.js and cli/main.ts both sit two levels below the package root
  for (const candidate of [join(here, '..', '..', 'package.json'), join(here, '..', 'package.json')]) {
    try {
      return (JSON.parse(readFileSync(candidate, 'utf8')) as { version: string }).version;
    } catch {
      /* try the next location */
    }
  }
  return '0.0.0';
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('clawpatrol')
    .description('A firewall for AI agents: protocol-aware policy between agents and production.')
    .version(packageVersion())
    .showHelpAfterError()
    // Options after a subcommand belong to it (`run -- cmd --flag` passes --flag through).
    .enablePositionalOptions()
    .exitOverride();
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const named = argv[2] !== undefined ? COMMANDS[argv[2]] : undefined;
  const loaders = named && Object.hasOwn(COMMANDS, argv[2]!) ? [named] : Object.values(COMMANDS);
  for (const c of await Promise.all(loaders.map((load) => load()))) c.register(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      return 2;
    }
    throw err;
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`clawpatrol: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
