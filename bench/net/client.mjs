// Benchmark client, run inside a network namespace (the plain tunnel's, or
// `clawpatrol run`'s). Prints one JSON object.
//
//   node client.mjs rtt   <host> <port> <seconds>            1-byte ping-pong on one connection
//   node client.mjs bulk  <host> <port> <mebibytes>          upload to a sink, MB/s until its ack
//   node client.mjs https <url> <connections> <seconds> [ca.pem]   keep-alive GETs
import net from 'node:net';
import https from 'node:https';
import { readFileSync } from 'node:fs';

const [mode, ...args] = process.argv.slice(2);
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : null;
};

async function rtt(host, port, seconds) {
  const sock = net.connect({ host, port: Number(port), noDelay: true });
  await new Promise((r, j) => (sock.once('connect', r), sock.once('error', j)));
  // The echo server greets first; then every byte sent comes back.
  await new Promise((r) => sock.once('data', r));
  const lat = [];
  const end = performance.now() + Number(seconds) * 1000;
  let warm = 200;
  while (performance.now() < end) {
    const t = performance.now();
    sock.write('x');
    await new Promise((r) => sock.once('data', r));
    if (warm > 0) warm--;
    else lat.push((performance.now() - t) * 1000);
  }
  sock.destroy();
  return { n: lat.length, p50us: pct(lat, 50), p99us: pct(lat, 99) };
}

async function bulk(host, port, mib) {
  const total = Number(mib) * 1024 * 1024;
  const sock = net.connect({ host, port: Number(port) });
  await new Promise((r, j) => (sock.once('connect', r), sock.once('error', j)));
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const started = performance.now();
  let sent = 0;
  while (sent < total) {
    sent += chunk.length;
    if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
  }
  sock.end();
  // The sink answers with the byte count it received, after our FIN.
  const ack = await new Promise((r) => {
    let t = '';
    sock.on('data', (d) => (t += d));
    sock.on('end', () => r(t));
  });
  const secs = (performance.now() - started) / 1000;
  return { bytes: Number(ack), MBps: Number(ack) / 1e6 / secs, Mbitps: (Number(ack) * 8) / 1e6 / secs };
}

async function httpsLoad(url, conns, seconds, caPath) {
  const agent = new https.Agent({ keepAlive: true, maxSockets: Number(conns), ...(caPath ? { ca: readFileSync(caPath) } : {}) });
  const lat = [];
  let errors = 0;
  const get = () =>
    new Promise((resolve) => {
      const t = performance.now();
      https
        .get(url, { agent }, (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) lat.push((performance.now() - t) * 1000);
            else errors++;
            resolve();
          });
        })
        .on('error', () => {
          errors++;
          resolve();
        });
    });
  // Warm up every connection (TLS handshakes are not what this measures).
  await Promise.all(Array.from({ length: Number(conns) }, get));
  lat.length = 0;
  const started = performance.now();
  const end = started + Number(seconds) * 1000;
  await Promise.all(
    Array.from({ length: Number(conns) }, async () => {
      while (performance.now() < end) await get();
    }),
  );
  agent.destroy();
  const secs = (performance.now() - started) / 1000;
  return { n: lat.length, errors, rps: lat.length / secs, p50us: pct(lat, 50), p99us: pct(lat, 99) };
}

const result = mode === 'rtt' ? await rtt(...args) : mode === 'bulk' ? await bulk(...args) : mode === 'https' ? await httpsLoad(...args) : { error: `unknown mode ${mode}` };
process.stdout.write(JSON.stringify(result) + '\n');
