/**
 * Typed reading of HCL values (hcl2json JSON + their source positions) with
 * diagnostics. Every reader returns `undefined` after reporting a problem,
 * so the loader carries on and reports everything in one run.
 */
import type { Diagnostic, SourcePos } from './types.js';
import { didYouMean, error } from './diagnostics.js';
import { parseSize, SIZE_HINT } from './units.js';
import type { SrcAttribute, SrcBlock, SrcBody, SrcFile, SrcValue } from './hcl-source.js';

export interface Val {
  json: unknown;
  src?: SrcValue;
  pos: SourcePos;
}

export interface RefVal {
  type: string;
  name: string;
  pos: SourcePos;
}

const REF = /^\$\{\s*([\p{L}_][\p{L}\p{N}_-]*)\.([\p{L}_][\p{L}\p{N}_-]*)\s*\}$/u;
const INTERPOLATION = /(?<![$%])[$%]\{/;

export class Reporter {
  readonly diagnostics: Diagnostic[] = [];
  error(pos: SourcePos, summary: string, hint: string, detail?: string): undefined {
    this.diagnostics.push(error(pos, summary, hint, detail));
    return undefined;
  }
  warn(pos: SourcePos, summary: string, hint: string): void {
    this.diagnostics.push({ severity: 'warning', pos, summary, hint });
  }
  get errorCount(): number {
    return this.diagnostics.filter((d) => d.severity === 'error').length;
  }
}

/** Is this JSON string a reference (`${type.name}`)? */
export function refOf(json: unknown): { type: string; name: string } | undefined {
  if (typeof json !== 'string') return undefined;
  const m = REF.exec(json);
  return m ? { type: m[1]!, name: m[2]! } : undefined;
}

function describeJson(json: unknown): string {
  if (json === null) return 'null';
  if (Array.isArray(json)) return 'a list';
  if (typeof json === 'object') return 'an object';
  if (typeof json === 'string') return refOf(json) ? 'a reference' : /^\$\{/.test(json) ? 'an expression' : 'a string';
  if (typeof json === 'number') return 'a number';
  if (typeof json === 'boolean') return 'a bool';
  return typeof json;
}

export class Values {
  constructor(readonly r: Reporter) {}

  /** A plain string. Template escapes `$${`/`%%{` become literal `${`/`%{`; live interpolation is an error. */
  string(v: Val, what: string): string | undefined {
    if (typeof v.json !== 'string' || refOf(v.json) || /^\$\{[\s\S]*\}$/.test(v.json)) {
      return this.r.error(v.pos, 'Incorrect attribute value type', `${what} must be a string, not ${describeJson(v.json)}`);
    }
    if (INTERPOLATION.test(v.json)) {
      return this.r.error(
        v.pos,
        'Template interpolation is not supported',
        `${what} must be a plain string; write $\${ for a literal \${`,
      );
    }
    return v.json.replace(/\$\$\{/g, '${').replace(/%%\{/g, '%{');
  }

  nonEmptyString(v: Val, what: string): string | undefined {
    const s = this.string(v, what);
    if (s !== undefined && s.trim() === '') return this.r.error(v.pos, 'Invalid value', `${what} must not be empty`);
    return s;
  }

  oneOf<T extends string>(v: Val, what: string, options: readonly T[]): T | undefined {
    const s = this.string(v, what);
    if (s === undefined) return undefined;
    if (!(options as readonly string[]).includes(s)) {
      return this.r.error(v.pos, 'Invalid value', `${what} must be ${options.map((o) => `"${o}"`).join(' or ')}, not "${s}"`);
    }
    return s as T;
  }

  /** A size (`"1MiB"`) in bytes; `alternative` names what else the attribute takes, for the hint. */
  size(v: Val, what: string, alternative?: string): number | undefined {
    const s = this.string(v, what);
    if (s === undefined) return undefined;
    const n = parseSize(s);
    if (n === undefined) return this.r.error(v.pos, 'Invalid size', `${what}: "${s}" is not a size; ${SIZE_HINT}${alternative ? `, or ${alternative}` : ''}`);
    return n;
  }

  int(v: Val, what: string, min = -Infinity, max = Infinity): number | undefined {
    if (typeof v.json !== 'number' || !Number.isInteger(v.json)) {
      return this.r.error(v.pos, 'Incorrect attribute value type', `${what} must be a whole number, not ${describeJson(v.json)}`);
    }
    // Beyond 2^53 the parsed number is already rounded: `priority = 9007199254740993` would tie with …992.
    if (!Number.isSafeInteger(v.json)) {
      return this.r.error(v.pos, 'Invalid value', `${what} must be between ${Number.MIN_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}, not ${v.json}`);
    }
    if (v.json < min || v.json > max) {
      const range = max === Infinity ? `at least ${min}` : `between ${min} and ${max}`;
      return this.r.error(v.pos, 'Invalid value', `${what} must be ${range}, not ${v.json}`);
    }
    return v.json;
  }

  bool(v: Val, what: string): boolean | undefined {
    if (typeof v.json !== 'boolean') {
      return this.r.error(v.pos, 'Incorrect attribute value type', `${what} must be true or false, not ${describeJson(v.json)}`);
    }
    return v.json;
  }

  list(v: Val, what: string): Val[] | undefined {
    if (!Array.isArray(v.json)) {
      return this.r.error(v.pos, 'Incorrect attribute value type', `${what} must be a list [ … ], not ${describeJson(v.json)}`);
    }
    const items = v.src?.kind === 'list' ? v.src.items ?? [] : [];
    return v.json.map((json, k) => {
      const src = items[k];
      return src ? { json, src, pos: src.start } : { json, pos: v.pos };
    });
  }

  stringList(v: Val, what: string): string[] | undefined {
    const items = this.list(v, what);
    if (!items) return undefined;
    const out: string[] = [];
    let ok = true;
    for (const item of items) {
      const s = this.string(item, `each element of ${what}`);
      if (s === undefined) ok = false;
      else out.push(s);
    }
    return ok ? out : undefined;
  }

  /** Object literal entries, with their key positions. */
  object(v: Val, what: string): Map<string, Val & { keyPos: SourcePos }> | undefined {
    if (v.json === null || typeof v.json !== 'object' || Array.isArray(v.json)) {
      return this.r.error(v.pos, 'Incorrect attribute value type', `${what} must be an object { … }, not ${describeJson(v.json)}`);
    }
    const entries = v.src?.kind === 'object' ? v.src.entries ?? [] : [];
    const out = new Map<string, Val & { keyPos: SourcePos }>();
    for (const [key, json] of Object.entries(v.json as Record<string, unknown>)) {
      const e = entries.find((x) => x.key === key);
      out.set(key, e ? { json, src: e.value, pos: e.value.start, keyPos: e.keyPos } : { json, pos: v.pos, keyPos: v.pos });
    }
    return out;
  }

  /** A bare traversal `type.name`. */
  ref(v: Val, what: string): RefVal | undefined {
    const r = refOf(v.json);
    if (!r) {
      const example = typeof v.json === 'string' && /^[\w-]+\.[\w-]+$/.test(v.json) ? ` ${v.json}` : ' such as https.github';
      return this.r.error(
        v.pos,
        'Expected a reference',
        `${what} must be a bare reference${example} (no quotes), not ${describeJson(v.json)}`,
      );
    }
    return { ...r, pos: v.pos };
  }
}

// ───────────────────────────── block bodies ─────────────────────────────────

/** A block body: its attributes (with values and positions) and nested blocks, matched to hcl2json's JSON. */
export class Body {
  private readonly attrs = new Map<string, { src: SrcAttribute; json: unknown }>();
  readonly blocks: Array<{ src: SrcBlock; body: Body }> = [];

  constructor(
    readonly file: SrcFile,
    readonly src: SrcBody,
    readonly json: Record<string, unknown>,
    /** Where the owning block starts (fallback position). */
    readonly pos: SourcePos,
  ) {
    for (const a of src.attributes) this.attrs.set(a.name, { src: a, json: json[a.name] });
    const counters = new Map<string, number>();
    for (const b of src.blocks) {
      let node: unknown = json[b.type];
      for (const l of b.labels) node = node && typeof node === 'object' ? (node as Record<string, unknown>)[l.value] : undefined;
      const key = [b.type, ...b.labels.map((l) => l.value)].join('\0');
      const k = counters.get(key) ?? 0;
      counters.set(key, k + 1);
      const inner = Array.isArray(node) ? (node[k] as Record<string, unknown> | undefined) : undefined;
      this.blocks.push({ src: b, body: new Body(file, b.body, inner ?? {}, b.pos) });
    }
  }

  attributeNames(): string[] {
    return [...this.attrs.keys()];
  }

  has(name: string): boolean {
    return this.attrs.has(name);
  }

  /** The attribute's value, or undefined when absent. */
  get(name: string): Val | undefined {
    const a = this.attrs.get(name);
    if (!a) return undefined;
    return { json: a.json, src: a.src.value, pos: a.src.value.start };
  }

  namePos(name: string): SourcePos {
    return this.attrs.get(name)?.src.pos ?? this.pos;
  }

  /**
   * Report attributes and blocks this body may not contain. `what` reads
   * like "an https endpoint" ("an https endpoint has no attribute …").
   */
  checkShape(r: Reporter, what: string, attributes: readonly string[], blocks: readonly string[] = []): void {
    for (const name of this.attributeNames()) {
      if (attributes.includes(name)) continue;
      const pos = this.namePos(name);
      if (blocks.includes(name)) {
        r.error(pos, 'Unsupported argument', `"${name}" is a block: write ${name} { … } without "="`);
        continue;
      }
      const near = didYouMean(name, attributes);
      r.error(pos, 'Unsupported argument', `${what} has no attribute "${name}"${near}`);
    }
    const seen = new Map<string, SourcePos>();
    for (const b of this.blocks) {
      const name = b.src.type;
      if (!blocks.includes(name)) {
        if (attributes.includes(name)) {
          r.error(b.src.pos, 'Unsupported block type', `"${name}" is an attribute: write ${name} = …`);
        } else {
          r.error(b.src.pos, 'Unsupported block type', `${what} has no "${name}" block${didYouMean(name, blocks)}`);
        }
        continue;
      }
      if (b.src.labels.length > 0) {
        r.error(b.src.labels[0]!.pos, 'Extraneous label', `a ${name} block takes no labels: write ${name} { … }`);
      }
      const first = seen.get(name);
      if (first) r.error(b.src.pos, 'Duplicate block', `only one ${name} block is allowed here (the first is at ${fmtPos(first)})`);
      else seen.set(name, b.src.pos);
    }
  }

  block(name: string): Body | undefined {
    return this.blocks.find((b) => b.src.type === name)?.body;
  }
}

export function fmtPos(p: SourcePos): string {
  return `${p.file}:${p.line}:${p.col}`;
}
