// Runs inside `clawpatrol run` (as an unprivileged user) and tries things on
// the network: one JSON line per probe on stdout. Plain JS so it needs no
// build step and no loader.
import net from 'node:net';
import tls from 'node:tls';
import dgram from 'node:dgram';
import dns from 'node:dns';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const dnsPacket = require('dns-packet');

const probes = JSON.parse(process.argv[2] ?? '[]');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

/** A TCP connection to p.host:p.port (p.family), TLS when p.tls (a string is the SNI; `true`: none). */
function dial(p) {
  const opts = { host: p.host, port: p.port, ...(p.family ? { family: p.family } : {}) };
  if (!p.tls) return net.connect(opts);
  return tls.connect({ ...opts, servername: typeof p.tls === 'string' ? p.tls : undefined, rejectUnauthorized: false });
}

function tcp(p) {
  return new Promise((resolve) => {
    const timeoutMs = p.timeoutMs ?? 3000;
    let data = '';
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ ...r, data });
    };
    const sock = dial(p);
    const timer = setTimeout(() => finish({ ok: data.length > 0, error: data ? undefined : 'timeout' }), timeoutMs);
    sock.on(p.tls ? 'secureConnect' : 'connect', () => {
      if (p.send) sock.write(p.send);
    });
    sock.on('data', (d) => {
      data += d.toString();
      if (p.untilNewline && data.includes('\n')) finish({ ok: true });
    });
    sock.on('end', () => finish({ ok: true }));
    sock.on('error', (e) => finish({ ok: false, error: e.code ?? e.message }));
  });
}

function hold(p) {
  // Connect, report the first line, then report when the connection dies.
  return new Promise((resolve) => {
    const sock = dial(p);
    let first = true;
    sock.on('data', (d) => {
      if (first) {
        first = false;
        out({ kind: 'hold', event: 'established', data: d.toString() });
        // Keep talking so a dead connection is noticed promptly.
        const t = setInterval(() => sock.write('ping\n'), 200);
        sock.once('close', () => clearInterval(t));
      }
    });
    sock.on('error', (e) => out({ kind: 'hold', event: 'error', error: e.code ?? e.message }));
    sock.on('close', () => {
      out({ kind: 'hold', event: 'closed' });
      resolve(null);
    });
  });
}

/**
 * Open p.count connections at once and hold them: each either gets its first
 * bytes (established) or fails; report both once all are settled, then close.
 */
function many(p) {
  return new Promise((resolve) => {
    const sockets = [];
    const failed = [];
    let established = 0;
    let settled = 0;
    const settle = () => {
      if (++settled < p.count) return;
      setTimeout(() => {
        for (const s of sockets) s.destroy();
        resolve({ ok: true, established, failed });
      }, p.holdMs ?? 0);
    };
    for (let i = 0; i < p.count; i++) {
      const s = dial(p);
      sockets.push(s);
      let done = false;
      const once = (fn) => {
        if (done) return;
        done = true;
        fn();
        settle();
      };
      s.once('data', () => once(() => established++));
      s.once('error', (e) => once(() => failed.push(e.code ?? e.message)));
      s.once('close', () => once(() => failed.push('closed')));
    }
  });
}

function udp(p) {
  return new Promise((resolve) => {
    const s = dgram.createSocket(p.host.includes(':') ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve({ ok: false, error: 'timeout' });
    }, p.timeoutMs ?? 2000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve({ ok: true, data: m.toString('base64') });
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      s.close();
      resolve({ ok: false, error: e.code ?? e.message });
    });
    s.send(Buffer.from(p.send ?? 'x'), p.port, p.host);
  });
}

async function lookup(p) {
  try {
    const addrs = await dns.promises.lookup(p.name, { all: true });
    return { ok: true, addresses: addrs.map((a) => a.address) };
  } catch (e) {
    return { ok: false, error: e.code ?? e.message };
  }
}

/** The RFC 8914 Extended DNS Error text of a response, if any. */
function extendedError(r) {
  for (const a of r.additionals ?? []) {
    const ede = a.type === 'OPT' ? (a.options ?? []).find((o) => o.code === 15) : undefined;
    if (ede?.data) return ede.data.subarray(2).toString('utf8');
  }
  return undefined;
}

/** A raw DNS query to a chosen server (UDP, or TCP when p.tcp; with an EDNS OPT record when p.edns). */
function query(p) {
  const q = dnsPacket.encode({
    type: 'query',
    id: 4242,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: p.type ?? 'A', name: p.name }],
    ...(p.edns ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] }] } : {}),
  });
  const parse = (buf) => {
    const r = dnsPacket.decode(buf);
    return { ok: true, rcode: r.rcode, answers: (r.answers ?? []).map((a) => a.data), ede: extendedError(r) };
  };
  return new Promise((resolve) => {
    let sock = null;
    const timer = setTimeout(() => {
      // Close whatever is open, or it keeps the probe alive.
      if (sock && 'destroy' in sock) sock.destroy();
      else if (sock) sock.close();
      resolve({ ok: false, error: 'timeout' });
    }, p.timeoutMs ?? 3000);
    if (p.tcp) {
      const s = net.connect(p.port ?? 53, p.server);
      sock = s;
      let buf = Buffer.alloc(0);
      s.on('connect', () => s.write(Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q])));
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          clearTimeout(timer);
          s.destroy();
          resolve(parse(buf.subarray(2)));
        }
      });
      s.on('error', (e) => {
        clearTimeout(timer);
        s.destroy();
        resolve({ ok: false, error: e.code ?? e.message });
      });
      s.on('end', () => {
        s.destroy();
        clearTimeout(timer);
        resolve({ ok: false, error: 'closed' });
      });
      return;
    }
    const s = dgram.createSocket(p.server.includes(':') ? 'udp6' : 'udp4');
    sock = s;
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(parse(m));
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      s.close();
      resolve({ ok: false, error: e.code ?? e.message });
    });
    s.send(q, p.port ?? 53, p.server);
  });
}

const kinds = {
  tcp,
  hold,
  many,
  udp,
  lookup,
  query,
  sleep: (p) => new Promise((resolve) => setTimeout(() => resolve(null), p.ms)),
  env: async () => ({ ok: true, env: process.env, uid: process.getuid(), gid: process.getgid() }),
};

for (const p of probes) {
  const started = Date.now();
  const run = kinds[p.kind];
  const r = run ? await run(p) : { ok: false, error: `unknown probe ${p.kind}` };
  if (r) out({ label: p.label ?? p.kind, ms: Date.now() - started, ...r });
}
