/**
 * The gateway's packet plumbing for one WireGuard interface:
 *
 * - nft TPROXY: every TCP packet from the tunnel, whatever its destination
 *   (virtual IPs, real addresses, the gateway's own tunnel address), is
 *   delivered to the transparent listener, whose accepted socket's
 *   `localAddress:localPort` is what the agent dialed. Because of this no
 *   AnyIP route is needed for the VIP ranges and no per-port listener binds
 *   a public address.
 * - UDP from the tunnel: only DNS to the gateway's tunnel address; the rest
 *   is dropped, as is anything else (ICMP errors and echo to the gateway
 *   excepted).
 * - forwarding to or from the tunnel is dropped: nothing passes the gateway
 *   at the IP level, only through its listeners.
 *
 * The ruleset text is a pure function (tested); `applyFirewall` installs it
 * with the policy-routing rules TPROXY needs, `removeFirewall` undoes it.
 */
import { ip, nft } from './system.js';
import { checkInterfaceName } from './wireguard-go.js';

/** fwmark and routing table for TPROXY'd packets (distinctive values, so we never touch someone else's). */
export const TPROXY_MARK = 0x1c1a;
export const TPROXY_TABLE = 7194;

export interface FirewallSpec {
  interfaceName: string;
  /** Transparent listener ports (on 127.0.0.1 and ::1). */
  tproxyPort4: number;
  tproxyPort6: number | null;
  gatewayAddress4: string;
  gatewayAddress6: string | null;
}

export function tableName(iface: string): string {
  return `clawpatrol_${checkInterfaceName(iface).replace(/-/g, '_')}`;
}

export function firewallRuleset(spec: FirewallSpec): string {
  const i = `"${checkInterfaceName(spec.interfaceName)}"`;
  const mark = `0x${TPROXY_MARK.toString(16)}`;
  const lines = [
    `table inet ${tableName(spec.interfaceName)} {`,
    '  chain prerouting {',
    '    type filter hook prerouting priority mangle; policy accept;',
    `    iifname ${i} meta l4proto tcp meta nfproto ipv4 tproxy ip to 127.0.0.1:${spec.tproxyPort4} meta mark set ${mark} accept`,
  ];
  if (spec.tproxyPort6 !== null) {
    lines.push(`    iifname ${i} meta l4proto tcp meta nfproto ipv6 tproxy ip6 to [::1]:${spec.tproxyPort6} meta mark set ${mark} accept`);
  }
  lines.push(`    iifname ${i} ip daddr ${spec.gatewayAddress4} udp dport 53 accept`);
  if (spec.gatewayAddress6) lines.push(`    iifname ${i} ip6 daddr ${spec.gatewayAddress6} udp dport 53 accept`);
  lines.push(
    `    iifname ${i} ip daddr ${spec.gatewayAddress4} icmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept`,
  );
  if (spec.gatewayAddress6) {
    lines.push(
      `    iifname ${i} ip6 daddr ${spec.gatewayAddress6} icmpv6 type { echo-request, packet-too-big, destination-unreachable, time-exceeded, parameter-problem } accept`,
    );
  }
  lines.push(
    `    iifname ${i} drop`,
    '  }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    iifname ${i} drop`,
    `    oifname ${i} drop`,
    '  }',
    '}',
    '',
  );
  return lines.join('\n');
}

async function removeRouting(): Promise<void> {
  for (const fam of ['-4', '-6']) {
    // Delete until none is left: a crashed predecessor may have added the rule more than once.
    for (let n = 0; n < 10; n++) {
      const r = await ip([fam, 'rule', 'del', 'fwmark', String(TPROXY_MARK), 'lookup', String(TPROXY_TABLE)], { allowFailure: true });
      if (r.code !== 0) break;
    }
    await ip([fam, 'route', 'flush', 'table', String(TPROXY_TABLE)], { allowFailure: true });
  }
}

export async function removeFirewall(iface: string): Promise<void> {
  await nft(['delete', 'table', 'inet', tableName(iface)], { allowFailure: true });
  await removeRouting();
}

export async function applyFirewall(spec: FirewallSpec): Promise<void> {
  await removeFirewall(spec.interfaceName);
  await nft(['-f', '-'], { input: firewallRuleset(spec) });
  await ip(['-4', 'rule', 'add', 'fwmark', String(TPROXY_MARK), 'lookup', String(TPROXY_TABLE)]);
  await ip(['-4', 'route', 'replace', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', String(TPROXY_TABLE)]);
  if (spec.tproxyPort6 !== null) {
    await ip(['-6', 'rule', 'add', 'fwmark', String(TPROXY_MARK), 'lookup', String(TPROXY_TABLE)]);
    await ip(['-6', 'route', 'replace', 'local', '::/0', 'dev', 'lo', 'table', String(TPROXY_TABLE)]);
  }
}

/** Addresses, MTU and link state of the gateway's WireGuard interface. */
export async function configureInterface(opts: {
  interfaceName: string;
  address4: string;
  prefix4: number;
  address6: string | null;
  prefix6: number | null;
  mtu: number;
}): Promise<void> {
  const dev = checkInterfaceName(opts.interfaceName);
  await ip(['-4', 'addr', 'replace', `${opts.address4}/${opts.prefix4}`, 'dev', dev]);
  if (opts.address6) await ip(['-6', 'addr', 'replace', `${opts.address6}/${opts.prefix6 ?? 64}`, 'dev', dev, 'nodad']);
  await ip(['link', 'set', 'dev', dev, 'mtu', String(opts.mtu), 'up']);
}
