// The upstream side of the transport tests, run inside the upstream
// namespace: TCP servers that greet with who connected (and then echo), and
// a DNS server (the gateway host's "resolver") for a few names. Every
// connection and query is reported over IPC, so a test can prove that an
// escape attempt never reached the upstream.
import net from 'node:net';
import dgram from 'node:dgram';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const dnsPacket = require('dns-packet');
const cfg = JSON.parse(process.env.CP_TEST_UPSTREAM);
// `quiet` (benchmarks): report nothing per connection or request.
const send = (m) => (m.type === 'ready' || !cfg.quiet) && process.send?.(m);

for (const port of cfg.tcpPorts) {
  const srv = net.createServer({ noDelay: true }, (s) => {
    const remote = (s.remoteAddress ?? '').replace(/^::ffff:/, '');
    send({ type: 'conn', port, remote });
    s.write(`upstream ${port} from ${remote}\n`);
    s.on('data', (d) => s.write(d));
    s.on('error', () => {});
  });
  srv.listen({ port, host: '::' });
}

// Sinks: read everything, then answer with the byte count (throughput benchmarks).
for (const port of cfg.sinkPorts ?? []) {
  net.createServer({ allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on('data', (d) => (n += d.length));
    s.on('end', () => s.end(String(n)));
    s.on('error', () => {});
  }).listen({ port, host: '::' });
}

// An HTTPS API that says what credential it received (so a test can see the injected secret arrive).
if (cfg.https) {
  const srv = https.createServer({ cert: readFileSync(cfg.https.certPath), key: readFileSync(cfg.https.keyPath) }, (req, res) => {
    send({ type: 'https', method: req.method, url: req.url, authorization: req.headers.authorization ?? null, host: req.headers.host });
    const body = JSON.stringify({ path: req.url, authorization: req.headers.authorization ?? null });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  srv.listen(cfg.https.port, '::');
}

const records = cfg.dns; // name → { A?: string[], AAAA?: string[] }
function answer(msg) {
  const q = dnsPacket.decode(msg);
  const question = q.questions[0];
  send({ type: 'dns', name: question.name, qtype: question.type });
  const rec = records[question.name.toLowerCase()];
  const data = rec?.[question.type] ?? [];
  return dnsPacket.encode({
    type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | (rec ? 0 : 3), questions: q.questions,
    answers: data.map((d) => ({ type: question.type, name: question.name, ttl: 30, data: d })),
  });
}
const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => {
  try {
    udp.send(answer(m), r.port, r.address);
  } catch {}
});
udp.bind(53, cfg.dnsAddress);
net.createServer((s) => {
  s.once('data', (d) => {
    const a = answer(d.subarray(2));
    s.end(Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]));
  });
  s.on('error', () => {});
}).listen(53, cfg.dnsAddress);

setTimeout(() => send({ type: 'ready' }), 100);
