/**
 * The ClientHello reader on real ClientHellos (Node's TLS client and curl),
 * byte by byte, and on what is not TLS.
 */
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { execFile } from 'node:child_process';
import { parseClientHello } from '../../src/protocols/http/client-hello.js';

/** The first bytes a client sends to a server that never answers. */
function capture(connect: (port: number) => void): Promise<Buffer> {
  return new Promise((resolve) => {
    const server = net.createServer((s) => {
      s.once('data', (d: Buffer) => {
        s.destroy();
        server.close();
        resolve(d);
      });
    });
    server.listen(0, '127.0.0.1', () => connect((server.address() as net.AddressInfo).port));
  });
}

describe('ClientHello reader', () => {
  it('reads SNI and ALPN from Node’s ClientHello, and says incomplete for every prefix', async () => {
    const hello = await capture((port) => {
      const c = tls.connect({ host: '127.0.0.1', port, servername: 'api.example.com', ALPNProtocols: ['h2', 'http/1.1'] });
      c.on('error', () => undefined);
    });
    expect(parseClientHello(hello)).toEqual({ kind: 'hello', serverName: 'api.example.com', alpn: ['h2', 'http/1.1'] });
    for (let n = 1; n < hello.length; n += 7) expect(parseClientHello(hello.subarray(0, n)).kind).toBe('incomplete');
  });

  it('reads curl’s ClientHello; an IP literal carries no server name', async () => {
    const named = await capture((port) => execFile('curl', ['-s', '--max-time', '2', '--resolve', `curl.example:${port}:127.0.0.1`, `https://curl.example:${port}/`], () => undefined));
    expect(parseClientHello(named)).toMatchObject({ kind: 'hello', serverName: 'curl.example' });
    const ip = await capture((port) => execFile('curl', ['-s', '--max-time', '2', `https://127.0.0.1:${port}/`], () => undefined));
    expect(parseClientHello(ip)).toMatchObject({ kind: 'hello', serverName: null });
  });

  it('tells plain HTTP and garbage apart from TLS', () => {
    expect(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n'))).toEqual({ kind: 'not-tls' });
    expect(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0]))).toMatchObject({ kind: 'error' });
    expect(parseClientHello(Buffer.from([0x16, 0x09, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]))).toMatchObject({ kind: 'error' });
  });

  it('refuses a ClientHello that names two servers: a repeated extension or a second host_name', () => {
    const sni = (...names: string[]) => {
      const list = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), u16(n.length), Buffer.from(n, 'latin1')])));
      return ext(0, Buffer.concat([u16(list.length), list]));
    };
    expect(parseClientHello(synthetic([sni('api.example.com')]))).toEqual({ kind: 'hello', serverName: 'api.example.com', alpn: [] });
    expect(parseClientHello(synthetic([sni('api.example.com'), sni('evil.example')]))).toEqual({ kind: 'error', reason: 'duplicate TLS extension 0' });
    expect(parseClientHello(synthetic([sni('api.example.com', 'evil.example')]))).toEqual({ kind: 'error', reason: 'more than one host_name in server_name' });
    const alpn = ext(16, Buffer.from([0, 3, 2, 0x68, 0x32]));
    expect(parseClientHello(synthetic([sni('a.example'), alpn, alpn]))).toEqual({ kind: 'error', reason: 'duplicate TLS extension 16' });
  });
});

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function ext(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

/** A minimal TLS 1.2-style ClientHello record carrying `extensions`. */
function synthetic(extensions: Buffer[]): Buffer {
  const exts = Buffer.concat(extensions);
  const body = Buffer.concat([
    Buffer.from([3, 3]), Buffer.alloc(32), Buffer.from([0]), // version, random, empty session id
    u16(2), Buffer.from([0x13, 0x01]), Buffer.from([1, 0]), // one cipher suite, null compression
    u16(exts.length), exts,
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([22, 3, 1]), u16(hs.length), hs]);
}
