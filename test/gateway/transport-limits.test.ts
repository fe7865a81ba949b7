/**
 * `gateway { limits { connections_per_device, wildcard_names_per_device } }`
 * reach the WireGuard transport as its per-device limits (their effect
 * through a real tunnel is tested in test/net/limits.test.ts); unset, the
 * transport keeps its defaults.
 */
import { describe, expect, it } from 'vitest';
import { transportLimits } from '../../src/gateway/gateway.js';
import { compile, HEADER } from '../policy/helpers.js';

describe('per-device tunnel limits from the policy', () => {
  it('maps the limits block onto the transport, and leaves unset ones to its defaults', async () => {
    const set = await compile(`${HEADER}gateway {\n  limits {\n    connections_per_device    = 3\n    wildcard_names_per_device = 2\n  }\n}\n`);
    expect(transportLimits(set.model.gateway)).toEqual({ maxConnectionsPerDevice: 3, maxWildcardNamesPerDevice: 2 });
    const one = await compile(`${HEADER}gateway {\n  limits {\n    connections_per_device = 40\n  }\n}\n`);
    expect(transportLimits(one.model.gateway)).toEqual({ maxConnectionsPerDevice: 40 });
    const none = await compile(`${HEADER}gateway {}\n`);
    expect(transportLimits(none.model.gateway)).toEqual({});
  });
});
