/**
 * The interactive approvals view (`clawpatrol approvals`): the queue, live,
 * with the selected action's facts; approve or deny with an optional reason.
 *
 *   ↑/↓ or k/j  select      a  approve      d  deny      q / Esc  quit
 *
 * The list follows the gateway by long-polling the queue API, so a new
 * request or a decision made elsewhere (Slack, another operator) shows at
 * once. Agent-controlled text is stripped of terminal control characters.
 */
import { useEffect, useState } from 'react';
import { Box, Text, render, useApp, useInput } from 'ink';
import type { ApprovalsClient } from '../src/approvals/client.js';
import type { PendingApproval } from '../src/approvals/queue.js';
import { describeAction, printable } from '../src/approvals/action-view.js';
import { formatDuration } from './approvals.js';

type Mode = { kind: 'browse' } | { kind: 'reason'; verdict: 'approve' | 'deny'; id: string; text: string };

export interface ApprovalsViewProps {
  client: ApprovalsClient;
  user: string;
  /** Seconds one long-poll may wait; also bounds how long quitting takes. */
  pollSec?: number;
  /** Lines of the selected action's body shown. */
  detailLines?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function ApprovalsView({ client, user, pollSec = 1, detailLines = 12 }: ApprovalsViewProps) {
  const { exit } = useApp();
  const [approvals, setApprovals] = useState<PendingApproval[] | null>(null);
  const [error, setError] = useState('');
  const [selectedId, setSelectedId] = useState<string | null>(null);
  const [mode, setMode] = useState<Mode>({ kind: 'browse' });
  const [message, setMessage] = useState('');
  const [now, setNow] = useState(Date.now());

  useEffect(() => {
    let stopped = false;
    void (async () => {
      let version: number | undefined;
      while (!stopped) {
        try {
          const list = await client.list(version === undefined ? {} : { since: version, waitSec: pollSec });
          if (stopped) return;
          version = list.version;
          setApprovals(list.approvals);
          setError('');
        } catch (err) {
          if (stopped) return;
          setError(err instanceof Error ? err.message : String(err));
          await sleep(1000);
        }
      }
    })();
    const tick = setInterval(() => setNow(Date.now()), 1000);
    return () => {
      stopped = true;
      clearInterval(tick);
    };
  }, [client, pollSec]);

  const list = approvals ?? [];
  const index = Math.max(0, list.findIndex((a) => a.id === selectedId));
  const selected = list[index];

  const submit = async (verdict: 'approve' | 'deny', id: string, reason: string) => {
    try {
      const res = await client.decide(id, verdict, user, reason || undefined);
      setMessage(
        verdict === 'deny'
          ? `Denied ${id}`
          : res.state === 'recorded'
            ? `Approval recorded for ${id} (${res.approval.approvals.length} of ${res.approval.requiredApprovals})`
            : `Approved ${id}`,
      );
    } catch (err) {
      setMessage(`Could not ${verdict} ${id}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  useInput((input, key) => {
    if (mode.kind === 'reason') {
      if (key.escape) {
        setMode({ kind: 'browse' });
        setMessage('Cancelled');
      } else if (key.return) {
        setMode({ kind: 'browse' });
        void submit(mode.verdict, mode.id, mode.text.trim());
      } else if (key.backspace || key.delete) {
        setMode({ ...mode, text: mode.text.slice(0, -1) });
      } else if (input && !key.ctrl && !key.meta) {
        setMode({ ...mode, text: (mode.text + input).slice(0, 500) });
      }
      return;
    }
    if (input === 'q' || key.escape) {
      exit();
      return;
    }
    if (list.length === 0) return;
    if (key.upArrow || input === 'k') setSelectedId(list[Math.max(0, index - 1)]!.id);
    else if (key.downArrow || input === 'j') setSelectedId(list[Math.min(list.length - 1, index + 1)]!.id);
    else if ((input === 'a' || input === 'd') && selected) {
      if (input === 'a' && selected.channel === 'slack') {
        setMessage(`${selected.id} is approved in Slack by its approvers; here it can only be denied`);
        return;
      }
      setMessage('');
      setMode({ kind: 'reason', verdict: input === 'a' ? 'approve' : 'deny', id: selected.id, text: '' });
    }
  });

  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>clawpatrol approvals</Text> — {client.baseUrl} — {approvals === null ? 'loading…' : `${list.length} waiting`} (as {user})
      </Text>
      {error ? <Text color="red">{printable(error)}</Text> : null}
      {approvals !== null && list.length === 0 ? <Text dimColor>No actions are waiting for approval.</Text> : null}
      {list.map((a, i) => (
        <Text key={a.id} inverse={i === index} wrap="truncate-end">
          {i === index ? '›' : ' '} {a.id}  {formatDuration(now - Date.parse(a.createdAt))}  {formatDuration(Date.parse(a.expiresAt) - now)}→
          {a.onTimeout}  {a.approver}
          {a.channel === 'slack' ? ' (slack)' : ''}
          {a.requiredApprovals > 1 ? `  ${a.approvals.length}/${a.requiredApprovals}` : ''}  {a.rule}  {printable(a.summary)}
        </Text>
      ))}
      {selected ? <Details approval={selected} lines={detailLines} /> : null}
      {mode.kind === 'reason' ? (
        <Text>
          {mode.verdict === 'approve' ? 'Approve' : 'Deny'} {mode.id} — reason (optional, Enter to confirm, Esc to cancel): {mode.text}
          <Text inverse> </Text>
        </Text>
      ) : (
        <Text dimColor>↑/↓ select · a approve · d deny · q quit</Text>
      )}
      {message ? <Text color="yellow">{printable(message)}</Text> : null}
    </Box>
  );
}

function Details({ approval, lines }: { approval: PendingApproval; lines: number }) {
  const view = approval.action;
  const what = describeAction(view);
  const body = printable(what.body).split('\n');
  const shown = body.slice(0, lines);
  const agent = view.peer ? `${view.peer.name ?? view.peer.id}${view.peer.name ? ` (${view.peer.id})` : ''}` : 'local';
  return (
    <Box flexDirection="column" borderStyle="single" paddingX={1}>
      <Text>
        <Text bold>{printable(what.title)}</Text> — rule {approval.rule}
        {approval.reason ? `: ${printable(approval.reason)}` : ''}
      </Text>
      <Text dimColor>
        agent {printable(agent)} · endpoint {view.endpoint ?? printable(view.host)} · credential {view.credential ?? '—'}
        {approval.approvals.length ? ` · approved so far by ${approval.approvals.join(', ')}` : ''}
      </Text>
      {shown.map((line, i) => (
        <Text key={i} wrap="truncate-end">
          {line || ' '}
        </Text>
      ))}
      {body.length > shown.length ? <Text dimColor>… {body.length - shown.length} more lines</Text> : null}
      {what.details.length ? <Text dimColor>{printable(what.details.join(' · '))}</Text> : null}
    </Box>
  );
}

export async function runApprovalsView(client: ApprovalsClient, user: string): Promise<void> {
  const app = render(<ApprovalsView client={client} user={user} />);
  await app.waitUntilExit();
}
