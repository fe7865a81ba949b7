import { expect, it } from 'vitest';
import { analyzeSql } from '../../src/protocols/postgres/sql.js';

// Its own file: vitest gives each file a fresh module graph, so the parser here was never loaded.
it('analyzeSql before initSqlParser throws a clear error', () => {
  expect(() => analyzeSql('SELECT 1')).toThrow('SQL parser not initialised: await initSqlParser() once before analyzeSql()');
});
