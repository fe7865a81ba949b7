/**
 * The gateway logging in to the real database as the vault credential.
 *
 * `UpstreamLogin` is the sans-I/O part: it consumes the server's login-phase
 * messages and says what to send back (password, MD5 hash, SCRAM-SHA-256
 * exchange through pg's own SASL code) until ReadyForQuery. `loginUpstream`
 * (upstream.ts) binds it to a socket.
 *
 * pg-protocol parses the ordinary backend messages; Authentication requests
 * and NegotiateProtocolVersion are read here because pg-protocol reports an
 * Authentication message with an unexpected length as "authenticationOk"
 * and does not know 'v' at all — neither is acceptable in a login.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { TLSSocket } from 'node:tls';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { TxStatus } from './backend-messages.js';
import { PROTOCOL_3_0 } from './wire.js';

interface ScramSession {
  mechanism: string;
  response: string;
  message: string;
}

interface PgSasl {
  startSession(mechanisms: string[], stream?: unknown): ScramSession;
  continueSession(session: ScramSession, password: string, serverData: string, stream?: unknown): Promise<void>;
  finalizeSession(session: ScramSession, serverData: string): void;
}

const sasl = createRequire(import.meta.url)('pg/lib/crypto/sasl.js') as PgSasl;

export class UpstreamLoginError extends Error {
  override readonly name = 'UpstreamLoginError';
  constructor(
    message: string,
    /** SQLSTATE to report to the agent. */
    readonly code: string,
    /** The server's own ErrorResponse fields, when it sent one. */
    readonly serverError?: { severity?: string; code?: string; message: string; detail?: string; hint?: string },
  ) {
    super(message);
  }
}

/** A StartupMessage with exactly these parameters (pg-protocol's always appends client_encoding=UTF8). */
export function startupMessage(params: Array<[string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of params) parts.push(Buffer.from(`${k}\0${v}\0`, 'utf8'));
  parts.push(Buffer.from([0]));
  const body = Buffer.concat(parts);
  const out = Buffer.allocUnsafe(8 + body.length);
  out.writeInt32BE(8 + body.length, 0);
  out.writeInt32BE(PROTOCOL_3_0, 4);
  body.copy(out, 8);
  return out;
}

export function md5PasswordMessage(user: string, password: string, salt: Buffer): Buffer {
  const inner = createHash('md5').update(password + user, 'utf8').digest('hex');
  const outer = createHash('md5').update(Buffer.concat([Buffer.from(inner, 'latin1'), salt])).digest('hex');
  return serialize.password('md5' + outer);
}

export interface LoginResult {
  /** ParameterStatus values in the order the server sent them. */
  parameters: Array<[string, string]>;
  backendKey: { processId: number; secretKey: number } | null;
  txStatus: TxStatus;
  /** NoticeResponse frames sent during login (forwarded to the agent). */
  notices: Buffer[];
}

export interface LoginStep {
  send: Buffer[];
  done?: LoginResult;
}

export interface UpstreamLoginOptions {
  user: string;
  /** The vault password; null when no credential was injected. */
  password: string | null;
  /** The TLS socket, for SCRAM-SHA-256-PLUS channel binding. */
  tls?: TLSSocket;
}

/** Sans-I/O login: feed server bytes, get bytes to send, until `done`. Throws UpstreamLoginError. */
export class UpstreamLogin {
  private buf: Buffer = Buffer.alloc(0);
  private readonly parser = new Parser();
  private scram: ScramSession | null = null;
  private authenticated = false;
  private readonly result: LoginResult = { parameters: [], backendKey: null, txStatus: 'I', notices: [] };

  constructor(private readonly opts: UpstreamLoginOptions) {}

  async feed(chunk: Buffer): Promise<LoginStep> {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const send: Buffer[] = [];
    while (this.buf.length >= 5) {
      const type = String.fromCharCode(this.buf[0]!);
      const len = this.buf.readInt32BE(1);
      if (len < 4 || len > 1024 * 1024) throw new UpstreamLoginError(`invalid message length ${len} from the server during login`, '08P01');
      if (this.buf.length < len + 1) break;
      const frame = this.buf.subarray(0, len + 1);
      this.buf = this.buf.subarray(len + 1);
      const done = await this.onMessage(type, frame, send);
      if (done) {
        if (this.buf.length > 0) throw new UpstreamLoginError('the server sent data after ReadyForQuery during login', '08P01');
        return { send, done: this.result };
      }
    }
    return { send };
  }

  private async onMessage(type: string, frame: Buffer, send: Buffer[]): Promise<boolean> {
    const body = frame.subarray(5);
    switch (type) {
      case 'R':
        await this.onAuthentication(body, send);
        return false;
      case 'v': {
        // We only ever request 3.0 without _pq_ options; any downgrade below that is unusable.
        const minor = body.length >= 4 ? body.readInt32BE(0) : -1;
        if (minor < 0) throw new UpstreamLoginError('the server does not support protocol 3.0', '08P01');
        return false;
      }
      case 'E': {
        const e = this.parse(frame) as { message?: string; severity?: string; code?: string; detail?: string; hint?: string };
        throw new UpstreamLoginError(`the server refused the login: ${e.message ?? 'unknown error'}`, e.code ?? '08006', {
          message: e.message ?? 'unknown error',
          ...(e.severity ? { severity: e.severity } : {}),
          ...(e.code ? { code: e.code } : {}),
          ...(e.detail ? { detail: e.detail } : {}),
          ...(e.hint ? { hint: e.hint } : {}),
        });
      }
      case 'N':
        this.result.notices.push(Buffer.from(frame));
        return false;
      case 'S':
      case 'K':
      case 'Z': {
        if (!this.authenticated) throw new UpstreamLoginError(`the server sent '${type}' before authenticating`, '08P01');
        const m = this.parse(frame) as {
          name: string;
          parameterName?: string;
          parameterValue?: string;
          processID?: number;
          secretKey?: number;
          status?: string;
        };
        if (m.name === 'parameterStatus') this.result.parameters.push([m.parameterName ?? '', m.parameterValue ?? '']);
        else if (m.name === 'backendKeyData') this.result.backendKey = { processId: m.processID ?? 0, secretKey: m.secretKey ?? 0 };
        else if (m.name === 'readyForQuery') {
          const s = m.status;
          if (s !== 'I' && s !== 'T' && s !== 'E') throw new UpstreamLoginError(`invalid transaction status ${s}`, '08P01');
          this.result.txStatus = s;
          return true;
        }
        return false;
      }
      default:
        throw new UpstreamLoginError(`unexpected message '${type}' from the server during login`, '08P01');
    }
  }

  private parse(frame: Buffer): unknown {
    let out: unknown;
    this.parser.parse(frame, (m) => {
      out = m;
    });
    return out;
  }

  private password(method: string): string {
    if (this.opts.password === null) {
      throw new UpstreamLoginError(
        `the server asks for a password (${method}) but the gateway holds no credential for this connection`,
        '28P01',
      );
    }
    return this.opts.password;
  }

  private async onAuthentication(body: Buffer, send: Buffer[]): Promise<void> {
    if (body.length < 4) throw new UpstreamLoginError('truncated authentication request', '08P01');
    const code = body.readInt32BE(0);
    const data = body.subarray(4);
    switch (code) {
      case 0: // AuthenticationOk
        if (data.length !== 0) throw new UpstreamLoginError('malformed AuthenticationOk', '08P01');
        if (this.scram) throw new UpstreamLoginError('the server ended SCRAM without its final message', '08P01');
        this.authenticated = true;
        return;
      case 3: // cleartext
        if (data.length !== 0) throw new UpstreamLoginError('malformed cleartext password request', '08P01');
        send.push(serialize.password(this.password('cleartext')));
        return;
      case 5: // MD5
        if (data.length !== 4) throw new UpstreamLoginError('malformed MD5 password request', '08P01');
        send.push(md5PasswordMessage(this.opts.user, this.password('md5'), Buffer.from(data)));
        return;
      case 10: {
        // SASL: list of mechanisms
        const mechanisms = data.toString('utf8').split('\0').filter((m) => m !== '');
        this.password('SCRAM-SHA-256'); // fail before starting an exchange we cannot finish
        try {
          this.scram = sasl.startSession(mechanisms, this.opts.tls);
        } catch (err) {
          throw new UpstreamLoginError(`SASL: ${err instanceof Error ? err.message : String(err)}`, '28000');
        }
        send.push(serialize.sendSASLInitialResponseMessage(this.scram.mechanism, this.scram.response));
        return;
      }
      case 11: // SASLContinue
        if (!this.scram) throw new UpstreamLoginError('SASLContinue without a SASL exchange', '08P01');
        try {
          await sasl.continueSession(this.scram, this.password('SCRAM-SHA-256'), data.toString('utf8'), this.opts.tls);
        } catch (err) {
          throw new UpstreamLoginError(`SCRAM: ${err instanceof Error ? err.message : String(err)}`, '28000');
        }
        send.push(serialize.sendSCRAMClientFinalMessage(this.scram.response));
        return;
      case 12: // SASLFinal: verify the server's signature (mutual authentication)
        if (!this.scram) throw new UpstreamLoginError('SASLFinal without a SASL exchange', '08P01');
        try {
          sasl.finalizeSession(this.scram, data.toString('utf8'));
        } catch (err) {
          throw new UpstreamLoginError(`SCRAM: ${err instanceof Error ? err.message : String(err)}`, '28000');
        }
        this.scram = null;
        return;
      default:
        throw new UpstreamLoginError(`the server requested an unsupported authentication method (code ${code})`, '28000');
    }
  }
}
