/**
 * Where a process's CPU goes, by thread and by category, from a `perf`
 * recording with call graphs. `perf` sees every thread and the kernel, which
 * V8's CPU profile does not (it samples one thread, by wall time).
 *
 *   NODE_OPTIONS=--perf-basic-prof <start the process under test>
 *   perf record -g -F 1999 -p <pid> -o perf.data -- sleep 5
 *   perf script -i perf.data -F tid,ip,sym | npx tsx bench/perf-categories.ts [--per <n>] [--detail '<row>']
 *
 * Each sample goes to the first frame, from the leaf up, that names a
 * category. GC and kernel I/O are named by their native frames. Our code is
 * named by its source directory (`src/protocols/http`, `src/audit/record`,
 * … from `src/` or `dist/src/`). Everything else is `other`. The thread with
 * the most samples is `main`. `--per n` also prints µs per unit
 * (n = requests or transactions during the recording; the rate is 1999 Hz).
 * `--detail 'main src/audit/redact'` lists that row's leaf frames instead.
 */
import { createInterface } from 'node:readline';

const HZ = 1999;

const NATIVE: [string, RegExp][] = [
  ['gc', /Scavenge|MarkCompact|Heap::|Sweeper|ConcurrentMarking|GCTracer|MinorMC|IncrementalMarking/],
  ['io-write', /__libc_write|writev|DoTryWrite/],
  ['io-read', /uv__read|__libc_read/],
  ['epoll', /epoll_wait|uv__io_poll$/],
  ['postMessage', /MessagePort|uv_async_send|postMessage/],
];
const OURS = /\/work\/[^/]+\/(?:dist\/)?(src\/[a-z]+(?:\/[a-z]+)?|bench\/\w+)/;

interface Sample {
  tid: number;
  frames: string[];
}

export function category(frames: readonly string[]): string {
  for (const frame of frames) {
    for (const [name, re] of NATIVE) if (re.test(frame)) return name;
    const ours = OURS.exec(frame);
    if (ours) return ours[1]!;
  }
  return 'other';
}

/** Parse `perf script -F tid,ip,sym`: a line with the thread id, then one indented line per frame. */
export function parseSamples(lines: Iterable<string>): Sample[] {
  const samples: Sample[] = [];
  let current: Sample | null = null;
  for (const line of lines) {
    if (!line.trim()) continue;
    if (!line.startsWith('\t')) {
      current = { tid: Number(line.trim().split(/\s+/)[0]), frames: [] };
      samples.push(current);
    } else if (current) {
      current.frames.push(line.trim().replace(/^[0-9a-f]+\s+/, ''));
    }
  }
  return samples;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const option = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const per = Number(option('per') ?? 0);
  const detail = option('detail');

  const lines: string[] = [];
  for await (const line of createInterface({ input: process.stdin })) lines.push(line);
  const samples = parseSamples(lines);
  if (samples.length === 0) throw new Error('no samples on stdin (perf script -F tid,ip,sym)');

  const perThread = new Map<number, number>();
  for (const s of samples) perThread.set(s.tid, (perThread.get(s.tid) ?? 0) + 1);
  const mainTid = [...perThread].sort((a, b) => b[1] - a[1])[0]![0];

  const rows = new Map<string, number>();
  const leaves = new Map<string, number>();
  for (const s of samples) {
    const row = `${s.tid === mainTid ? 'main' : `thread ${s.tid}`} ${category(s.frames)}`;
    rows.set(row, (rows.get(row) ?? 0) + 1);
    if (row === detail) {
      const js = s.frames.find((f) => f.startsWith('JS:')) ?? '';
      const leaf = `${(s.frames[0] ?? '?').slice(0, 70)} <= ${js.slice(0, 100)}`;
      leaves.set(leaf, (leaves.get(leaf) ?? 0) + 1);
    }
  }
  const listed = detail ? leaves : rows;
  for (const [name, n] of [...listed].sort((a, b) => b[1] - a[1])) {
    if (n / samples.length < 0.004) break;
    const us = per > 0 ? `  ${((n / HZ / per) * 1e6).toFixed(2)} µs each` : '';
    console.log(`${String(n).padStart(7)} ${((n / samples.length) * 100).toFixed(1).padStart(5)} %  ${name}${us}`);
  }
}

await main();
