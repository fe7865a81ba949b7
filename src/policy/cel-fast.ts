/**
 * A fast path for the conditions operators write most — comparisons of fact
 * strings with literals, list membership, `sets.*`, string `contains` /
 * `startsWith` / `endsWith`, key presence in and lookups from the string
 * maps (`'x-team' in http.headers`, `http.headers['x-team'] == 'ops'`,
 * `'admin' in http.query`), joined by `&&`, `||`, `!` — compiled from the
 * checked cel-js AST into plain closures. `decide` runs every rule of an
 * endpoint for every statement, and the cel-js interpreter costs a few
 * hundred nanoseconds per condition.
 *
 * It is an accelerator, never a second authority: a closure answers only
 * `true` or `false` when cel-js would certainly give the same answer, and
 * `UNSURE` otherwise — an unknown fact (an error in CEL), a value of a type
 * it does not expect — whereupon the caller evaluates the condition with
 * cel-js as before (which also produces the error message a fail-closed
 * deny reports). A condition using anything outside the subset (numbers,
 * map literals, macros, regular expressions, `?:`, nested fields, …) gets no closure
 * at all. `test/policy/cel-fast.test.ts` checks the two against each other
 * on generated conditions and facts.
 *
 * Why the answers agree:
 *   - facts are read from the activation's fact objects, and only when the
 *     value has exactly the field's declared type (`string`, `bool`, a list
 *     of strings); anything else — `undefined` for an unknown fact, a value
 *     of another type — is an error in cel-js → UNSURE;
 *   - `==`/`!=` only between two strings or two bools (CEL: `===`);
 *   - `x in list` only for a string `x` and a list of strings;
 *   - `sets.*` only over lists of strings (the `sets` functions compare
 *     strings with `===`);
 *   - string methods only on strings (cel-js calls the same JS methods);
 *   - maps only when the value is a plain object whose every value has the
 *     declared value type (what the engines build); `k in m` is then an own
 *     key whose value is defined (cel-js's `mapIncludes`), and `m[k]` a
 *     string value, a missing key being an error in cel-js → UNSURE;
 *   - `&&`/`||` evaluate left to right and stop where CEL's result no
 *     longer depends on the right side (`false && x` is false and
 *     `true || x` is true even when `x` is an error); an UNSURE left side
 *     makes the whole condition UNSURE rather than reasoning about errors.
 */
import type { ASTNode } from '@marcbachmann/cel-js';

export const UNSURE: unique symbol = Symbol('cel-fast: ask cel-js');
export type Unsure = typeof UNSURE;

type Activation = Record<string, unknown>;
type Fn<T> = (act: Activation) => T | Unsure;

/** Variables conditions read (fact objects in the activation). */
const FACT_VARIABLES = new Set(['http', 'sql', 'k8s', 'content']);

/** The declared CEL type of a fact field (`string`, `bool`, `list<string>`, …), undefined when not declared. */
export type FieldTypes = (variable: string, field: string) => string | undefined;

/**
 * Compile the checked AST of a `bool` condition; null when it uses anything
 * outside the subset. `types` are the fields' declared types: cel-js checks
 * a value against its field's type when it reads it (a bool where a string
 * is declared is an error), so the fast path reads only values of exactly
 * the declared type and is UNSURE about anything else.
 */
export function compileFast(ast: ASTNode, types: FieldTypes): ((act: Activation) => boolean | Unsure) | null {
  try {
    return new Compiler(types).boolean(ast as Node);
  } catch (err) {
    if (err instanceof Unsupported) return null;
    throw err;
  }
}

class Unsupported extends Error {}
const unsupported = (): never => {
  throw new Unsupported();
};

type Node = ASTNode & { op: string; args: unknown };
type Want = 'string' | 'bool' | 'list<string>' | 'map<string, string>' | 'map<string, list<string>>';
type StringMap = Readonly<Record<string, unknown>>;

const isStringArray = (v: unknown): v is readonly string[] => {
  if (!Array.isArray(v)) return false;
  for (const x of v) if (typeof x !== 'string') return false;
  return true;
};

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** A plain object (no class, no Map) every value of which passes `valueOk`: how the engines build map facts. */
function plainMapOf(valueOk: (v: unknown) => boolean): (v: unknown) => boolean {
  return (v) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return false;
    for (const k in v) if (hasOwn(v, k) && !valueOk((v as StringMap)[k])) return false;
    return true;
  };
}
const isStringMap = plainMapOf((v) => typeof v === 'string');
const isStringListMap = plainMapOf(isStringArray);

class Compiler {
  constructor(private readonly types: FieldTypes) {}

  boolean(n: Node): Fn<boolean> {
    switch (n.op) {
      case '&&': {
        const [l, r] = (n.args as [Node, Node]).map((x) => this.boolean(x)) as [Fn<boolean>, Fn<boolean>];
        return (act) => {
          const a = l(act);
          return a === true ? r(act) : a; // false stops; UNSURE stays UNSURE
        };
      }
      case '||': {
        const [l, r] = (n.args as [Node, Node]).map((x) => this.boolean(x)) as [Fn<boolean>, Fn<boolean>];
        return (act) => {
          const a = l(act);
          return a === false ? r(act) : a; // true stops; UNSURE stays UNSURE
        };
      }
      case '!_': {
        const x = this.boolean(n.args as Node);
        return (act) => {
          const a = x(act);
          return a === UNSURE ? a : !a;
        };
      }
      case '==':
      case '!=': {
        const [l, r] = (n.args as [Node, Node]).map((x) => this.scalar(x)) as [Fn<string | boolean>, Fn<string | boolean>];
        const negate = n.op === '!=';
        return (act) => {
          const a = l(act);
          if (a === UNSURE) return a;
          const b = r(act);
          if (b === UNSURE || typeof a !== typeof b) return UNSURE;
          return (a === b) !== negate;
        };
      }
      case 'in': {
        const [needleNode, listNode] = n.args as [Node, Node];
        const needle = this.scalar(needleNode);
        if (this.isMapField(listNode)) {
          const map = this.map(listNode);
          return (act) => {
            const k = needle(act);
            if (typeof k !== 'string') return UNSURE;
            const m = map(act);
            if (m === UNSURE) return m;
            return hasOwn(m, k) && m[k] !== undefined;
          };
        }
        const list = this.list(listNode);
        return (act) => {
          const x = needle(act);
          if (typeof x !== 'string') return UNSURE;
          const xs = list(act);
          if (xs === UNSURE) return xs;
          return xs.includes(x);
        };
      }
      case 'rcall':
        return this.call(n);
      case 'value': {
        if (typeof n.args !== 'boolean') return unsupported();
        const v = n.args;
        return () => v;
      }
      case '.': {
        const read = this.field(n, 'bool');
        return (act) => read(act) as boolean | Unsure;
      }
      default:
        return unsupported();
    }
  }

  private call(n: Node): Fn<boolean> {
    const [name, receiver, args] = n.args as [string, Node, Node[]];
    if (receiver.op === 'id' && receiver.args === 'sets') {
      if (args.length !== 2) return unsupported();
      const a = this.list(args[0] as Node);
      const b = this.list(args[1] as Node);
      const test =
        name === 'contains'
          ? (x: readonly unknown[], y: readonly unknown[]) => y.every((v) => x.includes(v))
          : name === 'intersects'
            ? (x: readonly unknown[], y: readonly unknown[]) => x.some((v) => y.includes(v))
            : name === 'equivalent'
              ? (x: readonly unknown[], y: readonly unknown[]) => x.every((v) => y.includes(v)) && y.every((v) => x.includes(v))
              : unsupported();
      return (act) => {
        const x = a(act);
        if (x === UNSURE) return x;
        const y = b(act);
        if (y === UNSURE) return y;
        return test(x, y);
      };
    }
    if (name !== 'contains' && name !== 'startsWith' && name !== 'endsWith') return unsupported();
    if (args.length !== 1) return unsupported();
    const self = this.scalar(receiver);
    const arg = this.scalar(args[0] as Node);
    return (act) => {
      const s = self(act);
      if (typeof s !== 'string') return UNSURE;
      const t = arg(act);
      if (typeof t !== 'string') return UNSURE;
      return name === 'contains' ? s.includes(t) : name === 'startsWith' ? s.startsWith(t) : s.endsWith(t);
    };
  }

  /** A string or a bool: a literal, or a fact field declared as one. */
  private scalar(n: Node): Fn<string | boolean> {
    if (n.op === 'value') {
      if (typeof n.args !== 'string' && typeof n.args !== 'boolean') return unsupported();
      const v = n.args;
      return () => v;
    }
    if (n.op === '.') return this.field(n, this.declared(n, ['string', 'bool'])) as Fn<string | boolean>;
    if (n.op === '[]') {
      const [mapNode, keyNode] = n.args as [Node, Node];
      if (this.declared(mapNode, ['map<string, string>']) !== 'map<string, string>') return unsupported();
      const map = this.map(mapNode);
      const key = this.scalar(keyNode);
      return (act) => {
        const m = map(act);
        if (m === UNSURE) return m;
        const k = key(act);
        if (typeof k !== 'string' || !hasOwn(m, k)) return UNSURE; // no such key: an error in cel-js
        const v = m[k];
        return typeof v === 'string' ? v : UNSURE;
      };
    }
    return unsupported();
  }

  /** Whether `n` reads a fact field declared as a map. */
  private isMapField(n: Node): boolean {
    if (n.op !== '.') return false;
    const [obj, name] = n.args as [Node, string];
    if (obj.op !== 'id' || !FACT_VARIABLES.has(obj.args as string)) return false;
    const t = this.types(obj.args as string, name);
    return t === 'map<string, string>' || t === 'map<string, list<string>>';
  }

  /** A map fact (`http.headers`, `http.query`, `k8s.params`) of plain string keys. */
  private map(n: Node): Fn<StringMap> {
    return this.field(n, this.declared(n, ['map<string, string>', 'map<string, list<string>>'])) as Fn<StringMap>;
  }

  /** A list of strings (a literal of strings, or a `list<string>` fact), all elements strings at run time. */
  private list(n: Node): Fn<readonly string[]> {
    if (n.op === 'list') {
      const items = (n.args as Node[]).map((item) => (item.op === 'value' && typeof item.args === 'string' ? item.args : unsupported()));
      return () => items;
    }
    if (n.op === '.') return this.field(n, this.declared(n, ['list<string>'])) as Fn<readonly string[]>;
    return unsupported();
  }

  /** The declared type of a fact field, which must be one of `allowed`. */
  private declared(n: Node, allowed: Want[]): Want {
    const [obj, name] = n.args as [Node, string];
    if (obj.op !== 'id' || !FACT_VARIABLES.has(obj.args as string)) return unsupported();
    const t = this.types(obj.args as string, name) as Want | undefined;
    return t !== undefined && allowed.includes(t) ? t : unsupported();
  }

  /**
   * `sql.verb`-style read of a fact field; UNSURE when the variable or the
   * field is unknown, or the value is not of the field's declared type (an
   * error in cel-js).
   */
  private field(n: Node, want: Want): Fn<unknown> {
    const [obj, name] = n.args as [Node, string];
    if (obj.op !== 'id' || !FACT_VARIABLES.has(obj.args as string) || this.types(obj.args as string, name) !== want) return unsupported();
    const variable = obj.args as string;
    const ok =
      want === 'string'
        ? (v: unknown) => typeof v === 'string'
        : want === 'bool'
          ? (v: unknown) => typeof v === 'boolean'
          : want === 'list<string>'
            ? isStringArray
            : want === 'map<string, string>'
              ? isStringMap
              : isStringListMap;
    return (act) => {
      const facts = act[variable];
      if (facts === undefined || facts === null || typeof facts !== 'object') return UNSURE;
      const v = (facts as Record<string, unknown>)[name];
      return ok(v) ? v : UNSURE;
    };
  }
}
