/**
 * `raw` fixtures (`clawpatrol test`): wire bytes of one or more HTTP/1.1
 * requests, replayed through the same strict parser, path/host
 * normalisation and body inspection as live traffic. A request the live
 * gateway would refuse (smuggling, ambiguous path, SNI/Host tricks) makes the
 * fixture fail with the same reason.
 */
import { registerRawParser, type RawParseContext } from '../../policy/fixtures.js';
import { placeholdersFromHeaders, placeholderHeaders } from '../../policy/placeholders.js';
import type { Action } from '../../policy/types.js';
import { Http1RequestParser, type RequestHead } from './h1-parser.js';
import { parseAuthority, parseRequestTarget, normaliseHostName } from './target.js';
import { normalisePath } from './path.js';
import { inspectBody } from './body.js';
import { buildHttpFacts } from './facts.js';
import { fieldValue } from './headers.js';
import { shapeAction } from './extensions.js';

export function parseRawHttp(bytes: Buffer, ctx: RawParseContext): Action[] {
  const parser = new Http1RequestParser();
  parser.feed(bytes);
  const actions: Action[] = [];
  const limit = ctx.policy.model.gateway.limits.bodyBuffer;
  let head: RequestHead | null = null;
  let body: Buffer[] = [];
  for (let ev = parser.next(); ev !== null; ev = parser.next()) {
    if (ev.type === 'error') throw new Error(`${ev.status}: ${ev.reason}`);
    if (ev.type === 'head') {
      head = ev.head;
      body = [];
      if (head.method === 'CONNECT') throw new Error('CONNECT carries no request to decide; record the requests inside the tunnel');
    } else if (ev.type === 'body') {
      body.push(ev.data);
    } else if (head) {
      actions.push(toAction(head, Buffer.concat(body), ctx, limit));
      head = null;
    }
  }
  if (head || parser.midMessage) throw new Error('the bytes end in the middle of a request');
  return actions;
}

function toAction(head: RequestHead, body: Buffer, ctx: RawParseContext, limit: number): Action {
  const target = parseRequestTarget(head.target, head.method);
  const hostHeader = fieldValue(head.headers, 'host');
  const authority = target.form === 'absolute' ? target.authority! : hostHeader;
  const { host, port } = authority ? parseAuthority(authority) : { host: normaliseHostName(ctx.host), port: ctx.port };
  const http = buildHttpFacts({
    method: head.method,
    rawPath: target.rawPath,
    rawQuery: target.rawQuery,
    host,
    headers: head.headers,
    body: inspectBody(body, { complete: true, contentEncoding: fieldValue(head.headers, 'content-encoding'), contentType: fieldValue(head.headers, 'content-type'), limit }),
    normalised: normalisePath(target.rawPath),
  });
  const shaped = shapeAction(ctx.endpoint, http);
  const action: Action = {
    family: shaped.family,
    host,
    placeholders: placeholdersFromHeaders(http.headers, placeholderHeaders(ctx.policy.model)),
    facts: shaped.facts,
  };
  const p = port ?? ctx.port;
  if (p !== undefined) action.port = p;
  if (ctx.profile !== undefined) action.profile = ctx.profile;
  return action;
}

registerRawParser('http', parseRawHttp);
