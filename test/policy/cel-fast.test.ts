/**
 * The CEL fast path (src/policy/cel-fast.ts) against cel-js itself: on
 * generated conditions and facts — unknown facts and values of unexpected
 * types included — a condition's `evaluate` (fast path, falling back to
 * cel-js when unsure) gives exactly what cel-js alone gives: the same bool,
 * or the same error.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { compileCondition, fieldType, type CompiledCondition } from '../../src/policy/cel.js';
import { UNSURE, compileFast } from '../../src/policy/cel-fast.js';
import { activation } from '../../src/policy/activation.js';
import type { Facts, Family } from '../../src/policy/types.js';
import { fileURLToPath } from 'node:url';
import { loadPolicy } from '../../src/policy/index.js';
import { compile, HEADER } from './helpers.js';
import { benchRules } from '../../bench/postgres/policy.js';

const WORDS = ['select', 'SELECT', 'delete', 'drop', 'public.users', 'users', 'pg_read_file', 'a', 'A', '', 'x y', 'app', '/admin', 'post'];
const word = fc.constantFrom(...WORDS);
const lit = word.map((w) => `'${w}'`);
const litList = fc.array(lit, { maxLength: 4 }).map((xs) => `[${xs.join(', ')}]`);

const SQL_LISTS = ['sql.verbs', 'sql.tables', 'sql.functions'];
const SQL_STRINGS = ['sql.verb', 'sql.statement', 'sql.database', 'sql.user'];
const SQL_BOOLS = ['sql.copy_program', 'sql.inspected', 'sql.statement_truncated'];

const sqlAtom: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(fc.constantFrom(...SQL_STRINGS), fc.constantFrom('==', '!='), lit).map(([f, op, l]) => `${f} ${op} ${l}`),
  fc.tuple(lit, fc.constantFrom(...SQL_STRINGS)).map(([l, f]) => `${l} == ${f}`),
  fc.tuple(fc.constantFrom(...SQL_STRINGS), fc.constantFrom(...SQL_STRINGS)).map(([a, b]) => `${a} == ${b}`),
  fc.tuple(lit, fc.constantFrom(...SQL_LISTS)).map(([l, f]) => `${l} in ${f}`),
  fc.tuple(fc.constantFrom(...SQL_STRINGS), litList).map(([f, l]) => `${f} in ${l}`),
  fc.tuple(fc.constantFrom('contains', 'intersects', 'equivalent'), fc.oneof(litList, fc.constantFrom(...SQL_LISTS)), fc.oneof(litList, fc.constantFrom(...SQL_LISTS))).map(
    ([fn, a, b]) => `sets.${fn}(${a}, ${b})`,
  ),
  fc.tuple(fc.constantFrom(...SQL_STRINGS), fc.constantFrom('contains', 'startsWith', 'endsWith'), fc.oneof(lit, fc.constantFrom(...SQL_STRINGS))).map(
    ([f, m, a]) => `${f}.${m}(${a})`,
  ),
  fc.constantFrom(...SQL_BOOLS),
  fc.tuple(fc.constantFrom(...SQL_BOOLS), fc.constantFrom('==', '!='), fc.boolean()).map(([f, op, b]) => `${f} ${op} ${b}`),
  fc.constantFrom('true', 'false'),
  // Outside the subset: these must simply go to cel-js.
  fc.constantFrom("size(sql.tables) > 1", "sql.statement.matches('^S')", "sql.tables.exists(t, t == 'users')", "sql.verb == 'select' ? true : false"),
);

function conditions(atom: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.letrec((tie) => ({
    cond: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      atom,
      fc.tuple(tie('cond'), fc.constantFrom('&&', '||'), tie('cond')).map(([a, op, b]) => `(${a} ${op} ${b})`),
      tie('cond').map((c) => `!(${c})`),
    ),
  })).cond as fc.Arbitrary<string>;
}

/** Strings, and now and then a value of the wrong type (facts from a hand-written fixture can be anything). */
const str = fc.oneof({ weight: 8, arbitrary: word }, { weight: 1, arbitrary: fc.constantFrom(5, null, true) as fc.Arbitrary<unknown> });
const strList = fc.array(str, { maxLength: 4 });

const sqlFacts: fc.Arbitrary<Facts> = fc
  .record({
    verb: str,
    verbs: strList,
    tables: strList,
    functions: strList,
    statement: fc.array(word, { maxLength: 4 }).map((ws) => ws.join(' ')),
    database: str,
    user: str,
    inspected: fc.boolean(),
    copy_program: fc.option(fc.boolean(), { nil: undefined }),
    statement_truncated: fc.option(fc.boolean(), { nil: undefined }),
  })
  .map((sql) => ({ sql }) as unknown as Facts);

type Outcome = { value: unknown } | { error: string };
function outcome(f: (a: Record<string, unknown>) => unknown, act: Record<string, unknown>): Outcome {
  try {
    return { value: f(act) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

function compiled(source: string, family: Family): CompiledCondition | null {
  const r = compileCondition(source, family);
  return r.ok ? r.condition : null;
}

function differential(family: Family, conds: fc.Arbitrary<string>, facts: fc.Arbitrary<Facts>, runs: number): { fastAnswers: number; total: number } {
  let fastAnswers = 0;
  let total = 0;
  fc.assert(
    fc.property(conds, facts, (source, f) => {
      const c = compiled(source, family);
      if (!c) return; // a generated condition the checker rejects (types) is not a policy
      const act = activation(f);
      expect(outcome(c.evaluate, act), source).toEqual(outcome(c.celEvaluate, act));
      const fast = compileFast((c.celEvaluate as unknown as { ast: Parameters<typeof compileFast>[0] }).ast, fieldType);
      total++;
      if (fast && fast(act) !== UNSURE) fastAnswers++;
    }),
    { numRuns: runs },
  );
  return { fastAnswers, total };
}

describe('CEL fast path agrees with cel-js', () => {
  it('sql conditions over generated facts (unknown facts and wrong types included)', () => {
    const { fastAnswers, total } = differential('sql', conditions(sqlAtom), sqlFacts, 20_000);
    // Not vacuous: the fast path answers most of them itself.
    expect(total).toBeGreaterThan(15_000);
    expect(fastAnswers / total).toBeGreaterThan(0.4);
  });

  it('http conditions, maps and bodies included', () => {
    const httpAtom = fc.oneof(
      fc.tuple(fc.constantFrom('http.method', 'http.path', 'http.host', 'http.body'), fc.constantFrom('==', '!='), lit).map(([f, op, l]) => `${f} ${op} ${l}`),
      fc.tuple(fc.constantFrom('http.path', 'http.body'), fc.constantFrom('startsWith', 'contains'), lit).map(([f, m, l]) => `${f}.${m}(${l})`),
      fc.tuple(lit, fc.constantFrom('http.headers', 'http.query')).map(([l, m]) => `${l} in ${m}`),
      fc.tuple(fc.constantFrom('http.host', 'http.path'), fc.constantFrom('http.headers', 'http.query')).map(([f, m]) => `${f} in ${m}`),
      fc.tuple(fc.oneof(lit, fc.constant('http.host')), fc.constantFrom('==', '!='), lit).map(([k, op, l]) => `http.headers[${k}] ${op} ${l}`),
      fc.tuple(lit, fc.constantFrom('startsWith', 'contains'), lit).map(([k, m, l]) => `http.headers[${k}].${m}(${l})`),
      fc.tuple(lit, litList).map(([k, l]) => `http.headers[${k}] in ${l}`),
      fc.tuple(lit).map(([k]) => `http.headers[${k}] == http.host`),
      fc.constantFrom('http.body_truncated', "has(http.body_json.a)", "http.method in ['post', 'put']", "http.query['a'] == ['b']", "size(http.headers) > 1"),
    );
    // Maps as the engines build them (plain objects, null-prototype ones too), now and then with a
    // value of the wrong type or as something else entirely (a Map, an array, a string).
    const strMap = fc.dictionary(word, str, { maxKeys: 3 });
    const listMap = fc.dictionary(word, strList, { maxKeys: 3 });
    const asBuilt = <T extends object>(m: fc.Arbitrary<T>) =>
      fc.oneof(
        { weight: 6, arbitrary: m as fc.Arbitrary<unknown> },
        { weight: 2, arbitrary: m.map((x) => Object.assign(Object.create(null), x) as unknown) },
        { weight: 1, arbitrary: m.map((x) => new Map(Object.entries(x)) as unknown) },
        { weight: 1, arbitrary: fc.constantFrom<unknown>([], 'a', null, undefined) },
      );
    const httpFacts = fc
      .record({
        method: fc.constantFrom('get', 'post'),
        path: fc.constantFrom('/', '/admin/x', '/a'),
        host: word,
        headers: asBuilt(strMap),
        query: asBuilt(listMap),
        body: fc.array(word, { maxLength: 3 }).map((ws) => ws.join(' ')),
        body_truncated: fc.boolean(),
      })
      .map((h) => ({ http: { ...h, raw_path: h.path, body_json: {} } }) as unknown as Facts);
    const { fastAnswers, total } = differential('http', conditions(httpAtom), httpFacts, 20_000);
    expect(fastAnswers / total).toBeGreaterThan(0.3);
  });

  it('map lookups and key presence take the fast path', () => {
    const facts = { http: { method: 'get', path: '/', raw_path: '/', host: 'h', headers: { 'x-team': 'ops' }, query: { admin: ['1'] }, body: '', body_json: {} } } as unknown as Facts;
    const act = activation(facts);
    for (const [source, want] of [
      ["'x-team' in http.headers && http.headers['x-team'] == 'ops'", true],
      ["'admin' in http.query", true],
      ["'x-other' in http.headers", false],
      ["http.headers['x-team'].startsWith('op') && !('debug' in http.query)", true],
      // The HTTPS benchmark's rules (bench/http/common.ts).
      ["http.path.startsWith('/private/0/') || ('x-team' in http.headers && http.headers['x-team'] == '0')", false],
      ["http.method in ['GET', 'HEAD'] && !('admin' in http.query)", false],
    ] as const) {
      const c = compiled(source, 'http')!;
      expect(c.fast, source).toBe(true);
      const fast = compileFast((c.celEvaluate as unknown as { ast: Parameters<typeof compileFast>[0] }).ast, fieldType)!;
      expect(fast(act), source).toBe(want);
      expect(c.celEvaluate(act), source).toBe(want);
    }
    // A missing key is an error in cel-js: the fast path leaves it to cel-js.
    const missing = compiled("http.headers['x-none'] == 'a'", 'http')!;
    const fast = compileFast((missing.celEvaluate as unknown as { ast: Parameters<typeof compileFast>[0] }).ast, fieldType)!;
    expect(fast(act)).toBe(UNSURE);
    expect('error' in outcome(missing.evaluate, act)).toBe(true);
  });

  it('facts missing entirely (a family the action does not carry) are unknown on both paths', () => {
    const c = compiled("sql.verb == 'select' || content.score > 0.5", 'sql')!;
    expect(outcome(c.evaluate, activation({}))).toEqual(outcome(c.celEvaluate, activation({})));
    const d = compiled("sql.verb == 'select'", 'sql')!;
    expect('error' in outcome(d.evaluate, activation({}))).toBe(true);
  });

  it('the SQL rules of the starter policies and of the benchmark policy take the fast path', async () => {
    const bench = await compile(`${HEADER}
endpoint "postgres" "bench" { host = "db:5432" }
${benchRules('postgres.bench')}
`);
    expect(bench.model.rules).toHaveLength(20);
    const starter = await loadPolicy(fileURLToPath(new URL('../../policies/', import.meta.url)));
    if (!starter.ok) throw new Error('the starter policies do not load');
    const sqlRules = [...bench.model.rules, ...starter.policy.model.rules].filter((r) => r.family === 'sql' && r.condition !== '');
    expect(sqlRules.length).toBeGreaterThan(22);
    for (const rule of sqlRules) expect(compiled(rule.condition, 'sql')!.fast, rule.condition).toBe(true);
  });
});
