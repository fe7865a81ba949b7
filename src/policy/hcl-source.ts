/**
 * A positional outline of an HCL file: blocks, labels, attributes and the
 * extent of every value (list items and object entries included).
 *
 * hcl2json gives us values but no positions, and JSON objects lose the
 * declaration order of blocks. This scanner runs over the same text *after*
 * hcl2json accepted it (so it may assume valid syntax) and records where each
 * thing is, so every semantic diagnostic can point at `file:line:col` and
 * rules keep their declaration order. It never throws: on anything
 * unexpected it skips ahead, and callers fall back to the enclosing block's
 * position.
 */
import type { SourcePos } from './types.js';

export interface SrcValue {
  kind: 'list' | 'object' | 'string' | 'heredoc' | 'other';
  start: SourcePos;
  /** Source text of the whole expression. */
  text: string;
  items?: SrcValue[];
  entries?: SrcEntry[];
  /** string: source offset of every UTF-16 unit of the decoded value (templates kept raw, as hcl2json does). */
  offsets?: number[];
  /** heredoc: the content lines with their source offsets. */
  lines?: Array<{ offset: number; text: string }>;
}

export interface SrcEntry {
  key: string;
  keyPos: SourcePos;
  value: SrcValue;
}

export interface SrcAttribute {
  name: string;
  pos: SourcePos;
  value: SrcValue;
}

export interface SrcLabel {
  value: string;
  pos: SourcePos;
}

export interface SrcBlock {
  type: string;
  pos: SourcePos;
  labels: SrcLabel[];
  body: SrcBody;
}

export interface SrcBody {
  attributes: SrcAttribute[];
  blocks: SrcBlock[];
}

export interface SrcFile {
  file: string;
  text: string;
  body: SrcBody;
  /** 1-based line/col of a UTF-16 offset. */
  posAt(offset: number): SourcePos;
  /** Text of a 1-based line (without the newline). */
  lineText(line: number): string;
}

const ID_START = /[\p{L}_]/u;
const ID_CONTINUE = /[\p{L}\p{N}_-]/u;
const HEREDOC_HEAD = /<<(-?)([\p{L}_][\p{L}\p{N}_-]*)[ \t]*\r?\n/uy;

type Ctx = 'body' | 'list' | 'object';

class Scanner {
  i = 0;
  private readonly lineStarts: number[] = [0];

  constructor(
    readonly text: string,
    readonly file: string,
  ) {
    for (let k = 0; k < text.length; k++) if (text.charCodeAt(k) === 10) this.lineStarts.push(k + 1);
  }

  posAt(offset: number): SourcePos {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { file: this.file, line: lo + 1, col: offset - this.lineStarts[lo]! + 1 };
  }

  lineText(line: number): string {
    const start = this.lineStarts[line - 1];
    if (start === undefined) return '';
    const next = this.lineStarts[line];
    return this.text.slice(start, next === undefined ? this.text.length : next - 1).replace(/\r$/, '');
  }

  private ch(k = 0): string {
    return this.text[this.i + k] ?? '';
  }

  private isIdStart(c: string): boolean {
    return c !== '' && ID_START.test(c);
  }

  private readIdent(): string {
    const start = this.i;
    this.i++;
    while (this.i < this.text.length && ID_CONTINUE.test(this.ch())) this.i++;
    return this.text.slice(start, this.i);
  }

  /** Skip blanks and comments; newlines too when `newlines`. A line comment stops before its newline. */
  skipSpace(newlines: boolean): void {
    const t = this.text;
    while (this.i < t.length) {
      const c = t[this.i]!;
      if (c === ' ' || c === '\t' || c === '\r' || (newlines && c === '\n')) {
        this.i++;
      } else if (c === '#' || (c === '/' && t[this.i + 1] === '/')) {
        while (this.i < t.length && t[this.i] !== '\n') this.i++;
      } else if (c === '/' && t[this.i + 1] === '*') {
        const end = t.indexOf('*/', this.i + 2);
        this.i = end < 0 ? t.length : end + 2;
      } else {
        break;
      }
    }
  }

  private skipToLineEnd(): void {
    while (this.i < this.text.length && this.text[this.i] !== '\n') this.i++;
  }

  parseBody(closing: boolean): SrcBody {
    const body: SrcBody = { attributes: [], blocks: [] };
    for (;;) {
      this.skipSpace(true);
      if (this.i >= this.text.length) return body;
      const c = this.ch();
      if (c === '}') {
        if (closing) return body;
        this.i++;
        continue;
      }
      if (!this.isIdStart(c)) {
        this.skipToLineEnd();
        continue;
      }
      const namePos = this.posAt(this.i);
      const name = this.readIdent();
      this.skipSpace(false);
      if (this.ch() === '=' && this.ch(1) !== '=') {
        this.i++;
        this.skipSpace(false);
        body.attributes.push({ name, pos: namePos, value: this.parseExpr('body') });
        continue;
      }
      const labels: SrcLabel[] = [];
      for (;;) {
        const lc = this.ch();
        if (lc === '"') {
          const pos = this.posAt(this.i);
          const s = this.scanQuoted();
          labels.push({ value: s.decoded, pos });
        } else if (this.isIdStart(lc)) {
          const pos = this.posAt(this.i);
          labels.push({ value: this.readIdent(), pos });
        } else {
          break;
        }
        this.skipSpace(false);
      }
      if (this.ch() === '{') {
        this.i++;
        const inner = this.parseBody(true);
        if (this.ch() === '}') this.i++;
        body.blocks.push({ type: name, pos: namePos, labels, body: inner });
      } else {
        this.skipToLineEnd();
      }
    }
  }

  private followedByFor(from: number): boolean {
    const rest = this.text.slice(from, from + 64);
    return /^\s*for[\s]/.test(rest);
  }

  private isTerminator(ctx: Ctx): boolean {
    const c = this.ch();
    if (c === '') return true;
    if (c === '#' || (c === '/' && (this.ch(1) === '/' || this.ch(1) === '*'))) return ctx === 'body' || ctx === 'object';
    switch (ctx) {
      case 'body':
        return c === '\n' || c === '}';
      case 'list':
        return c === ',' || c === ']';
      case 'object':
        return c === ',' || c === '\n' || c === '}';
    }
  }

  parseExpr(ctx: Ctx): SrcValue {
    const startOffset = this.i;
    const start = this.posAt(startOffset);
    let primary: SrcValue | undefined;
    const c = this.ch();
    if (c === '[' && !this.followedByFor(this.i + 1)) {
      primary = this.parseList(start);
    } else if (c === '{' && !this.followedByFor(this.i + 1)) {
      primary = this.parseObject(start);
    } else if (c === '"') {
      const s = this.scanQuoted();
      primary = { kind: 'string', start, text: '', offsets: s.offsets };
    } else if (c === '<' && this.ch(1) === '<') {
      HEREDOC_HEAD.lastIndex = this.i;
      if (HEREDOC_HEAD.test(this.text)) primary = { kind: 'heredoc', start, text: '', lines: this.scanHeredoc() };
    }
    const afterPrimary = this.i;
    this.consumeRest(ctx);
    let end = this.i;
    while (end > startOffset && /\s/.test(this.text[end - 1]!)) end--;
    const text = this.text.slice(startOffset, end);
    if (primary && end <= afterPrimary) return { ...primary, text };
    return { kind: 'other', start, text };
  }

  private consumeRest(ctx: Ctx): void {
    let guard = 0;
    while (this.i < this.text.length && guard++ < 1_000_000) {
      // Inside a list newlines and comments are just whitespace.
      if (ctx === 'list') this.skipSpace(true);
      if (this.isTerminator(ctx)) return;
      const c = this.ch();
      if (c === '"') this.scanQuoted();
      else if (c === '<' && this.ch(1) === '<' && this.heredocAhead()) this.scanHeredoc();
      else if (c === '(' || c === '[' || c === '{') this.skipBalanced();
      else this.i++;
    }
  }

  private heredocAhead(): boolean {
    HEREDOC_HEAD.lastIndex = this.i;
    return HEREDOC_HEAD.test(this.text);
  }

  private skipBalanced(): void {
    const close: Record<string, string> = { '(': ')', '[': ']', '{': '}' };
    const stack: string[] = [close[this.ch()]!];
    this.i++;
    while (this.i < this.text.length && stack.length > 0) {
      const c = this.ch();
      if (c === '"') {
        this.scanQuoted();
      } else if (c === '<' && this.ch(1) === '<' && this.heredocAhead()) {
        this.scanHeredoc();
      } else if (c === '#' || (c === '/' && (this.ch(1) === '/' || this.ch(1) === '*'))) {
        this.skipSpace(false);
        if (this.ch() === '#' || this.ch() === '/') this.i++;
      } else if (close[c]) {
        stack.push(close[c]!);
        this.i++;
      } else if (c === stack[stack.length - 1]) {
        stack.pop();
        this.i++;
      } else {
        this.i++;
      }
    }
  }

  private parseList(start: SourcePos): SrcValue {
    this.i++; // [
    const items: SrcValue[] = [];
    for (;;) {
      this.skipSpace(true);
      if (this.i >= this.text.length) break;
      if (this.ch() === ']') {
        this.i++;
        break;
      }
      const before = this.i;
      items.push(this.parseExpr('list'));
      this.skipSpace(true);
      if (this.ch() === ',') this.i++;
      if (this.i === before) this.i++;
    }
    return { kind: 'list', start, text: '', items };
  }

  private parseObject(start: SourcePos): SrcValue {
    this.i++; // {
    const entries: SrcEntry[] = [];
    for (;;) {
      this.skipSpace(true);
      if (this.i >= this.text.length) break;
      if (this.ch() === '}') {
        this.i++;
        break;
      }
      const before = this.i;
      const keyPos = this.posAt(this.i);
      let key = '';
      const c = this.ch();
      if (c === '"') key = this.scanQuoted().decoded;
      else if (this.isIdStart(c)) key = this.readIdent();
      else if (c === '(') this.skipBalanced();
      else this.i++;
      this.skipSpace(false);
      if (this.ch() === '=' || this.ch() === ':') {
        this.i++;
        this.skipSpace(false);
        entries.push({ key, keyPos, value: this.parseExpr('object') });
      }
      this.skipSpace(false);
      if (this.ch() === ',') this.i++;
      if (this.i === before) this.i++;
    }
    return { kind: 'object', start, text: '', entries };
  }

  /**
   * A quoted template. Escapes are decoded; `${…}`/`%{…}` sequences and their
   * `$${`/`%%{` escapes are kept raw, exactly as hcl2json returns them.
   */
  scanQuoted(): { decoded: string; offsets: number[] } {
    const t = this.text;
    let decoded = '';
    const offsets: number[] = [];
    const push = (s: string, at: number): void => {
      decoded += s;
      for (let k = 0; k < s.length; k++) offsets.push(at);
    };
    this.i++; // opening quote
    while (this.i < t.length) {
      const c = t[this.i]!;
      if (c === '"') {
        this.i++;
        break;
      }
      if (c === '\n') break;
      if (c === '\\') {
        const n = t[this.i + 1] ?? '';
        const simple: Record<string, string> = { n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\' };
        if (simple[n] !== undefined) {
          push(simple[n]!, this.i);
          this.i += 2;
        } else if (n === 'u' || n === 'U') {
          const len = n === 'u' ? 4 : 8;
          const hex = t.slice(this.i + 2, this.i + 2 + len);
          const cp = Number.parseInt(hex, 16);
          push(Number.isFinite(cp) && cp <= 0x10ffff ? String.fromCodePoint(cp) : '', this.i);
          this.i += 2 + len;
        } else {
          push(n, this.i);
          this.i += 2;
        }
        continue;
      }
      if ((c === '$' || c === '%') && t[this.i + 1] === c && t[this.i + 2] === '{') {
        for (let k = 0; k < 3; k++) push(t[this.i + k]!, this.i + k);
        this.i += 3;
        continue;
      }
      if ((c === '$' || c === '%') && t[this.i + 1] === '{') {
        const from = this.i;
        this.i++;
        this.skipBalanced();
        for (let k = from; k < this.i; k++) push(t[k]!, k);
        continue;
      }
      push(c, this.i);
      this.i++;
    }
    return { decoded, offsets };
  }

  private scanHeredoc(): Array<{ offset: number; text: string }> {
    HEREDOC_HEAD.lastIndex = this.i;
    const m = HEREDOC_HEAD.exec(this.text);
    if (!m) {
      this.i++;
      return [];
    }
    const marker = m[2]!;
    this.i = HEREDOC_HEAD.lastIndex;
    const lines: Array<{ offset: number; text: string }> = [];
    while (this.i < this.text.length) {
      let end = this.text.indexOf('\n', this.i);
      if (end < 0) end = this.text.length;
      const lineText = this.text.slice(this.i, end).replace(/\r$/, '');
      if (lineText.trim() === marker) {
        this.i += lineText.indexOf(marker) + marker.length;
        return lines;
      }
      lines.push({ offset: this.i, text: lineText });
      this.i = end + 1;
    }
    return lines;
  }
}

export function scanHcl(file: string, text: string): SrcFile {
  const s = new Scanner(text, file);
  let body: SrcBody;
  try {
    body = s.parseBody(false);
  } catch {
    body = { attributes: [], blocks: [] };
  }
  return { file, text, body, posAt: (o) => s.posAt(o), lineText: (l) => s.lineText(l) };
}

/**
 * Where character `offset` of a string value (as hcl2json decoded it) sits
 * in the source. Heredoc lines are aligned from their ends because the flush
 * form (`<<-`) only strips leading indentation.
 */
export function stringOffsetPos(src: SrcFile, value: SrcValue, decoded: string, offset: number): SourcePos {
  if (value.kind === 'string' && value.offsets) {
    const o = value.offsets[Math.min(offset, value.offsets.length - 1)];
    if (o === undefined) return value.start;
    return src.posAt(offset >= value.offsets.length ? o + 1 : o);
  }
  if (value.kind === 'heredoc' && value.lines) {
    const before = decoded.slice(0, offset);
    const lineIndex = before.split('\n').length - 1;
    const colInLine = offset - (before.lastIndexOf('\n') + 1);
    const decodedLine = decoded.split('\n')[lineIndex] ?? '';
    const srcLine = value.lines[lineIndex];
    if (!srcLine) return value.start;
    const shift = Math.max(0, srcLine.text.length - decodedLine.length);
    return src.posAt(srcLine.offset + shift + colInLine);
  }
  return value.start;
}
