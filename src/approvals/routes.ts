/**
 * The approvals queue on the gateway's control server (admin token required):
 *
 *   GET  /api/approvals                    → { version, approvals: PendingApproval[] }
 *        ?since=<version>&wait=<seconds>   long-poll: answers when the queue changes (≤ 30 s)
 *   GET  /api/approvals/<id>               → PendingApproval
 *   POST /api/approvals/<id>/approve       { user, reason?, via? } → { state, approval }
 *   POST /api/approvals/<id>/deny          { user, reason?, via? } → { state, approval }
 *
 * `via` is `cli` (default) or `dashboard`; the stage records `<via>:<user>`.
 */
import type { ControlRoute } from '../gateway/contracts.js';
import { sendJson } from '../gateway/control-server.js';
import type { ApprovalQueue, DecidedVia } from './queue.js';

export const APPROVALS_PATH = '/api/approvals';
const MAX_WAIT_SEC = 30;

export function queueRoute(queue: ApprovalQueue): ControlRoute {
  return async (req, res, ctx) => {
    const path = ctx.url.pathname;
    if (path !== APPROVALS_PATH && !path.startsWith(`${APPROVALS_PATH}/`)) return false;
    if (!ctx.admin) {
      sendJson(res, 401, { error: 'the approvals API needs the gateway admin token (Authorization: Bearer …)' });
      return true;
    }
    let parts: string[];
    try {
      parts = path.slice(APPROVALS_PATH.length).split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      // `%E0` is no UTF-8: the caller's mistake (400), not the gateway's (it was a logged 500).
      sendJson(res, 400, { error: 'the approval id is not valid percent-encoding' });
      return true;
    }
    const method = req.method ?? 'GET';

    if (parts.length === 0) {
      if (method !== 'GET') return methodNotAllowed(res, 'GET');
      const since = Number(ctx.url.searchParams.get('since'));
      const wait = Math.min(MAX_WAIT_SEC, Math.max(0, Number(ctx.url.searchParams.get('wait')) || 0));
      if (wait > 0 && Number.isInteger(since)) {
        const gone = new AbortController();
        const onClose = () => gone.abort();
        res.on('close', onClose);
        await queue.waitForChange(since, wait * 1000, gone.signal);
        res.off('close', onClose);
        if (gone.signal.aborted) return true;
      }
      sendJson(res, 200, { version: queue.version, approvals: queue.list() });
      return true;
    }

    const id = parts[0]!;
    if (parts.length === 1) {
      if (method !== 'GET') return methodNotAllowed(res, 'GET');
      const entry = queue.get(id);
      if (!entry) sendJson(res, 404, { error: `no pending approval ${JSON.stringify(id)}` });
      else sendJson(res, 200, entry);
      return true;
    }

    const action = parts[1];
    if (parts.length === 2 && (action === 'approve' || action === 'deny')) {
      if (method !== 'POST') return methodNotAllowed(res, 'POST');
      const body = parseBody(await ctx.body());
      if ('error' in body) {
        sendJson(res, 400, { error: body.error });
        return true;
      }
      const result = queue.decide(id, action === 'approve' ? 'allow' : 'deny', { via: body.via, user: body.user }, body.reason);
      if (!result.ok) sendJson(res, result.status, { error: result.error });
      else sendJson(res, 200, { state: result.state, approval: result.entry });
      return true;
    }
    sendJson(res, 404, { error: `no such endpoint: ${method} ${path}` });
    return true;
  };
}

function parseBody(raw: Buffer): { user: string; reason: string; via: Exclude<DecidedVia, 'slack'> } | { error: string } {
  let value: unknown;
  try {
    value = raw.length ? JSON.parse(raw.toString('utf8')) : {};
  } catch {
    return { error: 'the body must be JSON: { "user": "…", "reason": "…" }' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { error: 'the body must be a JSON object' };
  const { user, reason, via, ...rest } = value as Record<string, unknown>;
  if (Object.keys(rest).length) return { error: `unknown fields: ${Object.keys(rest).join(', ')}` };
  if (typeof user !== 'string' || !user) return { error: '"user" (who decides) is required' };
  if (reason !== undefined && typeof reason !== 'string') return { error: '"reason" must be a string' };
  if (via !== undefined && via !== 'cli' && via !== 'dashboard') return { error: '"via" must be "cli" or "dashboard"' };
  return { user, reason: reason ?? '', via: via ?? 'cli' };
}

function methodNotAllowed(res: Parameters<ControlRoute>[1], allow: string): true {
  res.setHeader('allow', allow);
  sendJson(res, 405, { error: `use ${allow}` });
  return true;
}
