/**
 * Constants of the PostgreSQL v3 wire protocol that both directions of the
 * gateway share. Values follow the protocol documentation (chapter 55) and the
 * limits PostgreSQL itself applies (src/backend/tcop/postgres.c), so that the
 * gateway rejects no frame the server would accept for a sane client, and
 * accepts none the server would reject as malformed.
 */

/** Request codes of the untyped startup-phase packets. */
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** Protocol 3.0 in the StartupMessage version field (major << 16 | minor). */
export const PROTOCOL_3_0 = 196608;

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH. */
export const MAX_STARTUP_PACKET = 10_000;
/** PostgreSQL's PQ_SMALL_MESSAGE_LIMIT: Sync, Flush, Execute, Describe, Close, Terminate, CopyDone, CopyFail. */
export const SMALL_MESSAGE_LIMIT = 10_000;
/** PostgreSQL's PQ_LARGE_MESSAGE_LIMIT (MaxAllocSize - 1): Query, Parse, Bind, FunctionCall, CopyData. */
export const LARGE_MESSAGE_LIMIT = 0x3fffffff - 1;

/**
 * PostgreSQL truncates prepared-statement and portal names to NAMEDATALEN-1
 * bytes when it stores them (hash keys of that size). The gateway keys its own
 * memory of named statements the same way; otherwise two names that differ
 * only after byte 63 would be one statement upstream and two here.
 */
export const NAME_KEY_BYTES = 63;

/** SQLSTATE codes the gateway itself emits. */
export const SQLSTATE = {
  insufficientPrivilege: '42501',
  protocolViolation: '08P01',
  connectionFailure: '08006',
  cannotConnectNow: '57P03',
  queryCanceled: '57014',
  featureNotSupported: '0A000',
  invalidAuthorization: '28000',
  invalidPassword: '28P01',
  internalError: 'XX000',
  programLimitExceeded: '54000',
} as const;

/** Server-encoding-safe client encodings: every byte < 0x80 is the ASCII character it looks like. */
const ASCII_UNSAFE_CLIENT_ENCODINGS = new Set(['sjis', 'shiftjis2004', 'big5', 'gbk', 'uhc', 'gb18030', 'johab']);

/**
 * Client encodings in which an ASCII byte such as `\` or `'` can be the second
 * byte of a multibyte character. The gateway's SQL analysis reads the text as
 * UTF-8; under these encodings the server would tokenise the same bytes
 * differently (the classic GBK quote-escape injection), so sessions using them
 * are refused.
 */
export function isAsciiUnsafeClientEncoding(name: string): boolean {
  return ASCII_UNSAFE_CLIENT_ENCODINGS.has(name.toLowerCase().replace(/[-_]/g, ''));
}

/**
 * The key under which the server stores a prepared statement or portal,
 * as a byte string (one latin1 char per byte). The frontend decoder keeps
 * protocol-level names as latin1 so that no two distinct byte sequences
 * collapse into one string; names that come out of SQL (`PREPARE p`,
 * `EXECUTE p`) are UTF-8 text and are converted to bytes first.
 */
export function wireNameKey(latin1Name: string): string {
  return latin1Name.length <= NAME_KEY_BYTES ? latin1Name : latin1Name.slice(0, NAME_KEY_BYTES);
}

export function sqlNameKey(name: string): string {
  return wireNameKey(Buffer.from(name, 'utf8').toString('latin1'));
}
