/**
 * Where a passthrough relay must never connect, whatever the agent dialed:
 * the gateway host itself (its loopback, its own addresses, so no local-only
 * service such as the control API or a `listen` endpoint is reachable
 * through the tunnel), other tunnel peers, the virtual-IP ranges, link-local
 * addresses (cloud metadata services hand out the gateway's own cloud
 * credentials there), multicast and reserved space. A pure check over
 * canonical addresses; the caller supplies the local addresses.
 */
import { networkInterfaces } from 'node:os';
import { canonicalIp, cidrContains, parseCidr, type Cidr } from './ip.js';

const NEVER: Array<{ cidr: Cidr; why: string }> = [
  ['0.0.0.0/8', 'an unspecified address'],
  ['127.0.0.0/8', 'the gateway host itself (loopback)'],
  ['169.254.0.0/16', 'a link-local address (cloud metadata lives here)'],
  ['100.100.100.200/32', 'a cloud metadata service'],
  ['224.0.0.0/4', 'a multicast address'],
  ['240.0.0.0/4', 'a reserved address'],
  ['::/128', 'an unspecified address'],
  ['::1/128', 'the gateway host itself (loopback)'],
  ['fe80::/10', 'a link-local address'],
  ['fd00:ec2::254/128', 'a cloud metadata service'],
  ['ff00::/8', 'a multicast address'],
].map(([text, why]) => ({ cidr: parseCidr(text!), why: why! }));

export interface DestinationGuard {
  /** Why a relay to `ip` is refused, or null when it may go ahead. */
  refusal(ip: string): string | null;
}

export function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) out.add(canonicalIp(a.address.replace(/%.*$/, '')));
  }
  return out;
}

/**
 * `internal` are the tunnel subnets and virtual-IP ranges. Local addresses
 * are read per check (cheap) so an address added after start is covered.
 */
export function destinationGuard(internal: Cidr[], locals: () => Set<string> = localAddresses): DestinationGuard {
  return {
    refusal(ip: string): string | null {
      let c: string;
      try {
        c = canonicalIp(ip);
      } catch {
        return `"${ip}" is not an IP address`;
      }
      for (const n of NEVER) if (cidrContains(n.cidr, c)) return `${c} is ${n.why}`;
      for (const r of internal) if (cidrContains(r, c)) return `${c} is inside the gateway's own range ${r.text}`;
      if (locals().has(c)) return `${c} is an address of the gateway host itself`;
      return null;
    },
  };
}
