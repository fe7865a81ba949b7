/**
 * Passthrough for unknown hosts (`unknown_host = "passthrough"`): bytes are
 * copied both ways uninspected and counted, and the relay never connects to
 * a forbidden destination (the gateway host itself, the tunnel, link-local
 * metadata services — see destinations.ts). A name (a VIP whose name is not
 * an endpoint of the peer's profile) is resolved by the gateway host and
 * each address checked before use.
 */
import { connect, isIP, type Socket } from 'node:net';
import { lookup } from 'node:dns/promises';
import type { DestinationGuard } from './destinations.js';

export interface RelayResult {
  bytesOut: number;
  bytesIn: number;
  /** Set when the relay could not be established (refused destination, connect error). */
  failure?: string;
}

export interface RelayOptions {
  host: string;
  port: number;
  /** Bytes already read from the client (the dispatcher's peek). */
  initial: Buffer;
  guard: DestinationGuard;
  connectTimeoutMs?: number;
}

async function pickAddress(host: string, guard: DestinationGuard): Promise<{ ip: string } | { refusal: string }> {
  if (isIP(host)) {
    const why = guard.refusal(host);
    return why ? { refusal: why } : { ip: host };
  }
  let addrs: Array<{ address: string }>;
  try {
    addrs = await lookup(host, { all: true, verbatim: true });
  } catch (err) {
    return { refusal: `cannot resolve ${host}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
  let firstRefusal = `${host} has no address`;
  for (const a of addrs) {
    const why = guard.refusal(a.address);
    if (!why) return { ip: a.address };
    firstRefusal = `${host} resolves to a forbidden destination: ${why}`;
  }
  return { refusal: firstRefusal };
}

export function relayConnection(client: Socket, opts: RelayOptions): Promise<RelayResult> {
  return new Promise((resolve) => {
    const result: RelayResult = { bytesOut: 0, bytesIn: 0 };
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    // The client may half-close (send FIN) and still expect the answer.
    client.allowHalfOpen = true;
    client.pause();
    client.on('error', () => client.destroy());

    void pickAddress(opts.host, opts.guard).then((picked) => {
      if ('refusal' in picked) {
        result.failure = picked.refusal;
        client.resetAndDestroy();
        finish();
        return;
      }
      if (client.destroyed) return finish();
      const upstream = connect({ host: picked.ip, port: opts.port, allowHalfOpen: true });
      upstream.setNoDelay(true);
      const timer = setTimeout(() => {
        result.failure = `connect to ${picked.ip}:${opts.port} timed out`;
        upstream.destroy();
      }, opts.connectTimeoutMs ?? 10_000);
      let connected = false;
      upstream.on('connect', () => {
        connected = true;
        clearTimeout(timer);
        if (opts.initial.length) {
          result.bytesOut += opts.initial.length;
          upstream.write(opts.initial);
        }
        client.on('data', (d: Buffer) => {
          result.bytesOut += d.length;
        });
        upstream.on('data', (d: Buffer) => {
          result.bytesIn += d.length;
        });
        client.pipe(upstream);
        upstream.pipe(client);
      });
      upstream.on('error', (err) => {
        clearTimeout(timer);
        if (!connected) {
          result.failure ??= `connect to ${picked.ip}:${opts.port} failed: ${(err as NodeJS.ErrnoException).code ?? err.message}`;
          // Tell the agent the way it would have learnt it: a reset.
          if (!client.destroyed) client.resetAndDestroy();
        } else {
          client.destroy();
        }
      });
      let closed = 0;
      const onClose = () => {
        if (++closed === 2) finish();
      };
      upstream.on('close', () => {
        clearTimeout(timer);
        if (!connected && !client.destroyed) client.resetAndDestroy();
        onClose();
      });
      client.on('close', () => {
        // The agent went away (or was revoked): nothing more may reach upstream in its name.
        if (!upstream.destroyed && (client.errored || !client.readableEnded)) upstream.destroy();
        onClose();
      });
    });
  });
}
