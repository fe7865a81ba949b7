/**
 * An approval service with a real control server in front of it, as the
 * gateway wires them, for tests that drive the queue API, the CLI or Slack.
 * Everything started is closed after each test.
 */
import { afterEach } from 'vitest';
import { createApprovalService, type ApprovalService, type ApprovalServiceOptions } from '../../../src/approvals/index.js';
import { startControlServer, type ControlServer } from '../../../src/gateway/control-server.js';
import type { PolicyModel } from '../../../src/policy/types.js';

export interface ServiceSetup {
  service: ApprovalService;
  control: ControlServer;
  /** Replace `current` to simulate a policy reload. */
  policy: { current: PolicyModel };
}

/** Call at module level; returns a starter whose services are closed after each test. */
export function useApprovalServices(): (
  model: PolicyModel,
  adminToken: string,
  options: Omit<ApprovalServiceOptions, 'policy'>,
) => Promise<ServiceSetup> {
  let open: ServiceSetup[] = [];
  afterEach(async () => {
    for (const s of open) {
      await s.service.close();
      await s.control.close();
    }
    open = [];
  });
  return async (model, adminToken, options) => {
    const policy = { current: model };
    const service = createApprovalService({ ...options, policy: () => policy.current });
    const control = await startControlServer({ listen: '127.0.0.1:0', adminToken, routes: [service.route] });
    const s = { service, control, policy };
    open.push(s);
    return s;
  };
}
