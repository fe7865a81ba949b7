import { beforeAll, describe, expect, it } from 'vitest';
import { analyzeSql, initSqlParser } from '../../src/protocols/postgres/sql.js';
import { corpus, unparseable } from './corpus.js';

beforeAll(async () => {
  await initSqlParser();
});

const title = (sql: string): string => JSON.stringify(sql.length > 90 ? `${sql.slice(0, 87)}...` : sql);

describe.each(corpus)('%s', (_group, cases) => {
  it.each(cases.map((c) => [title(c.sql), c] as const))('%s', (_title, c) => {
    const a = analyzeSql(c.sql);
    expect(a.error).toBeUndefined();
    expect(a.inspected).toBe(true);
    expect({ verb: a.verb, verbs: a.verbs, tables: a.tables, functions: a.functions }).toEqual({
      verb: c.verb,
      verbs: c.verbs,
      tables: c.tables,
      functions: c.functions,
    });
    for (const [key, want] of Object.entries(c.also ?? {})) {
      expect(a[key as keyof typeof a], key).toEqual(want);
    }
  });
});

describe('unparseable input is never inspected', () => {
  it.each(unparseable.map((u) => [title(u.sql), u] as const))('%s', (_title, u) => {
    const a = analyzeSql(u.sql);
    expect(a.inspected).toBe(false);
    if (typeof u.error === 'string') expect(a.error).toBe(u.error);
    else expect(a.error).toMatch(u.error);
    expect({ verb: a.verb, verbs: a.verbs, tables: a.tables, functions: a.functions, statementCount: a.statementCount }).toEqual({
      verb: '',
      verbs: [],
      tables: [],
      functions: [],
      statementCount: 0,
    });
  });
});

it('the corpus has at least 60 statements through the real parser', () => {
  const total = corpus.reduce((n, [, cases]) => n + cases.length, 0) + unparseable.length;
  expect(total).toBeGreaterThanOrEqual(60);
});
