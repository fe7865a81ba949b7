/**
 * Where the audit writer thread's code comes from.
 *
 * Built (dist/): `worker-main.js`, compiled next to this module.
 *
 * From TypeScript sources (vitest, `node --import tsx`): Node 20 applies no
 * module loader hooks inside worker threads, so the thread cannot import
 * `worker-main.ts` itself. Instead its sources are bundled once per process
 * with esbuild (present wherever tsx or vitest is) into CommonJS and run as
 * the thread's code; npm packages stay outside the bundle and are required
 * from the sources' own node_modules.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export type WriterThreadEntry = { kind: 'compiled'; url: URL } | { kind: 'sources'; code: string };

export class WriterEntryError extends Error {
  override name = 'WriterEntryError';
}

const bundles = new Map<string, string>();

export function writerThreadEntry(from: string = import.meta.url): WriterThreadEntry {
  const compiled = new URL('./worker-main.js', from);
  if (existsSync(compiled)) return { kind: 'compiled', url: compiled };
  const source = new URL('./worker-main.ts', from);
  if (!existsSync(source)) {
    throw new WriterEntryError(`audit writer thread: ${fileURLToPath(compiled)} is missing (incomplete build?)`);
  }
  const entry = fileURLToPath(source);
  let code = bundles.get(entry);
  if (code === undefined) {
    code = bundleSources(entry);
    bundles.set(entry, code);
  }
  return { kind: 'sources', code };
}

function bundleSources(entry: string): string {
  const require = createRequire(entry);
  let esbuild: typeof import('esbuild');
  try {
    esbuild = require('esbuild') as typeof import('esbuild');
  } catch {
    throw new WriterEntryError(`audit writer thread: running ${entry} from TypeScript sources needs esbuild (installed with tsx/vitest)`);
  }
  let out: import('esbuild').BuildResult & { outputFiles: import('esbuild').OutputFile[] };
  try {
    out = esbuild.buildSync({
      entryPoints: [entry],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      packages: 'external',
      write: false,
      logLevel: 'silent',
    });
  } catch (err) {
    throw new WriterEntryError(`audit writer thread: cannot bundle ${entry}: ${(err as Error).message}`);
  }
  const text = out.outputFiles[0]?.text ?? '';
  // An eval'd thread's own `require` resolves from the working directory; packages must resolve from the sources.
  return `(function (require, module, exports) {\n${text}\n})(require('node:module').createRequire(${JSON.stringify(entry)}), { exports: {} }, {});\n`;
}
