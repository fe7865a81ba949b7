/**
 * `clawpatrol status` — is this machine's enrolment healthy?
 *
 * Shows the gateway, whether its control API answers, whether it still
 * knows this device (and when it last saw a WireGuard handshake from it),
 * the pinned CA and whether it is trusted, and the tunnel of running
 * `clawpatrol run`s with its handshake age.
 *
 * Exit codes: 0 healthy, 1 a problem was found (printed), 2 not joined / bad config.
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { findConfig, loadClientConfig, ClientConfigError } from '../src/net/client/config.js';
import { GatewayApi, GatewayApiError } from '../src/net/client/gateway-api.js';
import { tunnelStatus } from '../src/net/client/tunnel.js';
import type { DeviceStatus } from '../src/net/enrol-routes.js';
import { ago } from './devices.js';

export function register(program: Command): void {
  program
    .command('status')
    .description("report this machine's enrolment: gateway reachable, device known, last handshake, CA trust, running tunnel")
    .option('--config <path>', 'client configuration written by clawpatrol join')
    .option('--json', 'print JSON')
    .action(async (opts: { config?: string; json?: boolean }) => {
      let config;
      try {
        config = loadClientConfig(findConfig(opts.config));
      } catch (err) {
        process.stderr.write(`clawpatrol status: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = err instanceof ClientConfigError ? 2 : 1;
        return;
      }
      const problems: string[] = [];
      const api = new GatewayApi(config.gatewayUrl, config.ca.pem, 5000);
      let pingMs: number | null = null;
      let remote: DeviceStatus | null = null;
      try {
        pingMs = await api.ping();
        remote = await api.self(config.deviceToken);
      } catch (err) {
        if (err instanceof GatewayApiError && err.status === 401) problems.push('the gateway no longer knows this device (revoked): clawpatrol leave, then join again');
        else problems.push(err instanceof Error ? err.message : String(err));
      }
      if (remote && remote.caFingerprint !== config.ca.fingerprint) problems.push(`the gateway's CA changed: pinned ${config.ca.fingerprint}, now ${remote.caFingerprint}`);
      if (config.ca.trustedPath && !existsSync(config.ca.trustedPath)) problems.push(`the CA is no longer in the trust store (${config.ca.trustedPath} is gone)`);
      const tunnel = await tunnelStatus(config.device.id);
      const handshake = tunnel?.peer?.lastHandshakeMs ?? null;
      if (tunnel && (handshake === null || Date.now() - handshake > 180_000)) {
        problems.push('the running tunnel has no recent handshake with the gateway: agents in it have no network');
      }

      if (opts.json) {
        process.stdout.write(
          JSON.stringify(
            {
              ok: problems.length === 0,
              problems,
              gatewayUrl: config.gatewayUrl,
              reachable: pingMs !== null,
              device: remote?.device ?? config.device,
              caFingerprint: config.ca.fingerprint,
              caTrusted: config.ca.trustedPath !== null && existsSync(config.ca.trustedPath),
              tunnel: tunnel ? { netns: tunnel.names.netns, runs: tunnel.users.length, lastHandshake: handshake ? new Date(handshake).toISOString() : null } : null,
            },
            null,
            2,
          ) + '\n',
        );
      } else {
        const lines = [
          `Gateway:    ${config.gatewayUrl} (${pingMs === null ? 'unreachable' : `reachable, ${pingMs.toFixed(0)} ms`})`,
          `Device:     ${config.device.id} (${config.device.name}), profile ${remote?.device.profile ?? config.device.profile}, address ${config.device.address4}`,
          `Enrolment:  ${
            remote
              ? remote.device.lastHandshake
                ? `active; gateway saw a handshake ${ago(remote.device.lastHandshake)}`
                : 'active; no handshake yet (the tunnel starts with clawpatrol run)'
              : 'unknown (see below)'
          }`,
          `Gateway CA: ${config.ca.fingerprint}${config.ca.trustedPath ? ` (trusted: ${config.ca.trustedPath})` : ' (not in the system trust store)'}`,
          `Tunnel:     ${tunnel ? `${tunnel.names.netns}, ${tunnel.users.length} run(s), last handshake ${handshake ? ago(new Date(handshake).toISOString()) : 'never'}` : 'not running (starts with clawpatrol run)'}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
        for (const p of problems) process.stdout.write(`problem: ${p}\n`);
      }
      process.exitCode = problems.length ? 1 : 0;
    });
}
