/**
 * `clawpatrol join <gateway-url>` — enrol this machine with a gateway.
 *
 *   sudo clawpatrol join http://gw:8080                     device code, approved on the gateway
 *   sudo clawpatrol join http://gw:8080 --token <t> --ca-fingerprint <sha256>   unattended
 *
 * Exit codes: 0 joined, 1 refused / unreachable / fingerprint mismatch, 2 usage.
 */
import type { Command } from 'commander';
import { createInterface } from 'node:readline/promises';
import { isatty } from 'node:tty';
import { joinGateway } from '../src/net/client/join.js';
import { ClientConfigError } from '../src/net/client/config.js';

interface JoinCliOptions {
  token?: string;
  name?: string;
  caFingerprint?: string;
  trust: boolean;
  config?: string;
  force?: boolean;
}

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

export function register(program: Command): void {
  program
    .command('join <gateway-url>')
    .description('enrol this machine with a gateway: pin its CA, make a WireGuard key, get approved (device code) or use a one-time --token')
    .option('--token <token>', 'one-time join token from `clawpatrol devices add --profile <p>` (no approval step)')
    .option('--name <name>', 'device name shown on the gateway (default: the host name)')
    .option('--ca-fingerprint <sha256>', 'pin the gateway CA non-interactively (as printed by `clawpatrol devices add`)')
    .option('--no-trust', 'do not add the gateway CA to the system trust store (clawpatrol run still exports it)')
    .option('--config <path>', 'where to write the client configuration (default: /etc/clawpatrol/client.json as root, else ~/.config/clawpatrol/client.json)')
    .option('--force', 'join again although this machine already joined')
    .action(async (url: string, opts: JoinCliOptions) => {
      try {
        const { config, path } = await joinGateway({
          gatewayUrl: url,
          ...(opts.token ? { token: opts.token } : {}),
          ...(opts.name ? { name: opts.name } : {}),
          ...(opts.caFingerprint ? { caFingerprint: opts.caFingerprint } : {}),
          trust: opts.trust,
          ...(opts.config ? { configPath: opts.config } : {}),
          ...(opts.force ? { force: true } : {}),
          ...(isatty(0) ? { confirm } : {}),
          out: (line) => process.stdout.write(line + '\n'),
        });
        process.stdout.write(
          `Joined as ${config.device.id} (${config.device.name}), profile ${config.device.profile}, tunnel address ${config.device.address4}\n` +
            (config.ca.trustedPath ? `Gateway CA trusted system-wide: ${config.ca.trustedPath}\n` : 'Gateway CA not added to the system trust store (--no-trust)\n') +
            `Configuration: ${path}\n` +
            'Run an agent through the gateway:  sudo clawpatrol run -- <command>\n',
        );
        process.exitCode = 0;
      } catch (err) {
        process.stderr.write(`clawpatrol join: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = err instanceof ClientConfigError ? 2 : 1;
      }
    });
}
