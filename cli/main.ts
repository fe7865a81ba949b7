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
import * as validateCommand from './validate.js';
import * as testCommand from './test.js';
import * as approvalsCommand from './approvals.js';
import * as secretCommand from './secret.js';
import * as auditCommand from './audit.js';
import * as gatewayCommand from './gateway.js';
import * as joinCommand from './join.js';
import * as runCommand from './run.js';
import * as devicesCommand from './devices.js';
import * as statusCommand from './status.js';
import * as leaveCommand from './leave.js';

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
    .exitOverride();
  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const commands: Array<{ register(p: Command): void }> = [
    validateCommand,
    testCommand,
    approvalsCommand,
    secretCommand,
    auditCommand,
    gatewayCommand,
    joinCommand,
    runCommand,
    devicesCommand,
    statusCommand,
    leaveCommand,
  ];
  for (const c of commands) c.register(program);
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
