/**
 * Coalesces bursts of one kind of event per key (a device hammering a limit):
 * the first event of a window is reported at once, the rest of that window
 * as one summary carrying how many were folded into it. A device opening
 * thousands of connections over its cap then costs the audit log two records
 * a second, not thousands, and nothing goes unrecorded.
 */
export class BurstReporter<E> {
  private readonly windows = new Map<string, { timer: NodeJS.Timeout; folded: number; last: E }>();

  constructor(
    private readonly windowMs: number,
    /** `folded`: 0 for the first event of a window, else how many events the summary stands for. */
    private readonly report: (event: E, folded: number) => void,
  ) {}

  note(key: string, event: E): void {
    const open = this.windows.get(key);
    if (open) {
      open.folded++;
      open.last = event;
      return;
    }
    const timer = setTimeout(() => this.flush(key), this.windowMs);
    timer.unref();
    this.windows.set(key, { timer, folded: 0, last: event });
    this.report(event, 0);
  }

  /** Report what is pending now (shutdown). */
  flushAll(): void {
    for (const key of [...this.windows.keys()]) this.flush(key);
  }

  private flush(key: string): void {
    const w = this.windows.get(key);
    if (!w) return;
    clearTimeout(w.timer);
    this.windows.delete(key);
    if (w.folded > 0) this.report(w.last, w.folded);
  }
}
