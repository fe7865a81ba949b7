/**
 * Passthrough for hosts no endpoint claims (`defaults.unknown_host =
 * "passthrough"`): bytes are relayed untouched — TLS is not terminated, no
 * credential is injected — and the audit record gets the byte counts.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Enforcement } from '../../gateway/contracts.js';
import type { EngineCore } from './types.js';

export function splice(
  core: EngineCore,
  agent: Duplex,
  initial: Buffer,
  dest: { host: string; port: number },
  enf: Enforcement,
): void {
  let fromAgent = initial.length;
  let toAgent = 0;
  let finished = false;
  const upstream = net.connect({ host: dest.host, port: dest.port, ...(core.lookup ? { lookup: core.lookup } : {}) });
  core.sockets.add(agent);
  core.sockets.add(upstream);
  const done = (status: string) => {
    if (finished) return;
    finished = true;
    agent.destroy();
    upstream.destroy();
    core.sockets.delete(agent);
    core.sockets.delete(upstream);
    enf.finish({ bytesIn: fromAgent, bytesOut: toAgent, status });
  };
  upstream.once('connect', () => {
    if (initial.length) upstream.write(initial);
    agent.on('data', (c: Buffer) => {
      fromAgent += c.length;
    });
    upstream.on('data', (c: Buffer) => {
      toAgent += c.length;
    });
    agent.pipe(upstream);
    upstream.pipe(agent);
    agent.resume();
  });
  upstream.on('error', (err) => {
    core.log(`http: passthrough to ${dest.host}:${dest.port} failed: ${err.message}`);
    done('passthrough-failed');
  });
  agent.on('error', () => done('passthrough'));
  upstream.on('close', () => done('passthrough'));
  agent.on('close', () => done('passthrough'));
}
