/**
 * The benchmark's upstream (its own process): HTTPS/1.1 keep-alive.
 *   GET  /json         small JSON
 *   GET  /big          1 MiB
 *   POST /upload       consumes the body, answers its length
 *   GET  /sse?n=N      N server-sent events as fast as the socket takes them
 *
 *   node --import tsx bench/http/upstream.ts <host> <cert.pem> <key.pem>
 * prints `{"port":…}` once listening.
 */
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { BIG_BYTES, JSON_BODY } from './common.js';

const [host, certPath, keyPath] = process.argv.slice(2) as [string, string, string];
const BIG = Buffer.alloc(BIG_BYTES, 0x61);
const EVENT = 'event: message\ndata: {"delta":"some tokens of a streamed completion"}\n\n';

const server = https.createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath), keepAliveTimeout: 60_000 }, (req, res) => {
  const url = new URL(req.url ?? '/', 'https://x');
  if (url.pathname === '/upload') {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ received: n }));
    });
    return;
  }
  req.resume();
  if (url.pathname === '/big') {
    res.setHeader('content-type', 'application/octet-stream');
    res.setHeader('content-length', BIG.length);
    res.end(BIG);
  } else if (url.pathname === '/sse') {
    const n = Number(url.searchParams.get('n') ?? '1000');
    res.setHeader('content-type', 'text/event-stream');
    res.setHeader('cache-control', 'no-cache');
    let i = 0;
    const pump = () => {
      while (i < n) {
        i++;
        if (!res.write(EVENT)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  } else {
    res.setHeader('content-type', 'application/json');
    res.end(JSON_BODY);
  }
});
server.listen(0, host, () => {
  process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n');
});
