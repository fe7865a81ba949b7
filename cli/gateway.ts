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
  // Listen for the signals before anything else: a SIGTERM that arrives
  // after "ready" is printed but before a listener exists would kill the
  // process without a shutdown (unwritten audit records). One that arrives
  // during startup is honoured as soon as the gateway is up.
  let received: string | null = null;
  const listeners: Array<[NodeJS.Signals, () => void]> = [];
  const firstSignal = new Promise<string>((resolve) => {
    for (const name of ['SIGINT', 'SIGTERM'] as const) {
      const listener = (): void => {
        received ??= name;
        resolve(name);
      };
      listeners.push([name, listener]);
      process.once(name, listener);
    }
  });
  let gateway;
  try {
    gateway = await startGateway({ configPath: config, log });
  } catch (err) {
    for (const [name, listener] of listeners) process.removeListener(name, listener);
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
  if (received === null) log('gateway: ready');
  const signal = await firstSignal;
  log(`gateway: ${signal} received, shutting down`);
  try {
    await gateway.close();
    return 0;
  } catch (err) {
    log(`gateway: shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
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
