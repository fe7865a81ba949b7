import type { AuditRecordInput } from '../../src/gateway/contracts.js';

export function record(i: number, over: Partial<AuditRecordInput> = {}): AuditRecordInput {
  return {
    time: new Date(Date.UTC(2030, 0, 1) + i * 1000).toISOString(),
    peer: `peer-${i % 7}`,
    profile: 'default',
    endpoint: 'https.github',
    family: 'http',
    host: 'api.github.com',
    facts: { http: { method: 'GET', path: `/repos/acme/app/issues/${i}`, headers: { authorization: '***' } } },
    rule: i % 3 === 0 ? 'github-writes' : '',
    verdict: i % 3 === 0 ? 'deny' : 'allow',
    outcome: i % 3 === 0 ? 'deny' : 'allow',
    reason: i % 3 === 0 ? 'writes need approval' : '',
    mode: 'enforce',
    failClosed: false,
    credential: 'bearer_token.github',
    approvals: [],
    latencyMs: 1.25,
    bytesIn: 100 + i,
    bytesOut: 2000,
    status: '200',
    ...over,
  };
}
