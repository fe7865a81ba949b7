/**
 * HCL text → JSON values (hcl2json, the Go HCL parser as wasm) + positional
 * outline (hcl-source.ts). Syntax errors come back from hcl2json as
 * `file:line,col-…: Summary; Detail` and are turned into diagnostics.
 */
import type { Diagnostic } from './types.js';
import { error } from './diagnostics.js';
import { scanHcl, type SrcFile } from './hcl-source.js';

export interface ParsedFile {
  src: SrcFile;
  json: Record<string, unknown>;
}

export type ParseOutcome = { ok: true; file: ParsedFile } | { ok: false; diagnostics: Diagnostic[] };

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Split hcl2json's error text into one diagnostic per HCL error. */
export function syntaxDiagnostics(file: string, message: string): Diagnostic[] {
  const text = message.replace(/^parse config: \[/, '').replace(/\]$/, '');
  const marker = new RegExp(`(?:^|\\s)${escapeRegExp(file)}:(\\d+),(\\d+)(?:-(?:\\d+,)?\\d+)?: `, 'g');
  const hits: Array<{ line: number; col: number; start: number; end: number }> = [];
  for (const m of text.matchAll(marker)) {
    hits.push({ line: Number(m[1]), col: Number(m[2]), start: m.index!, end: m.index! + m[0].length });
  }
  if (hits.length === 0) {
    return [error({ file, line: 1, col: 1 }, 'Syntax error', text.trim() || 'the HCL parser rejected this file')];
  }
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  hits.forEach((h, k) => {
    const body = text.slice(h.end, k + 1 < hits.length ? hits[k + 1]!.start : text.length).trim();
    const semi = body.indexOf('; ');
    const summary = (semi >= 0 ? body.slice(0, semi) : body).trim();
    const hint = (semi >= 0 ? body.slice(semi + 2) : 'fix the HCL syntax').trim().replace(/\.$/, '');
    const key = `${h.line}:${h.col}:${summary}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push(error({ file, line: h.line, col: h.col }, summary, hint));
  });
  return out;
}

export async function parseHclFile(file: string, text: string): Promise<ParseOutcome> {
  let json: Record<string, unknown>;
  try {
    // Imported on first use: the module instantiates its wasm at import time.
    const { parse } = await import('@cdktn/hcl2json');
    json = (await parse(file, text)) as Record<string, unknown>;
  } catch (err) {
    return { ok: false, diagnostics: syntaxDiagnostics(file, err instanceof Error ? err.message : String(err)) };
  }
  return { ok: true, file: { src: scanHcl(file, text), json } };
}
