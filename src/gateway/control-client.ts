/**
 * What CLIs on the gateway host (`approvals`, `devices`) use to talk to the
 * running gateway's control API. Errors carry the server's message so the
 * CLI can print something a human understands.
 *
 * undici's own fetch (not the global one) so a gateway CA can be trusted
 * per client through its dispatcher.
 */
import { Agent, fetch } from 'undici';

export class ControlError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export interface ControlClientOptions {
  /** e.g. `http://127.0.0.1:8080`, or `https://gw.example:8080` (the control API speaks TLS on the same port). */
  baseUrl: string;
  /**
   * PEM of the CA to trust for an https `baseUrl` — the gateway CA (its leaf
   * is not in the system store). Without it the system store is used.
   */
  caPem?: string;
  /** Admin token; omit for unauthenticated routes (enrolment). */
  token?: string;
  timeoutMs?: number;
}

export class ControlClient {
  private readonly dispatcher: Agent | undefined;
  constructor(private readonly opts: ControlClientOptions) {
    this.dispatcher = opts.caPem ? new Agent({ connect: { ca: opts.caPem } }) : undefined;
  }

  get baseUrl(): string {
    return this.opts.baseUrl;
  }

  async request<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Awaited<ReturnType<typeof fetch>>;
    try {
      res = await fetch(new URL(path, this.opts.baseUrl), {
        method,
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
      });
    } catch (err) {
      const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new ControlError(`cannot reach the gateway at ${this.opts.baseUrl}: ${cause}`, 0);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON: report the raw text below */
    }
    if (!res.ok) {
      const message =
        parsed && typeof parsed === 'object' && 'error' in parsed ? String((parsed as { error: unknown }).error) : text;
      if (res.status === 401 || res.status === 403) {
        throw new ControlError(`the gateway refused the admin token (${res.status}): ${message}`, res.status);
      }
      throw new ControlError(message || `HTTP ${res.status}`, res.status);
    }
    return parsed as T;
  }
}
