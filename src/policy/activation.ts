/**
 * Facts → the CEL activation rules are evaluated against. Built once per
 * decision. Unknown facts are left *undefined* so that reading them is a CEL
 * error (absorbed by `&&`/`||` when the other side decides, fail-closed
 * otherwise):
 *   - `sql.inspected == false` → verb, verbs, tables, functions, copy_program unknown
 *   - `sql.statement_truncated` → statement unknown as well (and everything derived from it)
 *   - `http.body_truncated`    → body, body_json unknown
 *   - a whole family missing from the action → that variable unknown
 * Case-insensitive facts (`http.method`, `sql.verb`, `k8s.verb`) are
 * lower-cased here; cel.ts lower-cases the literals they are compared with.
 */
import type { Facts } from './types.js';
import { ContentFactsValue, HttpFactsValue, K8sFactsValue, SqlFactsValue } from './cel.js';

function lower(v: unknown): unknown {
  return typeof v === 'string' ? v.toLowerCase() : v;
}

export function activation(facts: Facts): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const h = facts.http;
  if (h) {
    const known = h.body_truncated !== true;
    out['http'] = new HttpFactsValue(
      lower(h.method),
      h.path,
      h.raw_path,
      h.host,
      h.query,
      h.headers,
      known ? h.body : undefined,
      known ? h.body_json : undefined,
      !known,
    );
  }
  const s = facts.sql;
  if (s) {
    const truncated = s.statement_truncated === true;
    // Facts derived from the text are known only when the whole text was read and parsed.
    const known = s.inspected === true && !truncated;
    out['sql'] = new SqlFactsValue(
      known ? lower(s.verb) : undefined,
      known ? s.verbs : undefined,
      known ? s.tables : undefined,
      known ? s.functions : undefined,
      truncated ? undefined : s.statement,
      s.database,
      s.user,
      s.inspected === true,
      known ? s.copy_program === true : undefined,
      truncated,
    );
  }
  const k = facts.k8s;
  if (k) {
    out['k8s'] = new K8sFactsValue(lower(k.verb), k.resource, k.namespace, k.name, k.params, k.subresource, k.api_group, k.api_version, k.command);
  }
  const c = facts.content;
  if (c) out['content'] = new ContentFactsValue(c.findings, c.score, c.verdict);
  return out;
}
