/**
 * `raw` fixtures for Postgres endpoints: the bytes an agent sent (optionally
 * starting with its StartupMessage), replayed through the engine's own
 * decoder and statement memory into the Actions the live gateway would
 * decide — one per Query, Parse, uncovered Execute and FunctionCall, plus
 * the session start (phase `session_start`: credential resolution, no rules)
 * and startup `options` (phase `startup_options`) when the bytes carry a
 * StartupMessage. Every message is assumed allowed (the fixture asserts the
 * combined verdict), so a Parse covers the Executes of its batch exactly as
 * it does live. Malformed framing fails the fixture.
 */
import type { Action } from '../../policy/types.js';
import { registerRawParser, type RawParseContext } from '../../policy/fixtures.js';
import { FrontendDecoder, type DecodeEvent } from './frontend-decoder.js';
import { initSqlParser } from './sql.js';
import { StatementMemory, messageAction, sessionStartAction, startupOptionsAction, type ActionContext, type DecisionInput } from './statements.js';
import { optionsToSql, planStartup } from './startup-params.js';
import { CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE } from './wire.js';

function startsWithStartupPacket(bytes: Buffer): boolean {
  if (bytes.length < 8) return false;
  const code = bytes.readInt32BE(4);
  return code === PROTOCOL_3_0 || code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE || code === CANCEL_REQUEST_CODE;
}

export function parsePostgresRaw(bytes: Buffer, ctx: RawParseContext): Action[] {
  const maxBuffered = ctx.policy.model.gateway.limits.bodyBuffer;
  const decoder = new FrontendDecoder({ maxBuffered });
  if (!startsWithStartupPacket(bytes)) decoder.phase = 'typed';
  decoder.push(bytes);

  const actx: ActionContext = {
    endpointId: ctx.endpoint?.id ?? '',
    host: ctx.host,
    port: ctx.port ?? ctx.endpoint?.hosts[0]?.port ?? 5432,
    ...(ctx.profile !== undefined ? { profile: ctx.profile } : {}),
    user: '',
    database: ctx.endpoint?.database ?? '',
  };
  let fromStartup = false;
  const memory = new StatementMemory();
  const actions: Action[] = [];
  let batch = 0;
  let executed = false;

  const push = (action: Action): void => {
    if (!fromStartup) {
      // Without a StartupMessage the fixture's own user/database/placeholders apply.
      delete action.user;
      delete action.database;
      delete action.placeholders;
    }
    actions.push(action);
  };
  const emit = (input: DecisionInput): void => {
    const seen = memory.decisionInput(input);
    // A replay has no server: every allowed message is taken to succeed.
    memory.allowed(input, seen.analysis, seen.text, batch).confirmed?.();
    push(messageAction(actx, seen));
  };

  const onEvent = (ev: DecodeEvent): void => {
    switch (ev.kind) {
      case 'startup': {
        if (ev.packet.type !== 'Startup') return;
        const plan = planStartup(ev.packet.params);
        actx.user = plan.user;
        actx.database = plan.database ?? ctx.endpoint?.database ?? '';
        fromStartup = true;
        decoder.phase = 'typed';
        push(sessionStartAction(actx));
        if (plan.options !== undefined) push(startupOptionsAction(actx, optionsToSql(plan.options), memory));
        return;
      }
      case 'large-start': {
        const h = ev.head;
        const oversize = ev.frameLength - 5;
        if (h.type === 'Q') {
          emit({ kind: 'Q', sql: '', oversize, maxBuffered });
          batch++;
          executed = false;
        } else if (h.type === 'P') {
          emit({ kind: 'P', name: h.name, sql: '', oversize, maxBuffered });
        } else if (h.type === 'B') {
          memory.bind(h.portal, h.statement, batch);
          executed = true;
        } else if (h.type === 'F') {
          emit({ kind: 'F' });
          batch++;
          executed = false;
        }
        return;
      }
      case 'message': {
        const m = ev.message;
        switch (m.type) {
          case 'Q':
            emit({ kind: 'Q', sql: m.sql, settingsUncertain: executed });
            batch++;
            executed = false;
            return;
          case 'P':
            emit({ kind: 'P', name: m.name, sql: m.sql, settingsUncertain: executed });
            return;
          case 'B':
            memory.bind(m.portal, m.statement, batch);
            executed = true;
            return;
          case 'E':
            if (!memory.covers(m.portal, batch)) emit({ kind: 'E', portal: m.portal });
            executed = true;
            return;
          case 'F':
            emit({ kind: 'F' });
            batch++;
            executed = false;
            return;
          case 'C':
            if (m.target === 'S') memory.closing(m.name).confirmed?.();
            else memory.closePortal(m.name);
            return;
          case 'S':
            batch++;
            executed = false;
            return;
          default:
            return;
        }
      }
      default:
        return;
    }
  };

  for (let ev = decoder.next(); ev; ev = decoder.next()) onEvent(ev);
  if (decoder.bufferedBytes > 0) throw new Error(`${decoder.bufferedBytes} trailing byte(s) do not form a complete message`);
  return actions;
}

await initSqlParser();
registerRawParser('postgres', parsePostgresRaw);
