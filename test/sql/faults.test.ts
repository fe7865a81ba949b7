/**
 * An input that overflows the stack inside the wasm parser leaves that wasm
 * instance corrupted (libpg-query's shared instance starts faulting or
 * hanging after a few dozen such inputs). The parser host must retire an
 * instance at its first fault, keep answering from a spare, and never let a
 * fault turn into a wrong answer.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { analyzeSql, initSqlParser, sqlCacheStats } from '../../src/protocols/postgres/sql.js';

beforeAll(async () => {
  await initSqlParser();
});

/** ~200 KB of `+ 1`: deep enough to overflow the native stack inside the parser. */
const stackBomb = (i: number): string => `SELECT ${i}${' + 1'.repeat(50_000)}`;

describe('parser faults', () => {
  it('a stack-overflowing statement is not inspected, and the very next statement is analysed correctly', async () => {
    await initSqlParser(); // active + spare ready
    const faultsBefore = sqlCacheStats().parserFaults;
    const bomb = analyzeSql(stackBomb(-1));
    expect(bomb.inspected).toBe(false);
    expect(bomb.error).toMatch(/^SQL parser fault \(.*\); statement not inspected$/);
    expect(sqlCacheStats().parserFaults).toBe(faultsBefore + 1);
    // The spare took over synchronously.
    const next = analyzeSql('SELECT 1; DROP TABLE users /* after one fault */');
    expect(next.inspected).toBe(true);
    expect(next.verb).toBe('drop');
  });

  it('survives a burst of faults: answers are correct or fail closed, never wrong, and recover', async () => {
    for (let i = 0; i < 60; i++) {
      expect(analyzeSql(stackBomb(i)).inspected).toBe(false);
      const a = analyzeSql(`SELECT ${i}; DROP TABLE users`);
      if (a.inspected) {
        expect(a.verb).toBe('drop');
        expect(a.tables).toEqual(['users']);
      } else {
        expect(a.error).toMatch(/restarting after a fault/);
      }
    }
    await initSqlParser();
    for (let i = 0; i < 50; i++) {
      const a = analyzeSql(`SELEC ${i}`); // a syntax error walks PostgreSQL's error path (longjmp)
      expect(a.inspected).toBe(false);
      expect(a.error).toBe('syntax error at or near "SELEC"');
    }
    expect(analyzeSql('DO $$ BEGIN DELETE FROM accounts; END $$ /* recovered */').verbs).toEqual(['delete', 'do']);
  });

  it('a stack bomb inside a DO body fails closed too', async () => {
    await initSqlParser();
    const a = analyzeSql(`DO $$ BEGIN PERFORM 1${' + 1'.repeat(50_000)}; END $$`);
    expect(a.inspected).toBe(false);
    expect(a.error).toMatch(/SQL parser fault/);
  });

  it('a deep but legal tree is inspected in full', () => {
    const unions = Array.from({ length: 3000 }, (_, i) => `SELECT ${i} FROM t${i % 3}`).join(' UNION ALL ');
    const a = analyzeSql(`${unions}; DELETE FROM audit`);
    expect(a.inspected).toBe(true);
    expect(a.verb).toBe('delete');
    expect(a.tables).toEqual(['audit', 't0', 't1', 't2']);
  });
});
