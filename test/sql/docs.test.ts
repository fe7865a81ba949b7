import { readFileSync } from 'node:fs';
import { beforeAll, expect, it } from 'vitest';
import { SQL_VERBS, analyzeSql, initSqlParser, verbDanger } from '../../src/protocols/postgres/sql.js';

const doc = readFileSync(new URL('../../docs/sql-facts.md', import.meta.url), 'utf8');

beforeAll(async () => {
  await initSqlParser();
});

it('docs/sql-facts.md lists every verb in the ranking the code uses', () => {
  const rows = [...doc.matchAll(/^\| (\d+) \| `([a-z_]+)` \|/gm)].map((m) => ({ rank: Number(m[1]), verb: m[2]! }));
  expect(rows.map((r) => r.verb)).toEqual([...SQL_VERBS]);
  for (const { rank, verb } of rows) expect(verbDanger(verb), verb).toBe(rank);
});

it('the examples of "Where verbs come from" are what the parser says', () => {
  const section = doc.slice(doc.indexOf('## Where verbs come from'), doc.indexOf('## Verbs and their ranking'));
  // Rows whose first cell is a single complete statement: | `SQL` | `verb` | `v1`, `v2` |
  const rows = [...section.matchAll(/^\| `([^`]+)` \| `([a-z_]+)` \| ((?:`[a-z_]+`(?:, )?)+) \|$/gm)];
  expect(rows.length).toBeGreaterThan(12);
  let checked = 0;
  for (const [, sql, verb, verbs] of rows) {
    if (sql!.includes('…')) continue; // prose like `INSERT … ON CONFLICT …`, not a statement
    checked++;
    const statement = sql!.replace(/\\\|/g, '|');
    const a = analyzeSql(statement);
    expect(a.verb, statement).toBe(verb);
    expect(a.verbs, statement).toEqual([...verbs!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]));
  }
  expect(checked).toBeGreaterThan(8);
});
