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
import { useEffect, useRef, useState } from 'react';
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

  // Ink may call a handler from an earlier render (effects re-subscribe after
  // the frame is drawn), so the handler reads the latest state through a ref
  // and changes state only with functional updates.
  const latest = useRef({ list, index, selected, mode });
  latest.current = { list, index, selected, mode };

  useInput((input, key) => {
    const now = latest.current;
    if (now.mode.kind === 'reason') {
      const current = now.mode;
      if (key.escape) {
        latest.current.mode = { kind: 'browse' };
        setMode({ kind: 'browse' });
        setMessage('Cancelled');
      } else if (key.return) {
        latest.current.mode = { kind: 'browse' };
        setMode({ kind: 'browse' });
        void submit(current.verdict, current.id, current.text.trim());
      } else if (key.backspace || key.delete) {
        const next = { ...current, text: current.text.slice(0, -1) };
        latest.current.mode = next;
        setMode(next);
      } else if (input && !key.ctrl && !key.meta) {
        const next = { ...current, text: (current.text + input).slice(0, 500) };
        latest.current.mode = next;
        setMode(next);
      }
      return;
    }
    if (input === 'q' || key.escape) {
      exit();
      return;
    }
    const { list: rows, index: at, selected: row } = now;
    if (rows.length === 0) return;
    if (key.upArrow || input === 'k') setSelectedId(rows[Math.max(0, at - 1)]!.id);
    else if (key.downArrow || input === 'j') setSelectedId(rows[Math.min(rows.length - 1, at + 1)]!.id);
    else if ((input === 'a' || input === 'd') && row) {
      if (input === 'a' && row.channel === 'slack') {
        setMessage(`${row.id} is approved in Slack by its approvers; here it can only be denied`);
        return;
      }
      const next: Mode = { kind: 'reason', verdict: input === 'a' ? 'approve' : 'deny', id: row.id, text: '' };
      latest.current.mode = next;
      setMessage('');
      setMode(next);
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
