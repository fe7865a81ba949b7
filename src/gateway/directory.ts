/**
 * The policy, seen by the WireGuard transport. net/ knows no policy; this
 * adapter answers its questions (which endpoint a dialed name/IP:port means
 * for a profile, which names get virtual IPs, what `run` exports) from the
 * policy snapshot in force, so hot reloads reach the tunnel too.
 */
import type { CompiledPolicy } from '../policy/index.js';
import { profilePlaceholders } from '../policy/index.js';
import type { HostPattern } from '../policy/types.js';
import type { Directory, DnsEndpoint } from '../net/types.js';

function declared(p: HostPattern): string {
  return p.port !== undefined ? `${p.host}:${p.port}` : p.host;
}

export function policyDirectory(current: () => CompiledPolicy): Directory {
  // One DNS view per policy snapshot: the transport re-indexes only when the identity changes.
  const dnsViews = new WeakMap<CompiledPolicy, DnsEndpoint[]>();
  return {
    endpointsForDns() {
      const policy = current();
      let view = dnsViews.get(policy);
      if (!view) {
        view = [...policy.model.endpoints.values()].map((e) => ({ id: e.id, type: e.type, hosts: e.hosts.map(declared) }));
        dnsViews.set(policy, view);
      }
      return view;
    },
    endpointFor(hostOrIp, port, profile) {
      const e = current().findEndpoint(hostOrIp, port, profile);
      return e ? { id: e.id, type: e.type } : null;
    },
    unknownHost() {
      return current().model.defaults.unknownHost;
    },
    profiles() {
      return [...current().model.profiles.keys()];
    },
    placeholdersFor(profile) {
      return profilePlaceholders(current().model, profile);
    },
  };
}
