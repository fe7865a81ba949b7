/**
 * The joining machine's side of the enrolment API (see enrol-routes.ts):
 * fetch the CA, redeem a token or run the device-code flow, and — with the
 * device token — ask for the device's status or leave.
 */
import type { DeviceStatus, JoinResult } from '../enrol-routes.js';

export class GatewayApiError extends Error {
  override name = 'GatewayApiError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export class GatewayApi {
  constructor(
    readonly baseUrl: string,
    private readonly timeoutMs = 15_000,
  ) {
    const u = new URL(baseUrl);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new GatewayApiError(`the gateway URL must be http(s)://…, not ${baseUrl}`, 0);
  }

  private async call<T>(method: string, path: string, opts: { body?: unknown; deviceToken?: string; okStatuses?: number[] } = {}): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.deviceToken) headers.authorization = `Bearer ${opts.deviceToken}`;
    let res: Response;
    try {
      res = await fetch(new URL(path, this.baseUrl), {
        method,
        headers,
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: 'error',
      });
    } catch (err) {
      const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new GatewayApiError(`cannot reach the gateway at ${this.baseUrl}: ${cause}`, 0);
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      body = { error: text.slice(0, 200) };
    }
    if (!res.ok && !(opts.okStatuses ?? []).includes(res.status)) {
      const message = body && typeof body === 'object' && 'error' in body ? String((body as { error: unknown }).error) : `HTTP ${res.status}`;
      throw new GatewayApiError(message, res.status);
    }
    return { status: res.status, body: body as T };
  }

  async ca(): Promise<{ caPem: string; fingerprint: string }> {
    return (await this.call<{ caPem: string; fingerprint: string }>('GET', '/api/enrol/ca')).body;
  }

  async joinWithToken(token: string, publicKey: string, name: string): Promise<JoinResult> {
    return (await this.call<JoinResult>('POST', '/api/enrol/token', { body: { token, publicKey, name } })).body;
  }

  async startDeviceCode(publicKey: string, name: string): Promise<{ deviceCode: string; userCode: string; expiresAt: string; interval: number }> {
    return (await this.call<{ deviceCode: string; userCode: string; expiresAt: string; interval: number }>('POST', '/api/enrol/device', { body: { publicKey, name } })).body;
  }

  async pollDeviceCode(deviceCode: string): Promise<{ status: 'pending' | 'approved' | 'denied' | 'expired' | 'unknown'; join?: JoinResult; error?: string }> {
    return (
      await this.call<{ status: 'pending' | 'approved' | 'denied' | 'expired' | 'unknown'; join?: JoinResult; error?: string }>('POST', '/api/enrol/device/poll', {
        body: { deviceCode },
        okStatuses: [403, 404, 410],
      })
    ).body;
  }

  async self(deviceToken: string): Promise<DeviceStatus> {
    return (await this.call<DeviceStatus>('GET', '/api/enrol/self', { deviceToken })).body;
  }

  async leave(deviceToken: string): Promise<void> {
    await this.call('DELETE', '/api/enrol/self', { deviceToken });
  }

  /** Round trip to the control server's health check, in ms. */
  async ping(): Promise<number> {
    const started = performance.now();
    await this.call('GET', '/healthz');
    return performance.now() - started;
  }
}
