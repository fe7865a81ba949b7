/**
 * Answers the gateway gives itself (deny, malformed request, upstream
 * failure), in the agent's protocol: JSON when it accepts JSON, plain text
 * otherwise, and a trailers-only gRPC status for gRPC calls.
 */
import type { HeaderField } from './h1-parser.js';
import type { FieldList } from './headers.js';
import type { ResponseSink } from './types.js';

export interface LocalAnswer {
  status: number;
  /** Told to the agent. */
  reason: string;
  /** Rule that denied, when there is one. */
  rule?: string | undefined;
  kind: 'denied' | 'bad_request' | 'upstream_error';
}

const GRPC_CODE: Record<number, number> = {
  400: 3, // INVALID_ARGUMENT
  403: 7, // PERMISSION_DENIED
  421: 3,
  431: 3,
  502: 14, // UNAVAILABLE
  503: 14,
  504: 4, // DEADLINE_EXCEEDED
};

function header(headers: readonly HeaderField[], name: string): string {
  return headers
    .filter((h) => h.name.toLowerCase() === name)
    .map((h) => h.value)
    .join(', ');
}

export function isGrpc(headers: readonly HeaderField[]): boolean {
  return header(headers, 'content-type').toLowerCase().startsWith('application/grpc');
}

/** Write a complete local answer. `closing` adds nothing here; the adapter decides about the connection. */
export function answer(sink: ResponseSink, request: { protocol: 'h1' | 'h2'; method: string; headers: readonly HeaderField[] }, a: LocalAnswer): void {
  if (sink.started) {
    sink.abort();
    return;
  }
  const base: FieldList = [
    ['cache-control', 'no-store'],
    ['x-clawpatrol', a.kind],
  ];
  if (request.protocol === 'h2' && isGrpc(request.headers)) {
    // gRPC clients read the status from grpc-status, not from :status.
    sink.head(
      200,
      [
        ['content-type', 'application/grpc'],
        ['grpc-status', String(GRPC_CODE[a.status] ?? 2)],
        ['grpc-message', encodeGrpcMessage(`clawpatrol: ${a.reason}`)],
        ...base,
      ],
      'none',
    );
    sink.end();
    return;
  }
  const wantsJson = /json/i.test(header(request.headers, 'accept'));
  const body = wantsJson
    ? Buffer.from(
        JSON.stringify({
          error: { type: a.kind === 'denied' ? 'permission_denied' : a.kind, message: `clawpatrol: ${a.reason}` },
          ...(a.rule ? { rule: a.rule } : {}),
        }) + '\n',
      )
    : Buffer.from(`clawpatrol: ${a.reason}\n`);
  const fields: FieldList = [['content-type', wantsJson ? 'application/json' : 'text/plain; charset=utf-8'], ...base];
  if (request.method === 'HEAD') {
    sink.head(a.status, [...fields, ['content-length', String(body.length)]], 'none');
    sink.end();
    return;
  }
  sink.head(a.status, fields, body.length);
  // A small body; if the agent is already gone there is nobody to tell.
  sink.write(body).catch(() => undefined);
  sink.end();
}

/** grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2 spec). */
function encodeGrpcMessage(s: string): string {
  return Array.from(Buffer.from(s, 'utf8'))
    .map((b) => (b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0')))
    .join('');
}
