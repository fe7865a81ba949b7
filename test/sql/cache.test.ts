import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_SQL_CACHE_BYTES,
  analyzeSql,
  clearSqlCache,
  configureSqlCache,
  initSqlParser,
  sqlCacheStats,
} from '../../src/protocols/postgres/sql.js';
import { ByteBoundedLru } from '../../src/protocols/postgres/sql-cache.js';

beforeAll(async () => {
  await initSqlParser();
});

afterEach(() => {
  configureSqlCache({ maxBytes: DEFAULT_SQL_CACHE_BYTES });
  clearSqlCache();
});

describe('parse cache', () => {
  it('returns the same frozen result for the same text, equal to a fresh analysis', () => {
    clearSqlCache();
    const sql = 'WITH d AS (DELETE FROM t RETURNING *) SELECT pg_sleep(1) FROM d; PREPARE p AS SELECT 1';
    const first = analyzeSql(sql);
    const second = analyzeSql(sql);
    expect(second).toBe(first);
    expect(sqlCacheStats()).toMatchObject({ hits: 1, misses: 1, entries: 1 });
    clearSqlCache();
    expect(analyzeSql(sql)).toEqual(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.verbs)).toBe(true);
    expect(Object.isFrozen(first.prepares[0]!.analysis.tables)).toBe(true);
    // A caller cannot change what the next identical statement sees.
    expect(() => first.verbs.push('select')).toThrow(TypeError);
    expect(analyzeSql(sql).verbs).toEqual(['delete', 'prepare', 'select']);
  });

  it('keys on the exact text: a one-character difference is analysed on its own', () => {
    expect(analyzeSql('SELECT 1 -- x').verb).toBe('select');
    expect(analyzeSql('SELECT 1 -- x\n; DROP TABLE users').verb).toBe('drop');
  });

  it('stays within its byte budget however many distinct statements arrive', () => {
    const maxBytes = 64 * 1024;
    configureSqlCache({ maxBytes });
    clearSqlCache();
    for (let i = 0; i < 2000; i++) {
      analyzeSql(`SELECT col_${i}, pg_sleep(${i}) FROM table_${i} JOIN other_${i % 7} USING (id)`);
      expect(sqlCacheStats().bytes).toBeLessThanOrEqual(maxBytes);
    }
    const stats = sqlCacheStats();
    expect(stats.entries).toBeGreaterThan(50);
    expect(stats.entries).toBeLessThan(2000);
  });

  it('evicts the least recently used entry first', () => {
    configureSqlCache({ maxBytes: 16 * 1024 });
    clearSqlCache();
    const hot = 'SELECT * FROM hot_table';
    analyzeSql(hot);
    for (let i = 0; i < 2000; i++) {
      analyzeSql(`SELECT * FROM cold_${i}`);
      analyzeSql(hot); // touched every time → never the oldest
    }
    const before = sqlCacheStats();
    analyzeSql(hot);
    expect(sqlCacheStats().hits).toBe(before.hits + 1);
    const missesBefore = sqlCacheStats().misses;
    analyzeSql('SELECT * FROM cold_0'); // long evicted
    expect(sqlCacheStats().misses).toBe(missesBefore + 1);
  });

  it('does not cache a statement that would take more than an eighth of the budget', () => {
    configureSqlCache({ maxBytes: 64 * 1024 });
    clearSqlCache();
    const big = `SELECT ${Array.from({ length: 2000 }, (_, i) => `c${i}`).join(', ')} FROM t`;
    analyzeSql(big);
    expect(sqlCacheStats().entries).toBe(0);
    expect(analyzeSql(big).tables).toEqual(['t']);
  });

  it('maxBytes 0 disables caching', () => {
    configureSqlCache({ maxBytes: 0 });
    const a = analyzeSql('SELECT 1');
    const b = analyzeSql('SELECT 1');
    expect(b).not.toBe(a);
    expect(b).toEqual(a);
    expect(sqlCacheStats().entries).toBe(0);
  });
});

describe('ByteBoundedLru', () => {
  it('evicts oldest-first until under budget and keeps byte accounting exact', () => {
    const lru = new ByteBoundedLru<number>(100);
    lru.set('a', 1, 10);
    lru.set('b', 2, 10);
    lru.set('c', 3, 10);
    expect(lru.get('a')).toBe(1); // a is now the most recent
    for (let i = 0; i < 8; i++) lru.set(`k${i}`, i, 10); // 110 bytes → evict b
    expect(lru.get('b')).toBeUndefined();
    expect(lru.get('a')).toBe(1);
    expect(lru.get('c')).toBe(3);
    expect(lru.stats()).toMatchObject({ entries: 10, bytes: 100 });
    lru.set('a', 9, 12); // replacing re-accounts
    expect(lru.stats().bytes).toBeLessThanOrEqual(100);
    expect(lru.get('a')).toBe(9);
    lru.resize(30);
    expect(lru.stats().bytes).toBeLessThanOrEqual(30);
  });
});
