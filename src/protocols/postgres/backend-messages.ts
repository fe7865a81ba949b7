/**
 * Backend (server → client) messages the gateway writes itself when it acts
 * as the agent's PostgreSQL server, and the few field readers it needs for
 * backend messages it inspects on the data path. pg-protocol serialises only
 * frontend messages, so these builders are written here; they are tiny.
 */

function frame(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstrings(values: string[]): Buffer {
  return Buffer.concat(values.map((v) => Buffer.from(v.replace(/\0/g, '') + '\0', 'utf8')));
}

export function authenticationOk(): Buffer {
  const body = Buffer.alloc(4);
  return frame('R', body);
}

export function parameterStatus(name: string, value: string): Buffer {
  return frame('S', cstrings([name, value]));
}

export function backendKeyData(processId: number, secretKey: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeInt32BE(processId, 0);
  body.writeInt32BE(secretKey, 4);
  return frame('K', body);
}

export type TxStatus = 'I' | 'T' | 'E';

export function readyForQuery(status: TxStatus): Buffer {
  return frame('Z', Buffer.from(status, 'latin1'));
}

/** NegotiateProtocolVersion: the newest minor version we speak and the `_pq_.` options we ignored. */
export function negotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeInt32BE(newestMinor, 0);
  head.writeInt32BE(unrecognized.length, 4);
  return frame('v', Buffer.concat([head, cstrings(unrecognized)]));
}

export interface ErrorFields {
  severity: 'ERROR' | 'FATAL' | 'NOTICE' | 'WARNING';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fieldsBody(f: ErrorFields): Buffer {
  const parts: string[] = ['S' + f.severity, 'V' + f.severity, 'C' + f.code, 'M' + f.message];
  if (f.detail) parts.push('D' + f.detail);
  if (f.hint) parts.push('H' + f.hint);
  return Buffer.concat([cstrings(parts), Buffer.from([0])]);
}

export function errorResponse(f: ErrorFields): Buffer {
  return frame('E', fieldsBody(f));
}

export function noticeResponse(f: ErrorFields): Buffer {
  return frame('N', fieldsBody(f));
}

/** One-byte answers to SSLRequest / GSSENCRequest. */
export const SSL_ACCEPT = Buffer.from('S', 'latin1');
export const SSL_REFUSE = Buffer.from('N', 'latin1');

// ───────────────────────────── readers ────────────────────────────────────

/** Fields of an ErrorResponse / NoticeResponse body keyed by their one-letter code. */
export function readErrorFields(body: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < body.length) {
    const code = body[pos]!;
    if (code === 0) break;
    const end = body.indexOf(0, pos + 1);
    if (end < 0) break;
    out.set(String.fromCharCode(code), body.toString('utf8', pos + 1, end));
    pos = end + 1;
  }
  return out;
}

/** Name and value of a ParameterStatus body. */
export function readParameterStatus(body: Buffer): [string, string] | null {
  const a = body.indexOf(0);
  if (a < 0) return null;
  const b = body.indexOf(0, a + 1);
  if (b < 0) return null;
  return [body.toString('utf8', 0, a), body.toString('utf8', a + 1, b)];
}

/** Command tag of a CommandComplete body (`SELECT 3`, `INSERT 0 1`). */
export function readCommandTag(body: Buffer): string {
  const end = body.indexOf(0);
  return body.toString('utf8', 0, end < 0 ? body.length : end);
}
