/**
 * Hosts the PostgreSQL parser (libpg-query's wasm build) and survives its
 * faults.
 *
 * Why not just `import { parseSync } from 'libpg-query'`: that module keeps
 * one wasm instance for the whole process, and an input that nests deeply
 * enough (`SELECT 1 + 1 + … + 1`, ~10k terms) overflows the native stack in
 * the middle of the C parser. The exception unwinds past PostgreSQL's error
 * handling, leaving its jump buffers and the wasm shadow stack pointing at
 * dead frames; after a few such inputs every later call faults or hangs. An
 * agent could use that to take SQL inspection down for everyone.
 *
 * So every instance here is private, and the first unexpected exception
 * (anything that is not an ordinary parse error) retires the instance for
 * good: a warm spare takes over synchronously and a new spare is built in
 * the background. The faulting statement itself reports a fault (fail
 * closed). Each instance is a fresh evaluation of libpg-query's CommonJS
 * entry, so we reuse its own wrappers instead of re-implementing them.
 */
import { createRequire } from 'node:module';

type PgQuery = typeof import('libpg-query');

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** The parser instance failed in a way that is not a parse error; it has been replaced. */
export class SqlParserFault extends Error {
  override name = 'SqlParserFault';
}

/** No healthy parser instance right now (a replacement is being built). */
export class SqlParserUnavailable extends Error {
  override name = 'SqlParserUnavailable';
}

export interface ScanToken {
  start: number;
  end: number;
  text: string;
}

/** What the tree walker needs from a parser; the walker never sees wasm. */
export interface SqlParserApi {
  parse(text: string): Parsed<unknown>;
  parsePlpgsql(text: string): Parsed<unknown>;
  scan(text: string): Parsed<ScanToken[]>;
}

const require = createRequire(import.meta.url);
const ENTRY = require.resolve('libpg-query');

async function loadInstance(): Promise<PgQuery> {
  // A fresh evaluation of the entry module instantiates a new wasm module with its own memory.
  delete require.cache[ENTRY];
  const instance = require(ENTRY) as PgQuery;
  await instance.loadModule();
  return instance;
}

let active: PgQuery | null = null;
let spare: PgQuery | null = null;
let building: Promise<void> | null = null;
let everReady = false;
let faults = 0;

async function refill(): Promise<void> {
  while (active === null || spare === null) {
    const instance = await loadInstance();
    if (active === null) {
      active = instance;
      everReady = true;
    } else {
      spare = instance;
    }
  }
}

function startRefill(): Promise<void> {
  building ??= refill().finally(() => {
    building = null;
  });
  return building;
}

/**
 * Loads the parser (an active instance and a warm spare). Idempotent and safe
 * to call concurrently; after a fault it resolves once a healthy instance is
 * back.
 */
export async function initSqlParser(): Promise<void> {
  if (active !== null && spare !== null) return;
  await startRefill();
}

/** True once `initSqlParser()` has completed at least once. */
export function sqlParserInitialised(): boolean {
  return everReady;
}

/** Faults survived since the process started (for stats and tests). */
export function sqlParserFaults(): number {
  return faults;
}

function current(): PgQuery {
  if (active !== null) return active;
  // Background refills can fail (e.g. out of memory); retry whenever someone needs a parser.
  startRefill().catch(() => undefined);
  throw new SqlParserUnavailable('SQL parser is restarting after a fault; statement not inspected');
}

function retire(instance: PgQuery): void {
  if (instance !== active) return;
  faults++;
  active = spare;
  spare = null;
  startRefill().catch(() => undefined);
}

function guarded<T>(
  call: (pg: PgQuery) => T,
  isParseError: (pg: PgQuery, err: unknown) => boolean,
): Parsed<T> {
  const pg = current();
  try {
    return { ok: true, value: call(pg) };
  } catch (err) {
    if (isParseError(pg, err)) return { ok: false, error: (err as Error).message };
    retire(pg);
    const detail = err instanceof Error ? err.message : String(err);
    throw new SqlParserFault(`SQL parser fault (${detail}); statement not inspected`);
  }
}

/** libpg-query reports PL/pgSQL and scanner errors as a plain `Error`; traps are RangeError / RuntimeError. */
const plainError = (_pg: PgQuery, err: unknown): boolean =>
  err instanceof Error && err.constructor === Error;

export const sqlParser: SqlParserApi = {
  parse: (text) => guarded((pg) => pg.parseSync(text) as unknown, (pg, err) => err instanceof pg.SqlError),
  parsePlpgsql: (text) => guarded((pg) => pg.parsePlPgSQLSync(text) as unknown, plainError),
  scan: (text) => guarded((pg) => pg.scanSync(text).tokens, plainError),
};
