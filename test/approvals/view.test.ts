/**
 * The interactive view (`clawpatrol approvals`) rendered with
 * ink-testing-library against a real control server and queue. (A .ts file
 * with createElement: the test glob is `*.test.ts`.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createElement } from 'react';
import { render } from 'ink-testing-library';
import { ApprovalsView } from '../../cli/approvals-view.js';
import { ApprovalsClient } from '../../src/approvals/client.js';
import type { ApprovalService } from '../../src/approvals/index.js';
import { ControlClient } from '../../src/gateway/control-client.js';
import { approveDecision, humanApprover, model, secrets, sqlAction } from './support/model.js';
import { useApprovalServices } from './support/service.js';

const TOKEN = 'view-test-admin-token';
// Registered first so it runs last (vitest runs after-hooks as a stack): views unmount before their gateway closes.
const startService = useApprovalServices();
let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

async function setup(): Promise<{ service: ApprovalService; client: ApprovalsClient }> {
  const policy = model({ approvers: [humanApprover({ id: 'human_approver.oncall', name: 'oncall', credential: undefined, requireApprovers: 1 })] });
  const { service, control } = await startService(policy, TOKEN, { secrets: secrets({}) });
  return { service, client: new ApprovalsClient(new ControlClient({ baseUrl: control.url, token: TOKEN })) };
}

async function until(probe: () => boolean, what: () => string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!probe()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting; last frame:\n${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const oncall = approveDecision(['human_approver.oncall']);

describe('approvals interactive view', () => {
  it('shows new actions live, selects with the arrow keys, approves and denies with a reason', async () => {
    const { service, client } = await setup();
    const view = render(createElement(ApprovalsView, { client, user: 'alice' }));
    cleanup.push(() => view.unmount());
    const frame = () => view.lastFrame() ?? '';
    await until(() => frame().includes('No actions are waiting for approval.'), frame);

    const first = service.runner.run(sqlAction('DELETE FROM users WHERE id = 1'), oncall);
    await until(() => frame().includes('1 waiting'), frame);
    const second = service.runner.run(sqlAction("UPDATE accounts SET balance = 0\nWHERE owner = '\u001b[31mx'"), oncall);
    await until(() => frame().includes('2 waiting'), frame);
    const [a, b] = service.queue.list();

    // The first entry is selected and its statement shown.
    expect(frame()).toContain(`› ${a!.id}`);
    expect(frame()).toContain('DELETE FROM users WHERE id = 1');

    view.stdin.write('\u001b[B'); // down
    await until(() => frame().includes(`› ${b!.id}`), frame);
    expect(frame()).toContain('UPDATE accounts SET balance = 0');
    expect(frame()).toContain("WHERE owner = '�[31mx'");
    expect(frame()).not.toContain('\u001b[31mx');

    view.stdin.write('d');
    await until(() => frame().includes(`Deny ${b!.id} — reason`), frame);
    for (const ch of 'no sir') view.stdin.write(ch);
    view.stdin.write('\u007f'); // backspace
    await until(() => frame().includes('reason (optional, Enter to confirm, Esc to cancel): no si'), frame);
    view.stdin.write('r');
    await until(() => frame().includes(': no sir'), frame);
    view.stdin.write('\r');
    const denied = await second;
    expect(denied.stages[0]).toMatchObject({ verdict: 'deny', decidedBy: 'cli:alice', reason: 'no sir' });
    await until(() => frame().includes('1 waiting') && frame().includes(`Denied ${b!.id}`), frame);

    view.stdin.write('a');
    await until(() => frame().includes(`Approve ${a!.id}`), frame);
    view.stdin.write('\r');
    const approved = await first;
    expect(approved.stages[0]).toMatchObject({ verdict: 'allow', decidedBy: 'cli:alice' });
    await until(() => frame().includes('0 waiting'), frame);
  });

  it('Esc cancels a decision; q quits', async () => {
    const { service, client } = await setup();
    const view = render(createElement(ApprovalsView, { client, user: 'bob' }));
    cleanup.push(() => view.unmount());
    const frame = () => view.lastFrame() ?? '';
    const run = service.runner.run(sqlAction('DELETE FROM x'), oncall);
    await until(() => frame().includes('1 waiting'), frame);
    view.stdin.write('a');
    await until(() => frame().includes('reason (optional'), frame);
    view.stdin.write('\u001b');
    await until(() => frame().includes('Cancelled'), frame);
    expect(service.queue.list()).toHaveLength(1);
    view.stdin.write('q');
    await new Promise((r) => setTimeout(r, 100));
    const entry = service.queue.list()[0]!;
    service.queue.decide(entry.id, 'deny', { via: 'cli', user: 'bob' });
    await run;
    // After quitting the view no longer follows the queue: no frame ever shows
    // the emptied queue. (Ink may clear the last frame on exit, so the frames
    // rendered are checked rather than whatever the last one is.)
    await new Promise((r) => setTimeout(r, 1500));
    expect(view.frames.some((f) => f.includes('1 waiting'))).toBe(true);
    expect(view.frames.filter((f) => f.includes('0 waiting'))).toEqual([]);
  });
});
