/**
 * Hot reload. Watches the policy file (or the `*.hcl` files of the policy
 * directory) with chokidar and swaps in a freshly compiled policy after a
 * short debounce. The swap is one reference assignment, so an in-flight
 * decision (which took `current()` once) sees the old or the new policy,
 * never a mix.
 *
 * Events:
 *   'reload'          (policy: CompiledPolicy)  the new policy is in force
 *   'invalid'         (diagnostics: Diagnostic[]) the edit was rejected; the old policy stays
 *   'restart-needed'  (message: string)  `gateway {}` changed; the new rules are in force
 *                                         but the old gateway values are kept until restart
 */
import { EventEmitter } from 'node:events';
import { basename, resolve } from 'node:path';
import { stat } from 'node:fs/promises';
import { watch, type FSWatcher } from 'chokidar';
import type { Diagnostic } from './types.js';
import { loadDocument } from './load.js';
import { compilePolicy, type CompiledPolicy } from './compiled.js';
import { formatDiagnostic } from './diagnostics.js';

export interface WatchOptions {
  /** Quiet period after the last file event before reloading (default 150 ms). */
  debounceMs?: number;
  /** Where log lines go (default: stderr). */
  log?: (line: string) => void;
}

/** Thrown by `PolicyWatcher.start` when the initial policy is invalid. */
export class PolicyLoadError extends Error {
  constructor(readonly diagnostics: Diagnostic[]) {
    super(`the policy is invalid:\n${diagnostics.map(formatDiagnostic).join('\n')}`);
    this.name = 'PolicyLoadError';
  }
}

function gatewayKey(p: CompiledPolicy): string {
  return JSON.stringify({ has: p.model.hasGatewayBlock, gateway: p.model.gateway });
}

export class PolicyWatcher extends EventEmitter {
  private snapshot: CompiledPolicy;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  private readonly debounceMs: number;
  private readonly log: (line: string) => void;

  private constructor(
    readonly path: string,
    initial: CompiledPolicy,
    opts: WatchOptions,
  ) {
    super();
    this.snapshot = initial;
    this.debounceMs = opts.debounceMs ?? 150;
    this.log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /** Load, then watch. Rejects with a PolicyLoadError (`.diagnostics`) when the initial policy is invalid. */
  static async start(path: string, opts: WatchOptions = {}): Promise<PolicyWatcher> {
    const doc = await loadDocument(path);
    if (!doc.ok) throw new PolicyLoadError(doc.diagnostics);
    const w = new PolicyWatcher(path, compilePolicy(doc.document), opts);
    await w.watch();
    return w;
  }

  /** The policy in force now: take it once per action. */
  current(): CompiledPolicy {
    return this.snapshot;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.watcher?.close();
    await this.running;
  }

  private async watch(): Promise<void> {
    const target = resolve(this.path);
    const isDir = (await stat(target)).isDirectory();
    // Directory mode: only `*.hcl` directly inside, no dotfiles (the loader's rule).
    const ignored = isDir
      ? (p: string, stats?: { isDirectory(): boolean }) => {
          if (p === target) return false;
          const name = basename(p);
          return name.startsWith('.') || !!stats?.isDirectory() || !name.endsWith('.hcl');
        }
      : undefined;
    this.watcher = watch(target, { ignoreInitial: true, depth: 0, ...(ignored ? { ignored } : {}) });
    const onEvent = (): void => this.schedule();
    this.watcher.on('add', onEvent).on('change', onEvent).on('unlink', onEvent).on('error', (err) => this.log(`policy watcher: ${String(err)}`));
    await new Promise<void>((res) => this.watcher!.once('ready', () => res()));
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reload();
    }, this.debounceMs);
  }

  /** Reload now (also used by file events). Reloads never overlap; a request during one runs once more after it. */
  async reload(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.reloadOnce();
      } while (this.again && !this.closed);
    })();
    try {
      await this.running;
    } finally {
      this.running = undefined;
    }
  }

  private async reloadOnce(): Promise<void> {
    let doc;
    try {
      doc = await loadDocument(this.path);
    } catch (err) {
      doc = {
        ok: false as const,
        diagnostics: [
          {
            severity: 'error' as const,
            pos: { file: this.path, line: 1, col: 1 },
            summary: 'Cannot read policy',
            hint: err instanceof Error ? err.message : String(err),
          },
        ],
      };
    }
    if (this.closed) return;
    if (!doc.ok) {
      this.log(`policy reload rejected; keeping the policy in force:\n${doc.diagnostics.map(formatDiagnostic).join('\n')}`);
      this.emit('invalid', doc.diagnostics);
      return;
    }
    const old = this.snapshot;
    let next = compilePolicy(doc.document);
    if (gatewayKey(next) !== gatewayKey(old)) {
      // Listeners, tunnel and store were set up from the old values: keep them until a restart.
      doc.document.model.gateway = old.model.gateway;
      doc.document.model.hasGatewayBlock = old.model.hasGatewayBlock;
      next = compilePolicy(doc.document);
      const message = 'the gateway {} block changed; restart clawpatrol gateway to apply it (the old gateway settings stay in force)';
      this.log(`policy reloaded; ${message}`);
      this.snapshot = next;
      this.emit('restart-needed', message);
    } else {
      this.log(`policy reloaded from ${this.path}`);
      this.snapshot = next;
    }
    this.emit('reload', next);
  }
}
