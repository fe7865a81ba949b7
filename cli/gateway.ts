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
  let onSignal: ((signal: string) => void) | null = null;
  const signalled = (signal: string) => (): void => {
    received ??= signal;
    onSignal?.(signal);
  };
  const onSigint = signalled('SIGINT');
  const onSigterm = signalled('SIGTERM');
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigterm);
  let gateway;
  try {
    gateway = await startGateway({ configPath: config, log });
  } catch (err) {
    process.removeListener('SIGINT', onSigint);
    process.removeListener('SIGTERM', onSigterm);
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
  const running = gateway;
  let finish: (code: number) => void = () => undefined;
  const stopped = new Promise<number>((resolve) => (finish = resolve));
  const stop = (signal: string): void => {
    onSignal = null;
    log(`gateway: ${signal} received, shutting down`);
    running.close().then(
      () => finish(0),
      (err: unknown) => {
        log(`gateway: shutdown failed: ${err instanceof Error ? err.message : String(err)}`);
        finish(1);
      },
    );
  };
  if (received !== null) {
    stop(received);
  } else {
    onSignal = stop;
    log('gateway: ready');
  }
  return stopped;
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
