/**
 * `clawpatrol gateway <config>` — run the firewall: load the policy (hot
 * reloaded), open the state dir, start what the file declares, and serve
 * until SIGINT/SIGTERM, then shut down cleanly (every audit record written).
 *
 * Exit status: 0 after a clean shutdown, 1 runtime failure, 2 invalid policy
 * or configuration.
 */
import type { Command } from 'commander';
import { startGateway, GatewayConfigError } from '../src/gateway/gateway.js';
import { PolicyLoadError } from '../src/policy/watcher.js';
import { formatDiagnostic } from '../src/policy/index.js';

export async function runGateway(config: string): Promise<number> {
  const log = (line: string): void => {
    process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  };
  let gateway;
  try {
    gateway = await startGateway({ configPath: config, log });
  } catch (err) {
    if (err instanceof PolicyLoadError) {
      for (const d of err.diagnostics) process.stderr.write(`${formatDiagnostic(d)}\n`);
      return 2;
    }
    if (err instanceof GatewayConfigError) {
      process.stderr.write(`clawpatrol gateway: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`clawpatrol gateway: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  log('gateway: ready');
  const running = gateway;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log(`gateway: ${signal} received, shutting down`);
      running.close().then(
        () => resolve(0),
        (err: unknown) => {
          log(`gateway: shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
          resolve(1);
        },
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

export function register(program: Command): void {
  program
    .command('gateway')
    .description('run the gateway for a policy file or directory (hot-reloaded)')
    .argument('<config>', 'policy file or directory')
    .action(async (config: string) => {
      process.exitCode = await runGateway(config);
    });
}
