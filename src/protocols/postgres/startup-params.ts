/**
 * Which of the agent's startup parameters reach the server.
 *
 * Forwarded as they are: presentation settings that change neither who the
 * session is nor how SQL is tokenised — application_name, client_encoding
 * (ASCII-safe encodings only), DateStyle, IntervalStyle, TimeZone,
 * extra_float_digits, bytea_output, search_path and the statement/lock/idle
 * timeouts. `user` and `database` are the gateway's business, `replication`
 * is refused, and everything else (role, session_authorization, …) is
 * dropped.
 *
 * `options` can set any GUC (`-c role=admin`), so it is translated into the
 * equivalent `SET` statements and decided like SQL; it is forwarded only when
 * a rule explicitly allows those statements.
 */
import { isAsciiUnsafeClientEncoding } from './wire.js';

const FORWARDED = new Map(
  [
    'application_name',
    'client_encoding',
    'DateStyle',
    'IntervalStyle',
    'TimeZone',
    'extra_float_digits',
    'bytea_output',
    'search_path',
    'statement_timeout',
    'lock_timeout',
    'idle_in_transaction_session_timeout',
  ].map((n) => [n.toLowerCase(), n]),
);

export interface StartupPlan {
  user: string;
  database: string | undefined;
  /** Parameters to send upstream (besides user/database/options). */
  forward: Array<[string, string]>;
  /** The raw `options` value, when the agent sent one. */
  options: string | undefined;
  /** Parameters the gateway dropped (for the log). */
  dropped: string[];
  /** `_pq_.` protocol extensions the agent asked for (none are supported). */
  protocolOptions: string[];
}

export class StartupRefused extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

export function planStartup(params: Array<[string, string]>): StartupPlan {
  const plan: StartupPlan = { user: '', database: undefined, forward: [], options: undefined, dropped: [], protocolOptions: [] };
  for (const [name, value] of params) {
    const key = name.toLowerCase();
    if (name === 'user') plan.user = value;
    else if (name === 'database') plan.database = value === '' ? undefined : value;
    else if (name === 'options') plan.options = value;
    else if (name.startsWith('_pq_.')) plan.protocolOptions.push(name);
    else if (name === 'replication') {
      if (!['false', 'off', 'no', '0'].includes(value.toLowerCase())) {
        throw new StartupRefused('replication connections are not supported through the gateway', '0A000');
      }
    } else if (FORWARDED.has(key)) {
      if (key === 'client_encoding' && isAsciiUnsafeClientEncoding(value)) {
        throw new StartupRefused(
          `client_encoding ${value} is not supported through the gateway (ASCII bytes can be part of a multibyte character)`,
          '0A000',
        );
      }
      plan.forward.push([FORWARDED.get(key)!, value]);
    } else plan.dropped.push(name);
  }
  if (plan.user === '') throw new StartupRefused('no PostgreSQL user name specified in startup packet', '28000');
  return plan;
}

/**
 * `options` → `SET` statements, splitting exactly as the server does
 * (pg_split_opts: whitespace separates, backslash escapes the next
 * character). Only `-c name=value` / `-cname=value` / `--name=value` are
 * accepted; any other switch is refused because it has no SQL equivalent
 * a rule could judge.
 */
export function optionsToSql(options: string): string {
  const tokens: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < options.length; i++) {
    const ch = options[i]!;
    if (ch === '\\' && i + 1 < options.length) {
      cur += options[++i];
      has = true;
    } else if (/\s/.test(ch)) {
      if (has) tokens.push(cur);
      cur = '';
      has = false;
    } else {
      cur += ch;
      has = true;
    }
  }
  if (has) tokens.push(cur);

  const sets: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    let assignment: string | undefined;
    if (t === '-c') assignment = tokens[++i];
    else if (t.startsWith('-c')) assignment = t.slice(2);
    else if (t.startsWith('--')) assignment = t.slice(2);
    if (assignment === undefined) {
      throw new StartupRefused(`startup option "${t}" is not supported through the gateway; use -c name=value`, '0A000');
    }
    const eq = assignment.indexOf('=');
    const name = eq < 0 ? '' : assignment.slice(0, eq).replace(/-/g, '_');
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name)) {
      throw new StartupRefused(`invalid startup option "${assignment}": expected name=value`, '42601');
    }
    const value = assignment.slice(eq + 1);
    sets.push(`SET ${name} TO '${value.replace(/'/g, "''")}'`);
  }
  if (sets.length === 0) throw new StartupRefused('empty startup options', '42601');
  return sets.join('; ');
}
