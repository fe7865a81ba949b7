import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Socket } from 'node:net';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import { startPgCluster, type PgCluster } from '../support/pg-cluster.js';
import { loginUpstream, type SslMode } from '../../src/protocols/postgres/upstream.js';
import { UpstreamLogin, UpstreamLoginError } from '../../src/protocols/postgres/upstream-login.js';
import { makeTestCa, enableClusterSsl, type TestCa } from './support/tls.js';

/** Run one simple query on an already logged-in socket; returns the first column of each row. */
function query(sock: Socket, sql: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const parser = new Parser();
    const rows: string[] = [];
    let error: Error | null = null;
    const onData = (d: Buffer): void => {
      parser.parse(d, (m) => {
        const msg = m as unknown as { name: string; fields?: unknown[]; message?: string };
        if (msg.name === 'dataRow') rows.push(String(msg.fields?.[0]));
        if (msg.name === 'error') error = new Error(msg.message);
        if (msg.name === 'readyForQuery') {
          sock.off('data', onData);
          if (error) reject(error);
          else resolve(rows);
        }
      });
    };
    sock.on('data', onData);
    sock.resume();
    sock.write(serialize.query(sql));
  });
}

describe('logging in to the real PostgreSQL 15 as the vault credential', () => {
  let pg: PgCluster;
  let ca: TestCa;
  const target = (sslmode: SslMode, extra: { caCert?: string; host?: string } = {}) => ({
    host: extra.host ?? '127.0.0.1',
    port: pg.port,
    sslmode,
    ...(extra.caCert ? { caCert: extra.caCert } : {}),
  });

  beforeAll(async () => {
    pg = await startPgCluster();
    pg.createUser('scram_user', 'scram-secret-1', 'scram-sha-256');
    pg.createUser('md5_user', 'md5-secret-1', 'md5');
    pg.createUser('plain_user', 'plain-secret-1', 'password');
    ca = makeTestCa();
  });
  afterAll(async () => {
    await pg?.stop();
    ca?.cleanup();
  });

  for (const [user, password, method] of [
    ['scram_user', 'scram-secret-1', 'SCRAM-SHA-256'],
    ['md5_user', 'md5-secret-1', 'MD5'],
    ['plain_user', 'plain-secret-1', 'cleartext'],
  ] as const) {
    it(`authenticates with ${method}`, async () => {
      const c = await loginUpstream(target('disable'), { user, password, database: 'postgres', extra: [['application_name', 'cp-test']] });
      try {
        expect(c.tls).toBe(false);
        expect(c.txStatus).toBe('I');
        expect(c.backendKey?.processId).toBeGreaterThan(0);
        expect(Object.fromEntries(c.parameters)['server_version']).toMatch(/^15\./);
        expect(Object.fromEntries(c.parameters)['application_name']).toBe('cp-test');
        expect(await query(c.socket, 'SELECT current_user')).toEqual([user]);
      } finally {
        c.socket.destroy();
      }
    });
  }

  it('reports a wrong password as the server did (28P01)', async () => {
    const err = await loginUpstream(target('disable'), { user: 'scram_user', password: 'wrong', database: 'postgres', extra: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamLoginError);
    expect((err as UpstreamLoginError).code).toBe('28P01');
    expect((err as UpstreamLoginError).serverError?.message).toMatch(/password authentication failed/);
  });

  it('refuses to continue when the server asks for a password and no credential was resolved', async () => {
    const err = await loginUpstream(target('disable'), { user: 'md5_user', password: null, database: 'postgres', extra: [] }).catch((e: unknown) => e);
    expect((err as UpstreamLoginError).message).toMatch(/asks for a password \(md5\) but the gateway holds no credential/);
  });

  it('sslmode=require fails against a server without TLS; prefer falls back to plain', async () => {
    const err = await loginUpstream(target('require'), { user: 'scram_user', password: 'scram-secret-1', database: 'postgres', extra: [] }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/does not support SSL, but the endpoint's sslmode is require/);
    const c = await loginUpstream(target('prefer'), { user: 'scram_user', password: 'scram-secret-1', database: 'postgres', extra: [] });
    expect(c.tls).toBe(false);
    c.socket.destroy();
  });

  describe('with TLS on the server', () => {
    beforeAll(() => enableClusterSsl(pg, ca, 'localhost'));

    it('prefer and require use TLS (SCRAM with channel binding over it)', async () => {
      for (const mode of ['prefer', 'require'] as const) {
        const c = await loginUpstream(target(mode), { user: 'scram_user', password: 'scram-secret-1', database: 'postgres', extra: [] });
        try {
          expect(c.tls).toBe(true);
          expect(await query(c.socket, 'SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()')).toEqual(['true']);
        } finally {
          c.socket.destroy();
        }
      }
    });

    it('verify-full accepts the endpoint ca_cert and the right host name', async () => {
      const c = await loginUpstream(target('verify-full', { caCert: ca.certPem, host: 'localhost' }), {
        user: 'md5_user',
        password: 'md5-secret-1',
        database: 'postgres',
        extra: [],
      });
      expect(c.tls).toBe(true);
      c.socket.destroy();
    });

    it('verify-full rejects an unknown CA and a host the certificate does not name', async () => {
      const other = makeTestCa('another CA');
      try {
        const e1 = await loginUpstream(target('verify-full', { caCert: other.certPem, host: 'localhost' }), {
          user: 'md5_user',
          password: 'md5-secret-1',
          database: 'postgres',
          extra: [],
        }).catch((e: unknown) => e);
        expect((e1 as Error).message).toMatch(/TLS to localhost:\d+ failed \(sslmode=verify-full\)/);
      } finally {
        other.cleanup();
      }
      const e2 = await loginUpstream(target('verify-full', { caCert: ca.certPem, host: '127.0.0.1' }), {
        user: 'md5_user',
        password: 'md5-secret-1',
        database: 'postgres',
        extra: [],
      }).catch((e: unknown) => e);
      expect((e2 as Error).message).toMatch(/IP: 127\.0\.0\.1 is not in the cert's list/);
    });
  });
});

describe('UpstreamLogin against crafted server messages', () => {
  const auth = (code: number, data: number[] = []): Buffer => {
    const b = Buffer.alloc(9 + data.length);
    b.write('R', 0, 'latin1');
    b.writeInt32BE(8 + data.length, 1);
    b.writeInt32BE(code, 5);
    Buffer.from(data).copy(b, 9);
    return b;
  };
  const rfq = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
  const paramStatus = Buffer.concat([Buffer.from([0x53, 0, 0, 0, 13]), Buffer.from('a\0bcdefg\0')]);

  it('completes on AuthenticationOk … ReadyForQuery', async () => {
    const l = new UpstreamLogin({ user: 'u', password: 'p' });
    const step = await l.feed(Buffer.concat([auth(0), paramStatus, rfq]));
    expect(step.done?.parameters).toEqual([['a', 'bcdefg']]);
  });

  it('answers a cleartext request with the vault password only', async () => {
    const l = new UpstreamLogin({ user: 'u', password: 'vault-pw' });
    const step = await l.feed(auth(3));
    expect(step.send).toEqual([serialize.password('vault-pw')]);
  });

  const bad: Array<[string, Buffer, RegExp]> = [
    ['AuthenticationOk with extra bytes', auth(0, [1, 2, 3, 4]), /malformed AuthenticationOk/],
    ['an MD5 request without salt', auth(5), /malformed MD5/],
    ['GSSAPI', auth(7), /unsupported authentication method \(code 7\)/],
    ['parameters before authentication', paramStatus, /before authenticating/],
    ['data after ReadyForQuery', Buffer.concat([auth(0), rfq, paramStatus]), /data after ReadyForQuery/],
    ['a SASL exchange without SCRAM-SHA-256', auth(10, [...Buffer.from('OTHER\0\0')]), /SASL: Only mechanism/],
    ['SASLFinal out of the blue', auth(12, [...Buffer.from('v=xyz')]), /SASLFinal without a SASL exchange/],
  ];
  for (const [name, bytes, re] of bad) {
    it(`fails cleanly on ${name}`, async () => {
      const l = new UpstreamLogin({ user: 'u', password: 'p' });
      await expect(l.feed(bytes)).rejects.toThrow(re);
    });
  }
});
