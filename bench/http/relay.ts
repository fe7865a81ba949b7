/**
 * The floor for a TLS-terminating proxy written in Node: a relay that
 * terminates the client's TLS, opens one verified TLS connection to the
 * upstream per client connection, and copies bytes both ways — no HTTP
 * parsing, no policy, no credential, no audit. Whatever it costs per request
 * is the cost of Node's TLS, sockets and event loop alone.
 *
 *   node bench/http/relay.ts <cert.pem> <key.pem> <upstream-ca.pem> <upstream-host> <upstream-port> [<servername>]
 * prints `{"port":…}` once listening on 127.0.0.1.
 */
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';

const [certPath, keyPath, caPath, upstreamHost, upstreamPort, servername] = process.argv.slice(2) as [string, string, string, string, string, string | undefined];
const upstreamCa = readFileSync(caPath);

const server = tls.createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, (client) => {
  client.setNoDelay(true);
  const upstream = tls.connect({ host: upstreamHost, port: Number(upstreamPort), ca: upstreamCa, servername: servername ?? upstreamHost });
  upstream.setNoDelay(true);
  client.pipe(upstream);
  upstream.pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: (server.address() as AddressInfo).port }) + '\n');
});
