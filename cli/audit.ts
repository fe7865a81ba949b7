/**
 * `clawpatrol audit verify|export|tail` — read the gateway's hash-chained
 * audit log in the policy's state (gateway.state_dir or gateway.store).
 *
 * Exit status: 0 fine, 1 verification failed (or the log cannot be read),
 * 2 usage (bad arguments, unusable policy).
 */
import type { Command } from 'commander';
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { loadPolicy, formatDiagnostic, type PolicyModel } from '../src/policy/index.js';
import { openStoreFor, stateDirFor, type AuditRow, type Store } from '../src/store/index.js';
import { loadVaultKey, deriveSubkey } from '../src/vault/index.js';
import { AUDIT_KEY_PURPOSE, auditRows, exportLine, readRecord, rowsFromLines, verifyChain, verifyStore, type VerifyResult } from '../src/audit/index.js';

type Out = Pick<NodeJS.WriteStream, 'write'>;

export interface AuditIo {
  out: Out & Partial<Pick<NodeJS.WriteStream, 'once'>>;
  err: Out;
  env: NodeJS.ProcessEnv;
  now: () => number;
}

const defaultIo = (): AuditIo => ({ out: process.stdout, err: process.stderr, env: process.env, now: Date.now });

class UsageError extends Error {}

async function loadModel(configPath: string, io: AuditIo): Promise<PolicyModel> {
  const r = await loadPolicy(configPath);
  if (!r.ok) {
    for (const d of r.diagnostics) io.err.write(`${formatDiagnostic(d)}\n`);
    throw new UsageError(`${configPath}: the policy does not load`);
  }
  return r.policy.model;
}

function fail(cmd: string, err: unknown, io: AuditIo): number {
  io.err.write(`clawpatrol ${cmd}: ${err instanceof Error ? err.message : String(err)}\n`);
  return err instanceof UsageError ? 2 : 1;
}

/** The key of the chain's head MAC, from the vault key; null when this machine has none. */
function auditKey(stateDir: string, env: NodeJS.ProcessEnv): Buffer | null {
  const key = loadVaultKey(stateDir, env);
  return key ? deriveSubkey(key, AUDIT_KEY_PURPOSE) : null;
}

/** `2025-06-01T10:00:00Z`, or a duration back from now: `90s`, `30m`, `24h`, `7d`, `2w`. */
export function parseSince(text: string, now: number): number {
  const m = /^(\d+)\s*(s|m|h|d|w)$/.exec(text.trim());
  if (m) {
    const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
    return now - Number(m[1]) * unit;
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(text)) {
    const t = Date.parse(text);
    if (Number.isFinite(t)) return t;
  }
  throw new UsageError(`--since "${text}": expected an ISO-8601 time (2025-06-01T10:00:00Z) or a duration (90s, 30m, 24h, 7d, 2w)`);
}

// ─────────────────────────── verify ───────────────────────────

export async function runAuditVerify(opts: { config: string; input?: string; json?: boolean }, io: AuditIo = defaultIo()): Promise<number> {
  let store: Store | null = null;
  try {
    const model = await loadModel(opts.config, io);
    let result: VerifyResult;
    let where: string;
    if (opts.input) {
      where = opts.input;
      const lines = createInterface({ input: createReadStream(opts.input), crlfDelay: Infinity });
      try {
        result = await verifyChain({ rows: rowsFromLines(lines) });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`${opts.input}: no such file`);
        result = { ok: false, seq: 0, problem: 'unreadable', message: `${opts.input}: ${(err as Error).message}`, count: 0 };
      }
    } else {
      const stateDir = stateDirFor(model.gateway, io.env);
      store = await openStoreFor(model.gateway, io.env);
      where = store.location;
      result = await verifyStore(store, auditKey(stateDir, io.env));
    }
    if (opts.json) {
      io.out.write(`${JSON.stringify({ log: where, ...result })}\n`);
    } else if (result.ok) {
      const range = result.count ? ` (records ${result.firstSeq}–${result.lastSeq})` : '';
      const cp = result.fromCheckpoint !== null ? `, continuing from the retention checkpoint at record ${result.fromCheckpoint}` : '';
      io.out.write(`audit log intact: ${result.count} record${result.count === 1 ? '' : 's'} verified${range}${cp}\n`);
      for (const n of result.notes) io.err.write(`note: ${n}\n`);
    } else {
      io.out.write(`audit log FAILED verification at record ${result.seq}: ${result.message}\n`);
      io.out.write(`${result.count} record${result.count === 1 ? '' : 's'} verified before it (${where})\n`);
    }
    return result.ok ? 0 : 1;
  } catch (err) {
    return fail('audit verify', err, io);
  } finally {
    await store?.close();
  }
}

// ─────────────────────────── export ───────────────────────────

async function writeLine(out: AuditIo['out'], line: string): Promise<void> {
  if (!out.write(line + '\n') && out.once) await once(out as NodeJS.WriteStream, 'drain');
}

export async function runAuditExport(
  opts: { config: string; format?: string; since?: string; output?: string },
  io: AuditIo = defaultIo(),
): Promise<number> {
  let store: Store | null = null;
  try {
    if ((opts.format ?? 'jsonl') !== 'jsonl') throw new UsageError(`--format ${opts.format}: only jsonl is supported`);
    const sinceTs = opts.since !== undefined ? parseSince(opts.since, io.now()) : undefined;
    const model = await loadModel(opts.config, io);
    store = await openStoreFor(model.gateway, io.env);
    const file = opts.output ? createWriteStream(opts.output, { mode: 0o600 }) : null;
    const out: AuditIo['out'] = file ? (file as unknown as AuditIo['out']) : io.out;
    let n = 0;
    for await (const row of auditRows(store, sinceTs !== undefined ? { sinceTs } : {})) {
      await writeLine(out, exportLine(row));
      n++;
    }
    if (file) {
      await new Promise<void>((resolve, reject) => file.end((err?: Error | null) => (err ? reject(err) : resolve())));
      io.err.write(`exported ${n} record${n === 1 ? '' : 's'} to ${opts.output}\n`);
    }
    return 0;
  } catch (err) {
    return fail('audit export', err, io);
  } finally {
    await store?.close();
  }
}

// ─────────────────────────── tail ───────────────────────────

interface RecordView {
  seq: number;
  time?: string;
  outcome?: string;
  verdict?: string;
  peer?: string | null;
  endpoint?: string | null;
  host?: string;
  rule?: string;
  reason?: string;
  mode?: string;
  status?: string;
  facts?: {
    http?: { method?: string; path?: string };
    sql?: { verb?: string; statement?: string };
    k8s?: { verb?: string; resource?: string; namespace?: string; name?: string };
  };
}

function what(r: RecordView): string {
  const f = r.facts ?? {};
  if (f.k8s) return `${f.k8s.verb ?? ''} ${f.k8s.resource ?? ''} ${[f.k8s.namespace, f.k8s.name].filter(Boolean).join('/')}`.trim();
  if (f.sql) {
    const s = (f.sql.statement ?? '').replace(/\s+/g, ' ');
    return `${f.sql.verb ?? ''} ${s.length > 80 ? s.slice(0, 79) + '…' : s}`.trim();
  }
  if (f.http) return `${f.http.method ?? ''} ${f.http.path ?? ''}`.trim();
  return '';
}

export function formatRecord(row: AuditRow): string {
  let r: RecordView;
  try {
    r = readRecord(row) as unknown as RecordView;
  } catch (err) {
    // One unreadable record must not stop the rest from showing.
    return `-  #${row.seq}  UNREADABLE  ${(err as Error).message}`;
  }
  const outcome = (r.outcome ?? '?') + (r.mode === 'observe' && r.verdict !== r.outcome ? ` (would ${r.verdict})` : '');
  const parts = [
    r.time ?? '-',
    `#${row.seq}`,
    outcome.padEnd(5),
    r.peer ?? '-',
    r.endpoint ?? r.host ?? '-',
    what(r) || '-',
  ];
  if (r.status) parts.push(`status=${r.status}`);
  if (r.rule) parts.push(`rule=${r.rule}`);
  if (r.reason) parts.push(JSON.stringify(r.reason));
  return parts.join('  ');
}

export async function runAuditTail(
  opts: { config: string; lines?: string; follow?: boolean; json?: boolean; intervalMs?: number },
  io: AuditIo = defaultIo(),
  signal?: AbortSignal,
): Promise<number> {
  let store: Store | null = null;
  // Listening before the first line is printed: a Ctrl-C sent as soon as output appears still ends cleanly.
  const stop = opts.follow ? (signal ?? processStopSignal()) : null;
  try {
    const n = Number(opts.lines ?? 20);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--lines ${opts.lines}: expected a whole number`);
    const model = await loadModel(opts.config, io);
    store = await openStoreFor(model.gateway, io.env);
    const head = await store.audit.head();
    let after = Math.max(0, (head?.seq ?? 0) - n);
    const print = async (row: AuditRow) => writeLine(io.out, opts.json ? exportLine(row) : formatRecord(row));
    const drain = async () => {
      for (;;) {
        const page = await store!.audit.range({ afterSeq: after, limit: 1000 });
        for (const row of page) {
          await print(row);
          after = row.seq;
        }
        if (page.length < 1000) return;
      }
    };
    await drain();
    if (!stop) return 0;
    while (!stop.aborted) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, opts.intervalMs ?? 500);
        stop.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      });
      if (!stop.aborted) await drain();
    }
    return 0;
  } catch (err) {
    return fail('audit tail', err, io);
  } finally {
    await store?.close();
  }
}

/** Aborted on Ctrl-C / SIGTERM, so `tail -f` ends cleanly with status 0. */
function processStopSignal(): AbortSignal {
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return ac.signal;
}

export function register(program: Command): void {
  const audit = program.command('audit').description('verify, export and follow the tamper-evident audit log');

  audit
    .command('verify')
    .description('check the hash chain: every record, its order, and the head (a truncated tail shows)')
    .requiredOption('--config <policy>', 'the gateway policy (file or directory)')
    .option('--input <file>', 'verify an exported JSONL file instead of the stored log')
    .option('--json', 'print a JSON result')
    .addHelpText(
      'after',
      `
Exit status: 0 intact (prints the number of records verified), 1 the first edited,
deleted, reordered or missing record is reported, 2 usage error.`,
    )
    .action(async (opts: { config: string; input?: string; json?: boolean }) => {
      process.exitCode = await runAuditVerify(opts);
    });

  audit
    .command('export')
    .description('write audit records as JSON lines (for a SIEM); each line carries seq, prev_hash and hash')
    .requiredOption('--config <policy>', 'the gateway policy (file or directory)')
    .option('--format <format>', 'output format (jsonl)', 'jsonl')
    .option('--since <time>', 'only records at or after an ISO-8601 time or a duration ago (30m, 24h, 7d)')
    .option('--output <file>', 'write to a file (mode 0600) instead of stdout')
    .action(async (opts: { config: string; format?: string; since?: string; output?: string }) => {
      process.exitCode = await runAuditExport(opts);
    });

  audit
    .command('tail')
    .description('print the latest audit records, and with -f follow new ones')
    .requiredOption('--config <policy>', 'the gateway policy (file or directory)')
    .option('-n, --lines <n>', 'how many recent records to print first', '20')
    .option('-f, --follow', 'keep printing records as they are written (Ctrl-C to stop)')
    .option('--json', 'print JSON lines (the export format)')
    .action(async (opts: { config: string; lines?: string; follow?: boolean; json?: boolean }) => {
      process.exitCode = await runAuditTail(opts);
    });
}
