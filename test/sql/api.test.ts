import { beforeAll, describe, expect, it } from 'vitest';
import { analyzeSql, initSqlParser, mergeAnalyses, toSqlFacts, verbDanger } from '../../src/protocols/postgres/sql.js';

beforeAll(async () => {
  await initSqlParser();
});

describe('sql API', () => {
  it('initSqlParser is idempotent and safe to call concurrently', async () => {
    await Promise.all([initSqlParser(), initSqlParser(), initSqlParser()]);
    expect(analyzeSql('SELECT 1').verb).toBe('select');
  });

  it('toSqlFacts carries the analysis and the context', () => {
    const facts = toSqlFacts(analyzeSql('SELECT 1; DROP TABLE public.users'), {
      statement: 'SELECT 1; DROP TABLE public.users',
      database: 'app',
      user: 'agent',
    });
    expect(facts).toEqual({
      verb: 'drop',
      verbs: ['drop', 'select'],
      tables: ['public.users', 'users'],
      functions: [],
      statement: 'SELECT 1; DROP TABLE public.users',
      database: 'app',
      user: 'agent',
      inspected: true,
      copy_program: false,
    });
  });

  it('toSqlFacts of an unparseable statement is uninspected with the parser message', () => {
    const facts = toSqlFacts(analyzeSql('DELETE FROM'), { statement: 'DELETE FROM', database: 'd', user: 'u' });
    expect(facts.inspected).toBe(false);
    expect(facts.inspect_error).toBe('syntax error at end of input');
    expect(facts.verb).toBe('');
  });

  it('mergeAnalyses gives EXECUTE the verb of what was prepared', () => {
    const prepare = analyzeSql('PREPARE p AS DELETE FROM accounts WHERE id = $1');
    expect(prepare.verb).toBe('prepare');
    const body = prepare.prepares[0]!.analysis;
    const execute = analyzeSql('EXECUTE p(1)');
    expect(execute.executes).toEqual(['p']);
    const merged = mergeAnalyses([execute, body]);
    expect(merged.verb).toBe('delete');
    expect(merged.verbs).toEqual(['delete', 'execute']);
    expect(merged.tables).toEqual(['accounts']);
  });

  it('verbDanger orders drop above select and unknown at the top', () => {
    expect(verbDanger('drop')).toBeGreaterThan(verbDanger('select'));
    expect(verbDanger('unknown')).toBeGreaterThan(verbDanger('do'));
    expect(verbDanger('no-such-verb')).toBe(verbDanger('unknown'));
  });
});
