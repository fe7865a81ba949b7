/**
 * Facts → the CEL activation rules are evaluated against. Built once per
 * decision. Unknown facts are left *out* so that reading them is a CEL error
 * (absorbed by `&&`/`||` when the other side decides, fail-closed otherwise):
 *   - `sql.inspected == false` → verb, verbs, tables, functions, copy_program unknown
 *   - `http.body_truncated`    → body, body_json unknown
 *   - a whole family missing from the action → that variable unknown
 * Case-insensitive facts (`http.method`, `sql.verb`, `k8s.verb`) are
 * lower-cased here; cel.ts lower-cases the literals they are compared with.
 */
import type { Facts } from './types.js';

export function activation(facts: Facts): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const h = facts.http;
  if (h) {
    const http: Record<string, unknown> = {
      method: typeof h.method === 'string' ? h.method.toLowerCase() : h.method,
      path: h.path,
      raw_path: h.raw_path,
      host: h.host,
      query: h.query,
      headers: h.headers,
      body_truncated: h.body_truncated === true,
    };
    if (h.body_truncated !== true) {
      http['body'] = h.body;
      http['body_json'] = h.body_json;
    }
    out['http'] = http;
  }
  const s = facts.sql;
  if (s) {
    const sql: Record<string, unknown> = {
      statement: s.statement,
      database: s.database,
      user: s.user,
      inspected: s.inspected === true,
    };
    if (s.inspected === true) {
      sql['verb'] = typeof s.verb === 'string' ? s.verb.toLowerCase() : s.verb;
      sql['verbs'] = s.verbs;
      sql['tables'] = s.tables;
      sql['functions'] = s.functions;
      sql['copy_program'] = s.copy_program === true;
    }
    out['sql'] = sql;
  }
  const k = facts.k8s;
  if (k) out['k8s'] = { ...k, verb: typeof k.verb === 'string' ? k.verb.toLowerCase() : k.verb };
  if (facts.content) out['content'] = facts.content;
  return out;
}
