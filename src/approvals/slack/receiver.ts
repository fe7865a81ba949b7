/**
 * A Bolt `Receiver` that lives on the gateway's control server instead of
 * opening its own port. The control route (slack.ts) verifies Slack's
 * signature and hands the parsed payload here; Bolt then runs its normal
 * middleware and our `app.action(...)` listeners. `ack()` answers Slack's
 * HTTP request (which must happen within 3 s).
 */
import type { ServerResponse } from 'node:http';
import type { App, Receiver } from '@slack/bolt';

export class ControlRouteReceiver implements Receiver {
  private app: App | undefined;

  init(app: App): void {
    this.app = app;
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }

  async dispatch(body: Record<string, unknown>, res: ServerResponse, log: (line: string) => void): Promise<void> {
    if (!this.app) throw new Error('receiver used before Bolt initialised it');
    let acked = false;
    const respond = (response?: unknown) => {
      if (acked || res.headersSent) return;
      acked = true;
      if (response === undefined || response === '') {
        res.writeHead(200, { 'content-length': 0 });
        res.end();
      } else {
        const text = typeof response === 'string' ? response : JSON.stringify(response);
        res.writeHead(200, { 'content-type': typeof response === 'string' ? 'text/plain' : 'application/json', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      }
    };
    try {
      await this.app.processEvent({ body, ack: async (response?: unknown) => respond(response) });
    } catch (err) {
      log(`slack: handling an interaction failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    // Unhandled payloads still get their 200, or Slack shows the user an error and retries.
    respond();
  }
}
