/**
 * `clawpatrol run [--] <command> [args…]` — run a command whose only network
 * is the tunnel to the gateway (needs root; the command runs as the user
 * who invoked sudo).
 *
 * Exit status: the command's own; killed by a signal → `run` dies of the
 * same signal. 125 when `run` itself fails before the command starts.
 */
import type { Command } from 'commander';
import { runWrapped } from '../src/net/client/run.js';

export const RUN_FAILED = 125;

export function register(program: Command): void {
  // `run psql -h db` must hand `-h db` to psql, which needs positional options on the program.
  program.enablePositionalOptions();
  program
    .command('run')
    .description("run a command in a network namespace whose only route is the gateway's tunnel")
    .argument('<command...>', 'the command and its arguments (put -- before them)')
    .option('--config <path>', 'client configuration written by clawpatrol join')
    .option('--keep-env <name>', 'keep this environment variable although it looks like a credential (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .passThroughOptions()
    .allowUnknownOption(false)
    .action(async (command: string[], opts: { config?: string; keepEnv?: string[] }) => {
      try {
        const outcome = await runWrapped({
          command,
          ...(opts.config ? { configPath: opts.config } : {}),
          keepEnv: opts.keepEnv ?? [],
          notice: (line) => process.stderr.write(line + '\n'),
        });
        if (outcome.signal) {
          // Die the way the command died, so a calling shell sees 128+n.
          process.kill(process.pid, outcome.signal);
          return;
        }
        process.exitCode = outcome.code ?? RUN_FAILED;
      } catch (err) {
        process.stderr.write(`clawpatrol run: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = RUN_FAILED;
      }
    });
}
