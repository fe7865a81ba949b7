/**
 * `clawpatrol leave` — undo `join`: the gateway forgets the device, the CA
 * leaves the system trust store, the configuration (with the private key)
 * is deleted. Works when the gateway is unreachable (then the device stays
 * listed there until an admin revokes it; we say so).
 *
 * Exit codes: 0 left, 1 left locally but the gateway was not told, 2 not joined.
 */
import type { Command } from 'commander';
import { findConfig, loadClientConfig, removeClientConfig, ClientConfigError } from '../src/net/client/config.js';
import { GatewayApi, GatewayApiError } from '../src/net/client/gateway-api.js';
import { untrustSystemWide } from '../src/net/client/ca-trust.js';
import { forceTeardown, tunnelStatus } from '../src/net/client/tunnel.js';

export function register(program: Command): void {
  program
    .command('leave')
    .description('leave the gateway: deregister this device, remove the gateway CA from the trust store, delete the client configuration')
    .option('--config <path>', 'client configuration written by clawpatrol join')
    .option('--force', 'also stop a tunnel that running `clawpatrol run`s still use')
    .action(async (opts: { config?: string; force?: boolean }) => {
      let path: string;
      let config;
      try {
        path = findConfig(opts.config);
        config = loadClientConfig(path);
      } catch (err) {
        process.stderr.write(`clawpatrol leave: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = err instanceof ClientConfigError ? 2 : 1;
        return;
      }
      const tunnel = await tunnelStatus(config.device.id);
      if (tunnel && tunnel.users.length > 0 && !opts.force) {
        process.stderr.write(`clawpatrol leave: ${tunnel.users.length} clawpatrol run(s) still use the tunnel (pids ${tunnel.users.join(', ')}); stop them or pass --force\n`);
        process.exitCode = 1;
        return;
      }
      let code = 0;
      try {
        await new GatewayApi(config.gatewayUrl, config.ca.pem, 8000).leave(config.deviceToken);
        process.stdout.write(`The gateway removed device ${config.device.id}.\n`);
      } catch (err) {
        if (err instanceof GatewayApiError && err.status === 401) {
          process.stdout.write(`The gateway had already removed device ${config.device.id}.\n`);
        } else {
          process.stderr.write(
            `clawpatrol leave: could not tell the gateway (${err instanceof Error ? err.message : String(err)}); ` +
              `an admin can remove it with: clawpatrol devices revoke ${config.device.id}\n`,
          );
          code = 1;
        }
      }
      await forceTeardown(config.device.id);
      if (config.ca.trustedPath) {
        try {
          untrustSystemWide(config.ca.trustedPath);
          process.stdout.write(`Removed the gateway CA from the system trust store (${config.ca.trustedPath}).\n`);
        } catch (err) {
          process.stderr.write(`clawpatrol leave: ${err instanceof Error ? err.message : String(err)}\n`);
          code = 1;
        }
      }
      removeClientConfig(path);
      process.stdout.write(`Deleted ${path}.\n`);
      process.exitCode = code;
    });
}
