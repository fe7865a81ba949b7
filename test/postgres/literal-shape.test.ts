/**
 * The literal-shape parse cache must never change what a rule sees: for
 * every text, the facts of the original and of its shape are identical.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { analyzeSql, initSqlParser, type SqlAnalysis } from '../../src/protocols/postgres/sql.js';
import { literalShape } from '../../src/protocols/postgres/statements.js';

function factsOf(a: SqlAnalysis): unknown {
  return {
    inspected: a.inspected,
    verb: a.verb,
    verbs: a.verbs,
    tables: a.tables,
    functions: a.functions,
    copyProgram: a.copyProgram,
    statementCount: a.statementCount,
    prepares: a.prepares.map((p) => [p.name, factsOf(p.analysis)]),
    executes: a.executes,
    deallocates: a.deallocates,
  };
}

describe('literalShape', () => {
  beforeAll(() => initSqlParser());

  it('shares one shape between texts that differ only in numbers', () => {
    expect(literalShape('SELECT abalance FROM pgbench_accounts WHERE aid = 81234;')).toBe(
      literalShape('SELECT abalance FROM pgbench_accounts WHERE aid = 7;'),
    );
  });

  it('leaves identifiers, exotic numbers and anything quoted or commented alone', () => {
    for (const text of [
      'SELECT * FROM t1 JOIN _2 ON true',
      'SELECT 1e5, 1_000, 0x1F, 1abc',
      "SELECT 1 WHERE x = '5'",
      'SELECT 1 -- 5',
      'SELECT 1 /* 5 */',
      'SELECT $1 + 5',
      'SELECT "col5" FROM t',
      'SELECT * FROM té1',
      'SELECT 5 \\',
    ]) {
      const shape = literalShape(text);
      if (/['"$\\\-/]|[^\x00-\x7f]/.test(text)) expect(shape).toBe(text);
      expect(factsOf(analyzeSql(shape))).toEqual(factsOf(analyzeSql(text)));
    }
    expect(literalShape('SELECT * FROM t1 WHERE a = 12.5')).toBe('SELECT * FROM t1 WHERE a = 0');
  });

  it('property: the facts of a text and of its shape are equal', () => {
    const ident = fc.stringMatching(/^[a-z_][a-z0-9_]{0,6}$/);
    const num = fc.oneof(
      fc.nat().map(String),
      fc.tuple(fc.nat(), fc.nat()).map(([a, b]) => `${a}.${b}`),
      fc.nat().map((n) => `${n}e${n % 7}`),
      fc.nat().map((n) => `.${n}`),
      fc.nat().map((n) => `${n}_${n}`),
      fc.nat().map((n) => `0x${n.toString(16)}`),
    );
    const expr = fc.oneof(num, ident, fc.tuple(ident, num).map(([f, n]) => `${f}(${n})`), fc.tuple(ident, ident).map(([s, t]) => `${s}.${t}`));
    const stmt = fc.oneof(
      fc.tuple(expr, ident, ident, expr).map(([e, t, c, v]) => `SELECT ${e} FROM ${t} WHERE ${c} = ${v}`),
      fc.tuple(ident, expr, expr).map(([t, a, b]) => `INSERT INTO ${t} VALUES (${a}, ${b})`),
      fc.tuple(ident, ident, expr, expr).map(([t, c, v, w]) => `UPDATE ${t} SET ${c} = ${v} WHERE id = ${w}`),
      fc.tuple(ident, expr).map(([t, w]) => `DELETE FROM ${t} WHERE id > ${w}`),
      fc.tuple(ident, ident, num).map(([p, t, n]) => `PREPARE ${p} AS DELETE FROM ${t} WHERE id = ${n}; EXECUTE ${p}`),
      fc.tuple(ident, num).map(([t, n]) => `CREATE TABLE ${t} (a numeric(${n}))`),
      fc.tuple(ident, num).map(([t, n]) => `SELECT * FROM ${t} LIMIT ${n} OFFSET ${n}`),
    );
    fc.assert(
      fc.property(fc.array(stmt, { minLength: 1, maxLength: 3 }), (parts) => {
        const text = parts.join('; ');
        expect(factsOf(analyzeSql(literalShape(text)))).toEqual(factsOf(analyzeSql(text)));
      }),
      { numRuns: 3000 },
    );
  });
});
