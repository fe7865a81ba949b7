import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createServer, type Server } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { spawn } from 'node:child_process';
import fc from 'fast-check';
import { sniffTls, sniffHttp, SNIFF_LIMIT } from '../../src/net/sniff.js';

/** The first bytes a real client sends to a server that never answers. */
let server: Server;
let port = 0;
const captured: Array<(b: Buffer) => void> = [];
beforeAll(async () => {
  server = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      // A ClientHello is complete once the record length is satisfied.
      if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
        captured.shift()?.(buf);
        s.destroy();
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function nextHello(): Promise<Buffer> {
  return new Promise((resolve) => captured.push(resolve));
}

async function nodeHello(servername?: string): Promise<Buffer> {
  const p = nextHello();
  const c = tlsConnect({ host: '127.0.0.1', port, ...(servername ? { servername } : {}), rejectUnauthorized: false });
  c.on('error', () => {});
  const b = await p;
  c.destroy();
  return b;
}

async function curlHello(url: string, resolveTo: string): Promise<Buffer> {
  const p = nextHello();
  const child = spawn('curl', ['-sk', '--max-time', '3', '--resolve', resolveTo, url], { stdio: 'ignore' });
  const b = await p;
  child.kill();
  return b;
}

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}
function sniExt(names: string[]): Buffer {
  const entries = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), u16(n.length), Buffer.from(n)])));
  const data = Buffer.concat([u16(entries.length), entries]);
  return Buffer.concat([u16(0), u16(data.length), data]);
}
/** A minimal TLS 1.2 ClientHello record with the given extensions. */
function buildHello(exts: Buffer[]): Buffer {
  const extensions = Buffer.concat(exts);
  const body = Buffer.concat([
    Buffer.from([3, 3]), Buffer.alloc(32, 7), Buffer.from([0]), u16(2), u16(0x1301), Buffer.from([1, 0]),
    u16(extensions.length), extensions,
  ]);
  const hs = Buffer.concat([Buffer.from([1, 0, body.length >> 8, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs]);
}

describe('TLS ClientHello SNI', () => {
  it('reads the server name of a node client', async () => {
    expect(sniffTls(await nodeHello('API.Example.com'))).toEqual({ kind: 'tls', sni: 'api.example.com' });
  });
  it('reads the server name of curl (OpenSSL)', async () => {
    const hello = await curlHello(`https://db.internal.test:${port}/`, `db.internal.test:${port}:127.0.0.1`);
    expect(sniffTls(hello)).toEqual({ kind: 'tls', sni: 'db.internal.test' });
  });
  it('reports no name for a client that dials an IP literal', async () => {
    const hello = await curlHello(`https://127.0.0.1:${port}/`, `x:1:127.0.0.1`);
    expect(sniffTls(hello)).toEqual({ kind: 'tls', sni: null });
  });
  it('asks for more bytes until the hello is complete, even one byte at a time', async () => {
    const hello = await nodeHello('split.example.com');
    for (let i = 0; i < hello.length; i++) expect(sniffTls(hello.subarray(0, i)).kind).toBe('need-more');
    expect(sniffTls(hello)).toEqual({ kind: 'tls', sni: 'split.example.com' });
  });
  it('reassembles a hello split over two TLS records', async () => {
    const hello = await nodeHello('records.example.com');
    const body = hello.subarray(5);
    const cut = 40;
    const rec = (b: Buffer) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, b.length >> 8, b.length & 0xff]), b]);
    expect(sniffTls(Buffer.concat([rec(body.subarray(0, cut)), rec(body.subarray(cut))]))).toEqual({ kind: 'tls', sni: 'records.example.com' });
  });
  it('reads exactly the server_name bytes; a NUL inside makes the name unusable', async () => {
    const hello = await nodeHello('a.example.com');
    // Rewrite the name's bytes in place to show the parser reads exactly that extension.
    const idx = hello.indexOf('a.example.com');
    const forged = Buffer.from(hello);
    forged.write('b', idx, 'latin1');
    expect(sniffTls(forged)).toEqual({ kind: 'tls', sni: 'b.example.com' });
    forged[idx] = 0x00; // a NUL inside the name is not a host name
    expect(sniffTls(forged)).toEqual({ kind: 'tls', sni: null });
  });
  it('reads a minimal hand-built hello', () => {
    expect(sniffTls(buildHello([sniExt(['a.example.com'])]))).toEqual({ kind: 'tls', sni: 'a.example.com' });
    expect(sniffTls(buildHello([]))).toEqual({ kind: 'tls', sni: null });
  });
  it('says not-tls for other protocols', () => {
    expect(sniffTls(Buffer.from('GET / HTTP/1.1\r\n')).kind).toBe('not-tls');
    expect(sniffTls(Buffer.from([0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f])).kind).toBe('not-tls'); // Postgres SSLRequest
  });
  it('never throws on arbitrary or truncated input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (arr) => {
        const buf = Buffer.from(arr);
        sniffTls(buf);
        sniffTls(Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), buf]));
        sniffHttp(buf);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('HTTP Host', () => {
  const req = (s: string) => Buffer.from(s, 'latin1');
  it('reads Host, lower-cased and without port', () => {
    expect(sniffHttp(req('GET /x HTTP/1.1\r\nHost: API.example.com:8080\r\n\r\n'))).toEqual({ kind: 'http', host: 'api.example.com' });
  });
  it('prefers the absolute-form target', () => {
    expect(sniffHttp(req('GET http://a.example.com/x HTTP/1.1\r\nHost: b.example.com\r\n\r\n'))).toEqual({ kind: 'http', host: 'a.example.com' });
  });
  it('gives no name for two Host fields', () => {
    expect(sniffHttp(req('GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n'))).toEqual({ kind: 'http', host: null });
  });
  it('waits for the end of the header block, bounded', () => {
    expect(sniffHttp(req('GET / HTTP/1.1\r\nHost: a.example.com\r\n')).kind).toBe('need-more');
    expect(sniffHttp(req('GE')).kind).toBe('need-more');
    const huge = req('GET / HTTP/1.1\r\nX: ' + 'a'.repeat(SNIFF_LIMIT) + '\r\n');
    expect(sniffHttp(huge)).toEqual({ kind: 'http', host: null });
  });
  it('says not-http for other protocols', () => {
    expect(sniffHttp(req('SSH-2.0-OpenSSH_9.2\r\n')).kind).toBe('not-http');
    expect(sniffHttp(Buffer.from([0x16, 3, 1])).kind).toBe('not-http');
    expect(sniffHttp(req('get / HTTP/1.1\r\n\r\n')).kind).toBe('not-http');
  });
});
