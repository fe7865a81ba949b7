/**
 * The gateway's HTTP/1.1 upstream client against raw TCP servers that record
 * the exact bytes they receive and answer as the test says: framing is always
 * explicit, connections are reused only when that is safe, the keep-alive
 * race is retried only when that is safe, bad responses never desynchronise a
 * pooled connection.
 */
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { H1Pool, InvalidRequestError, type H1Origin, type H1Response } from '../../src/protocols/http/h1-client.js';
import { Http1RequestParser, type RequestHead } from '../../src/protocols/http/h1-parser.js';

interface Received {
  head: RequestHead;
  body: Buffer;
  trailers: string[];
  /** Which accepted connection (0, 1, …) carried it. */
  connection: number;
}

type Responder = (req: Received, socket: net.Socket, nth: number) => void;

/** A TCP server that parses requests with the strict parser and lets the test answer each one. */
async function rawServer(respond: Responder, onHead?: (head: RequestHead, socket: net.Socket) => void) {
  const received: Received[] = [];
  const sockets: net.Socket[] = [];
  let connections = 0;
  const server = net.createServer((socket) => {
    const connection = connections++;
    sockets.push(socket);
    const parser = new Http1RequestParser();
    let head: RequestHead | null = null;
    let body: Buffer[] = [];
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      parser.feed(d);
      for (let ev = parser.next(); ev !== null; ev = parser.next()) {
        if (ev.type === 'head') {
          head = ev.head;
          onHead?.(ev.head, socket);
        } else if (ev.type === 'body') body.push(Buffer.from(ev.data));
        else if (ev.type === 'end') {
          const r = { head: head!, body: Buffer.concat(body), trailers: ev.trailers.map((t) => `${t.name}: ${t.value}`), connection };
          received.push(r);
          body = [];
          respond(r, socket, received.length);
        } else {
          socket.destroy();
          return;
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin: H1Origin = { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, tls: null };
  return {
    origin,
    received,
    connections: () => connections,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

const ok = (body = 'ok') => `HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

async function text(res: H1Response): Promise<string> {
  const parts: Buffer[] = [];
  for (let c = await res.body.read(); c !== null; c = await res.body.read()) parts.push(c);
  return Buffer.concat(parts).toString();
}

async function* slowly(parts: string[], ms = 20): AsyncGenerator<Buffer> {
  for (const p of parts) {
    await new Promise((r) => setTimeout(r, ms));
    yield Buffer.from(p);
  }
}

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

function pool(): H1Pool {
  const p = new H1Pool({ connectTimeoutMs: 2000 });
  cleanups.push(() => p.close());
  return p;
}

async function server(respond: Responder, onHead?: (head: RequestHead, socket: net.Socket) => void) {
  const s = await rawServer(respond, onHead);
  cleanups.push(() => s.close());
  return s;
}

describe('request framing', () => {
  it('a body of unknown length goes chunked on every method (GET and DELETE included); a known length as Content-Length', async () => {
    const s = await server((_r, socket) => socket.write(ok()));
    const p = pool();
    for (const method of ['GET', 'DELETE', 'POST']) {
      const res = await p.request(s.origin, { method, path: '/x', headers: { host: 'up.test' }, body: { chunks: slowly(['just ', 'one'], 1), length: null } });
      expect(await text(res)).toBe('ok');
    }
    await text(await p.request(s.origin, { method: 'PUT', path: '/y', headers: { host: 'up.test' }, body: { chunks: slowly(['12345'], 1), length: 5 } }));
    expect(s.received.map((r) => [r.head.method, r.head.framing.kind, r.body.toString()])).toEqual([
      ['GET', 'chunked', 'just one'],
      ['DELETE', 'chunked', 'just one'],
      ['POST', 'chunked', 'just one'],
      ['PUT', 'length', '12345'],
    ]);
    // One connection carried all four: each request ended exactly where the server expected.
    expect(s.connections()).toBe(1);
  });

  it('POST without a body announces Content-Length: 0; GET without a body announces nothing', async () => {
    const heads: RequestHead[] = [];
    const s = await server((_r, socket) => socket.write(ok()), (h) => heads.push(h));
    const p = pool();
    await text(await p.request(s.origin, { method: 'POST', path: '/a', headers: { host: 'up.test' }, body: null }));
    await text(await p.request(s.origin, { method: 'GET', path: '/b', headers: { host: 'up.test' }, body: null }));
    expect(heads.map((h) => h.headers.filter((f) => /content-length|transfer-encoding/i.test(f.name)).map((f) => `${f.name}: ${f.value}`))).toEqual([['content-length: 0'], []]);
  });

  it('request trailers follow a chunked body', async () => {
    const s = await server((_r, socket) => socket.write(ok()));
    const res = await pool().request(s.origin, {
      method: 'POST',
      path: '/t',
      headers: { host: 'up.test' },
      body: { chunks: slowly(['data'], 1), length: null, trailers: () => [['x-checksum', 'abc123']] },
    });
    await text(res);
    expect(s.received[0]!.trailers).toEqual(['x-checksum: abc123']);
  });

  it('a header value that would split the head, a path with a space, a bad method: refused before anything is sent', async () => {
    const s = await server((_r, socket) => socket.write(ok()));
    const p = pool();
    await expect(p.request(s.origin, { method: 'GET', path: '/x', headers: { host: 'up.test', 'x-a': 'b\r\nx-injected: 1' }, body: null })).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(p.request(s.origin, { method: 'GET', path: '/x y', headers: { host: 'up.test' }, body: null })).rejects.toBeInstanceOf(InvalidRequestError);
    await expect(p.request(s.origin, { method: 'G T', path: '/x', headers: { host: 'up.test' }, body: null })).rejects.toBeInstanceOf(InvalidRequestError);
    expect(s.connections()).toBe(0);
  });
});

describe('connection reuse', () => {
  it('a response that comes before the request body is all sent: the body completes, then the connection is reused', async () => {
    // Answers as soon as the head arrives, then keeps reading the body.
    const s = await server(
      () => undefined,
      (head, socket) => socket.write(ok(`early ${head.target}`)),
    );
    const p = pool();
    const first = await p.request(s.origin, { method: 'POST', path: '/upload', headers: { host: 'up.test' }, body: { chunks: slowly(['a', 'b', 'c']), length: 3 } });
    expect(await text(first)).toBe('early /upload');
    await first.bodySent;
    const second = await p.request(s.origin, { method: 'GET', path: '/next', headers: { host: 'up.test' }, body: null });
    expect(await text(second)).toBe('early /next');
    expect(s.received.map((r) => [r.head.target, r.body.toString(), r.connection])).toEqual([
      ['/upload', 'abc', 0],
      ['/next', '', 0],
    ]);
  });

  it('bytes after a complete response: the connection is not reused', async () => {
    const s = await server((_r, socket) => socket.write(ok() + 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled'));
    const p = pool();
    expect(await text(await p.request(s.origin, { method: 'GET', path: '/1', headers: { host: 'up.test' }, body: null }))).toBe('ok');
    expect(await text(await p.request(s.origin, { method: 'GET', path: '/2', headers: { host: 'up.test' }, body: null }))).toBe('ok');
    expect(s.received.map((r) => r.connection)).toEqual([0, 1]);
  });

  it('a response with ambiguous framing fails the request and is never read past', async () => {
    const s = await server((_r, socket) => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'));
    await expect(pool().request(s.origin, { method: 'GET', path: '/x', headers: { host: 'up.test' }, body: null })).rejects.toThrow(/invalid response: both Content-Length and Transfer-Encoding/);
  });

  it('the keep-alive race: a reused connection closed without an answer is retried once for GET, never for POST', async () => {
    // Answers the first request on each connection, then closes the next one unanswered.
    const perConnection = new Map<number, number>();
    const s = await server((r, socket) => {
      const n = (perConnection.get(r.connection) ?? 0) + 1;
      perConnection.set(r.connection, n);
      if (n === 1) socket.write(ok(`#${r.connection}`));
      else socket.destroy();
    });
    const p = pool();
    expect(await text(await p.request(s.origin, { method: 'GET', path: '/a', headers: { host: 'up.test' }, body: null }))).toBe('#0');
    expect(await text(await p.request(s.origin, { method: 'GET', path: '/b', headers: { host: 'up.test' }, body: null }))).toBe('#1');
    await expect(p.request(s.origin, { method: 'POST', path: '/c', headers: { host: 'up.test' }, body: null })).rejects.toThrow(/closed the connection before answering/);
    expect(s.received.map((r) => r.head.target)).toEqual(['/a', '/b', '/b', '/c']);
  });
});

describe('upgrades', () => {
  it('a 101 hands over the socket with the bytes that followed the head', async () => {
    const s = await server((_r, socket) => socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframe-bytes'));
    const res = await pool().request(s.origin, { method: 'GET', path: '/ws', headers: { host: 'up.test', upgrade: 'websocket', connection: 'Upgrade' }, body: null, upgrade: true });
    expect(res.status).toBe(101);
    expect(res.upgraded?.head.toString()).toBe('frame-bytes');
    res.upgraded!.socket.destroy();
  });
});
