/**
 * The positional outline of HCL text (what lets every diagnostic carry
 * file:line:col): blocks, labels, attributes, list items, object entries,
 * string and heredoc offsets — including the awkward corners of the syntax.
 */
import { describe, it, expect } from 'vitest';
import { scanHcl, stringOffsetPos } from '../../src/policy/hcl-source.js';
import { parseHclFile } from '../../src/policy/hcl.js';

const at = (line: number, col: number) => ({ file: 'f.hcl', line, col });

describe('scanHcl', () => {
  it('blocks, labels, attributes, list items and object entries in source order', () => {
    const src = scanHcl(
      'f.hcl',
      [
        'a = 1 # c',
        'rule "r1" {',
        '  x = [one.two, "s", { k = v.w, "q": 2 }] // trailing',
        '}',
        'b "l1" l2 { c = true }',
        '/* multi',
        '   line */ d = "e"',
      ].join('\n'),
    );
    const body = src.body;
    expect(body.attributes.map((a) => [a.name, a.pos, a.value.text])).toEqual([
      ['a', at(1, 1), '1'],
      ['d', at(7, 12), '"e"'],
    ]);
    expect(body.blocks.map((b) => [b.type, b.pos, b.labels])).toEqual([
      ['rule', at(2, 1), [{ value: 'r1', pos: at(2, 6) }]],
      ['b', at(5, 1), [{ value: 'l1', pos: at(5, 3) }, { value: 'l2', pos: at(5, 8) }]],
    ]);
    const x = body.blocks[0]!.body.attributes[0]!;
    expect(x.value.kind).toBe('list');
    expect(x.value.items!.map((i) => [i.kind, i.start, i.text])).toEqual([
      ['other', at(3, 8), 'one.two'],
      ['string', at(3, 17), '"s"'],
      ['object', at(3, 22), '{ k = v.w, "q": 2 }'],
    ]);
    expect(x.value.items![2]!.entries!.map((e) => [e.key, e.keyPos, e.value.start])).toEqual([
      ['k', at(3, 24), at(3, 28)],
      ['q', at(3, 33), at(3, 38)],
    ]);
    expect(body.blocks[1]!.body.attributes[0]!.value.text).toBe('true');
  });

  it('strings: escapes decoded, interpolations kept raw with nested braces and quotes', () => {
    const text = 'a = "x\\"y\\u00e9${f("}")}z$${lit}"\nb = 2\n';
    const src = scanHcl('f.hcl', text);
    const a = src.body.attributes[0]!;
    expect(a.value.kind).toBe('string');
    const decoded = 'x"yé${f("}")}z$${lit}';
    expect(a.value.offsets!.length).toBe(decoded.length);
    // 'z' is decoded offset 13; in the source it is at column 25.
    expect(stringOffsetPos(src, a.value, decoded, 13)).toEqual(at(1, 25));
    expect(src.body.attributes[1]!.name).toBe('b');
  });

  it('heredocs: flush form offsets map through the stripped indentation, CRLF included', () => {
    const text = 'c = <<-EOT\r\n    first &&\r\n      second\r\n  EOT\r\nd = 1\r\n';
    const src = scanHcl('f.hcl', text);
    const c = src.body.attributes[0]!;
    expect(c.value.kind).toBe('heredoc');
    const decoded = '  first &&\n    second\n';
    expect(stringOffsetPos(src, c.value, decoded, decoded.indexOf('second'))).toEqual(at(3, 7));
    expect(stringOffsetPos(src, c.value, decoded, decoded.indexOf('first'))).toEqual(at(2, 5));
    expect(src.body.attributes[1]).toMatchObject({ name: 'd', pos: at(5, 1) });
  });

  it('for-expressions and function calls are opaque values', () => {
    const src = scanHcl('f.hcl', 'a = [for x in y: x]\nb = f(1, [2], {c = 3})\nc = 1\n');
    expect(src.body.attributes.map((a) => [a.name, a.value.kind])).toEqual([
      ['a', 'other'],
      ['b', 'other'],
      ['c', 'other'],
    ]);
  });

  it('never throws on text it does not understand', () => {
    for (const text of ['}}}', '"unterminated', 'a = [1, 2', '<<EOT\nno end', 'x "y" z', '\u0000\u0001']) {
      expect(() => scanHcl('f.hcl', text)).not.toThrow();
    }
  });
});

describe('hcl2json and the outline agree', () => {
  it('values come from hcl2json, positions from the outline', async () => {
    const text = 'endpoint "https" "x" {\n  hosts = ["a.example.com", "b.example.com"]\n}\n';
    const r = await parseHclFile('f.hcl', text);
    if (!r.ok) throw new Error('parse');
    expect(r.file.json).toEqual({ endpoint: { https: { x: [{ hosts: ['a.example.com', 'b.example.com'] }] } } });
    expect(r.file.src.body.blocks[0]!.body.attributes[0]!.value.items![1]!.start).toEqual(at(2, 29));
  });

  it('syntax errors carry hcl2json positions, one diagnostic each', async () => {
    const r = await parseHclFile('f.hcl', 'a = "x\nb = \n');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.diagnostics.map((d) => [d.pos.line, d.pos.col, d.summary])).toEqual([
      [1, 7, 'Invalid multi-line string'],
      [2, 5, 'Invalid multi-line string'],
      [1, 7, 'Unterminated template string'],
    ]);
    expect(r.diagnostics[2]!.hint).toBe('No closing marker was found for the string');
  });
});
