/**
 * Socket side of the upstream connection: TCP, the SSLRequest negotiation
 * for the endpoint's `sslmode`, and the login driven by `UpstreamLogin`.
 *
 * sslmode (libpq's meanings, upstream side):
 *   disable      plain TCP
 *   prefer       TLS when the server offers it, unverified; plain otherwise (default)
 *   require      TLS or fail, unverified
 *   verify-full  TLS or fail; the certificate must chain to the system roots
 *                or the endpoint's `ca_cert` and name the endpoint host
 */
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, rootCertificates, type TLSSocket } from 'node:tls';
import { serialize } from 'pg-protocol';
import { UpstreamLogin, UpstreamLoginError, startupMessage, type LoginResult } from './upstream-login.js';

export type SslMode = 'disable' | 'prefer' | 'require' | 'verify-full';

export interface UpstreamTarget {
  host: string;
  port: number;
  sslmode: SslMode;
  /** PEM trusted besides the system roots (verify-full). */
  caCert?: string;
  connectTimeoutMs?: number;
}

export interface UpstreamConnection extends LoginResult {
  socket: Socket | TLSSocket;
  tls: boolean;
}

function timeoutError(what: string): UpstreamLoginError {
  return new UpstreamLoginError(`timed out ${what}`, '08006');
}

function openTcp(t: UpstreamTarget, signal?: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host: t.host, port: t.port });
    sock.setNoDelay(true);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(timeoutError(`connecting to ${t.host}:${t.port}`));
    }, t.connectTimeoutMs ?? 10_000);
    const onAbort = (): void => {
      sock.destroy();
      reject(new UpstreamLoginError('connection attempt aborted', '08006'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    sock.once('connect', () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      reject(new UpstreamLoginError(`could not connect to ${t.host}:${t.port}: ${err.message}`, '08006'));
    });
  });
}

/** Read exactly one byte (the SSLRequest answer); more bytes before the handshake are an attack (CVE-2021-23222). */
function readSslAnswer(sock: Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(timeoutError('waiting for the SSL answer')), timeoutMs);
    const done = (err: Error | null, v?: string): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('close', onClose);
      sock.pause();
      if (err) reject(err);
      else resolve(v!);
    };
    const onData = (d: Buffer): void => {
      if (d.length !== 1) {
        done(new UpstreamLoginError('the server sent unencrypted data after answering the SSL request', '08P01'));
        return;
      }
      done(null, String.fromCharCode(d[0]!));
    };
    const onError = (e: Error): void => done(new UpstreamLoginError(`SSL negotiation failed: ${e.message}`, '08006'));
    const onClose = (): void => done(new UpstreamLoginError('the server closed the connection during SSL negotiation', '08006'));
    sock.on('data', onData);
    sock.once('error', onError);
    sock.once('close', onClose);
    sock.resume();
  });
}

function startTls(sock: Socket, t: UpstreamTarget): Promise<TLSSocket> {
  const verify = t.sslmode === 'verify-full';
  return new Promise((resolve, reject) => {
    const tls = tlsConnect({
      socket: sock,
      // `host` is what the certificate is checked against (without it Node assumes "localhost").
      host: t.host,
      ...(isIP(t.host) ? {} : { servername: t.host }),
      rejectUnauthorized: verify,
      ...(verify ? { ca: t.caCert ? [...rootCertificates, t.caCert] : [...rootCertificates] } : {}),
    });
    const timer = setTimeout(() => {
      tls.destroy();
      reject(timeoutError('in the TLS handshake'));
    }, t.connectTimeoutMs ?? 10_000);
    tls.once('secureConnect', () => {
      clearTimeout(timer);
      tls.setNoDelay(true);
      resolve(tls);
    });
    tls.once('error', (err) => {
      clearTimeout(timer);
      reject(new UpstreamLoginError(`TLS to ${t.host}:${t.port} failed (sslmode=${t.sslmode}): ${err.message}`, '08006'));
    });
  });
}

/** TCP (+ TLS per sslmode), ready for a StartupMessage or a CancelRequest. */
export async function openUpstream(t: UpstreamTarget, signal?: AbortSignal): Promise<{ socket: Socket | TLSSocket; tls: boolean }> {
  const sock = await openTcp(t, signal);
  if (t.sslmode === 'disable') return { socket: sock, tls: false };
  try {
    sock.write(serialize.requestSsl());
    const answer = await readSslAnswer(sock, t.connectTimeoutMs ?? 10_000);
    if (answer === 'S') return { socket: await startTls(sock, t), tls: true };
    if (answer !== 'N') throw new UpstreamLoginError(`unexpected answer to the SSL request: 0x${answer.charCodeAt(0).toString(16)}`, '08P01');
    if (t.sslmode === 'prefer') return { socket: sock, tls: false };
    throw new UpstreamLoginError(`the server does not support SSL, but the endpoint's sslmode is ${t.sslmode}`, '08006');
  } catch (err) {
    sock.destroy();
    throw err;
  }
}

export interface LoginParams {
  user: string;
  password: string | null;
  database: string;
  /** Further startup parameters (application_name, client_encoding, options …), already filtered. */
  extra: Array<[string, string]>;
  timeoutMs?: number;
}

/** Open the upstream connection and log in. Rejects with UpstreamLoginError. */
export async function loginUpstream(t: UpstreamTarget, p: LoginParams, signal?: AbortSignal): Promise<UpstreamConnection> {
  const { socket, tls } = await openUpstream(t, signal);
  const login = new UpstreamLogin({
    user: p.user,
    password: p.password,
    ...(tls ? { tls: socket as TLSSocket } : {}),
  });
  try {
    socket.write(startupMessage([['user', p.user], ['database', p.database], ...p.extra]));
    const result = await new Promise<LoginResult>((resolve, reject) => {
      const timer = setTimeout(() => finish(timeoutError('logging in')), p.timeoutMs ?? 30_000);
      let chain = Promise.resolve();
      const finish = (err: Error | null, r?: LoginResult): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
        signal?.removeEventListener('abort', onAbort);
        socket.pause();
        if (err) reject(err);
        else resolve(r!);
      };
      const onData = (d: Buffer): void => {
        // Login steps are async (SCRAM key derivation); keep them in order.
        chain = chain.then(async () => {
          const step = await login.feed(d);
          for (const b of step.send) socket.write(b);
          if (step.done) finish(null, step.done);
        }).catch((e: unknown) => finish(e instanceof Error ? e : new Error(String(e))));
      };
      const onError = (e: Error): void => finish(new UpstreamLoginError(`connection to the server failed: ${e.message}`, '08006'));
      const onClose = (): void => finish(new UpstreamLoginError('the server closed the connection during login', '08006'));
      const onAbort = (): void => finish(new UpstreamLoginError('login aborted', '08006'));
      socket.on('data', onData);
      socket.once('error', onError);
      socket.once('close', onClose);
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.resume();
    });
    return { socket, tls, ...result };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

/** Forward a cancel to the server (a new connection, as the protocol requires). Best effort, never throws. */
export async function cancelUpstream(t: UpstreamTarget, key: { processId: number; secretKey: number }): Promise<void> {
  try {
    const { socket } = await openUpstream({ ...t, connectTimeoutMs: Math.min(t.connectTimeoutMs ?? 5000, 5000) });
    await new Promise<void>((resolve) => {
      socket.once('close', () => resolve());
      socket.once('error', () => resolve());
      socket.end(serialize.cancel(key.processId, key.secretKey));
      setTimeout(() => {
        socket.destroy();
        resolve();
      }, 5000).unref();
    });
  } catch {
    // The protocol gives no feedback on cancels either.
  }
}
