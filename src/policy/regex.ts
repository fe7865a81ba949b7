/**
 * `matches()` for rule conditions: RE2 semantics as CEL specifies them, in
 * linear time.
 *
 * cel-js implements `string.matches` with `new RegExp(pattern)`, V8's
 * backtracking engine: a rule such as `http.body.matches('^(\\w+\\s?)*$')`
 * lets an agent send a body that pins the event loop for minutes (the whole
 * gateway stops), and RE2's leading flag groups (`(?i)abc`), which CEL users
 * write, are a JS syntax error — so the rule loaded and then failed closed on
 * every action. Here patterns run on V8's non-backtracking engine (the `l`
 * flag), which like RE2 refuses backreferences and lookaround; a leading
 * `(?ms)` group becomes the JS flags. That engine has no case-insensitive
 * mode, so a leading `(?i)` is done by rewriting every literal letter into
 * both cases (`a` → `[aA]`, `[a-c]` → `[a-cA-C]`); letters written as
 * escapes (`\x41`) are left as they are.
 */
import { setFlagsFromString } from 'node:v8';

// The `l` flag is behind this V8 flag; it only unlocks the flag, nothing else changes.
setFlagsFromString('--enable-experimental-regexp-engine');

/** RE2 inline flags JS can express as RegExp flags. */
const LEADING_FLAGS = /^\(\?([ims]+)\)/;

/** Compiles a CEL/RE2 pattern for the linear-time engine; throws with a readable message when it cannot. */
export function compileLinearRegex(pattern: string): RegExp {
  let source = pattern;
  let flags = 'l';
  const lead = LEADING_FLAGS.exec(pattern);
  if (lead) {
    source = pattern.slice(lead[0].length);
    const inline = new Set(lead[1]);
    if (inline.delete('i')) source = bothCases(source);
    flags += [...inline].join('');
  }
  try {
    return new RegExp(re2Escapes(source, flags.includes('m')), flags);
  } catch (err) {
    const why = err instanceof Error ? err.message.replace(/^Invalid regular expression: /, '') : String(err);
    throw new Error(`invalid regular expression ${JSON.stringify(pattern)} (${why}; RE2 syntax, no backreferences or lookaround)`);
  }
}

/** Letter escapes that mean the same in RE2 and in a JS pattern without the `u` flag. */
const SHARED_LETTER_ESCAPES = new Set([...'dDwWsSbBfnrtvxuc']);

/**
 * RE2 escapes JS reads differently. In a JS pattern `\z`, `\A`, `\pL`,
 * `\Q` are the plain letters z, A, p, Q, and `[[:alpha:]]` is a class of
 * those characters — a rule written for RE2 would silently test something
 * else (a deny rule ending in `\z` never matched). `\A` and `\z` become
 * `^` and `$` (the same thing without the `m` flag); the others are refused.
 */
function re2Escapes(src: string, multiline: boolean): string {
  if (src.includes('[[:')) throw new Error('POSIX classes like [[:alpha:]] are not supported; write the range, e.g. [A-Za-z]');
  let out = '';
  for (let i = 0; i < src.length; i++) {
    const ch = src[i]!;
    if (ch !== '\\' || i + 1 >= src.length) {
      out += ch;
      continue;
    }
    const e = src[i + 1]!;
    i++;
    if (!/[A-Za-z]/.test(e) || SHARED_LETTER_ESCAPES.has(e)) out += `\\${e}`;
    else if ((e === 'A' || e === 'z') && !multiline) out += e === 'A' ? '^' : '$';
    else throw new Error(`the escape \\${e} is not supported here`);
  }
  return out;
}

/** The other-case forms of one UTF-16 unit (none for a non-letter). */
function otherCases(ch: string): string[] {
  return [ch.toLowerCase(), ch.toUpperCase()].filter((c, i, all) => c.length === 1 && c !== ch && all.indexOf(c) === i);
}

const unitEscape = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** The length of the escape at `i` (a backslash): `\xHH`, `\uHHHH`, `\cX`, else the backslash and one character. */
function escapeLength(src: string, i: number): number {
  const e = src[i + 1];
  if (e === 'x') return 4;
  if (e === 'u' && src[i + 2] === '{') {
    const close = src.indexOf('}', i);
    return close < 0 ? 2 : close - i + 1;
  }
  if (e === 'u') return 6;
  if (e === 'c') return 3;
  return 2;
}

/** Rewrites a JS pattern so that it matches as if case-insensitive (see the module comment). */
function bothCases(src: string): string {
  let out = '';
  let i = 0;
  while (i < src.length) {
    const ch = src[i]!;
    if (ch === '\\') {
      const n = escapeLength(src, i);
      out += src.slice(i, i + n);
      i += n;
    } else if (ch === '(' && src.startsWith('(?<', i) && src[i + 3] !== '=' && src[i + 3] !== '!') {
      const end = src.indexOf('>', i);
      const n = end < 0 ? src.length - i : end - i + 1; // a group name is not text to match
      out += src.slice(i, i + n);
      i += n;
    } else if (ch === '[') {
      i = foldClass(src, i, (text) => (out += text));
    } else {
      const others = otherCases(ch);
      out += others.length === 0 ? ch : `[${ch}${others.join('')}]`;
      i++;
    }
  }
  return out;
}

/** Copies the character class starting at `start` with the other case of its letters added; returns the index after it. */
function foldClass(src: string, start: number, emit: (text: string) => void): number {
  let i = start + 1;
  let body = src[i] === '^' ? '^' : '';
  i += body.length;
  const extra = new Set<string>();
  while (i < src.length && src[i] !== ']') {
    if (src[i] === '\\') {
      const n = escapeLength(src, i);
      body += src.slice(i, i + n);
      i += n;
      continue;
    }
    const lo = src[i]!;
    if (src[i + 1] === '-' && i + 2 < src.length && src[i + 2] !== ']' && src[i + 2] !== '\\') {
      const hi = src[i + 2]!;
      for (let c = lo.charCodeAt(0); c <= hi.charCodeAt(0); c++) {
        for (const o of otherCases(String.fromCharCode(c))) extra.add(o);
      }
      body += src.slice(i, i + 3);
      i += 3;
      continue;
    }
    for (const o of otherCases(lo)) extra.add(o);
    body += lo;
    i++;
  }
  emit(`[${body}${[...extra].map(unitEscape).join('')}${i < src.length ? ']' : ''}`);
  return i + 1;
}

// Patterns may come from facts (`x.matches(http.headers['p'])`), so the cache is bounded.
const CACHE_LIMIT = 512;
const cache = new Map<string, RegExp>();

/** `text.matches(pattern)`: true when the pattern matches anywhere in the text (CEL semantics). */
export function linearMatches(text: string, pattern: string): boolean {
  let re = cache.get(pattern);
  if (!re) {
    re = compileLinearRegex(pattern);
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(pattern, re);
  }
  return re.test(text);
}
