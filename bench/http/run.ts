/**
 * HTTPS gateway benchmark: one HTTPS upstream, four ways to reach it, rounds
 * interleaved so machine noise hits all of them alike.
 *
 *   direct          client → upstream
 *   gateway-tunnel  client → clawpatrol TLS ingress (as the WireGuard transport feeds it) → upstream
 *   gateway-proxy   client → clawpatrol explicit proxy (CONNECT, TLS terminated) → upstream
 *   mitmproxy       client → mitmdump (CONNECT, TLS terminated) → upstream
 *
 * Every path through a proxy terminates TLS, re-encrypts upstream and
 * verifies the upstream certificate. The gateway runs a real policy (10
 * rules), injects a bearer token, scrubs responses, and writes a
 * hash-chained audit record per request to SQLite.
 *
 * Workloads (undici clients, keep-alive):
 *   json-c1    small JSON GET, 1 connection: latency (p50/p99, added over direct)
 *   json-c16   small JSON GET, 16 connections: throughput
 *   big-c4     1 MiB response GET, 4 connections
 *   upload-c4  1 MiB request body POST, 4 connections
 *   sse        a 1000-event SSE stream, sequential: time to first event, time to last
 *
 *   node --import tsx bench/http/run.ts [--seconds 4] [--rounds 3] [--only json-c1,json-c16]
 *       [--paths direct,gateway-tunnel,…] [--baseline DIR]
 *
 * `--baseline DIR`: also run the gateway of another checkout (e.g.
 * `git worktree add DIR <commit>`) as path `baseline-tunnel`, side by side
 * with this one — before/after numbers for a change from one run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { Agent, ProxyAgent, request, type Dispatcher } from 'undici';
import { makeTestPki } from '../../test/http/support/certs.js';
import { lookupTo } from '../../test/http/support/gateway.js';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const SECONDS = Number(arg('seconds', '4'));
const ROUNDS = Number(arg('rounds', '3'));
const ONLY = arg('only', '').split(',').filter(Boolean);
const PATHS = arg('paths', '').split(',').filter(Boolean);
const BASELINE = arg('baseline', '');
/** `--profile DIR`: write a V8 CPU profile of the gateway process there. */
const PROFILE = arg('profile', '');
const UPSTREAM_IP = '127.0.0.2';
const INGRESS_IP = '127.0.0.3';
const BASELINE_INGRESS_IP = '127.0.0.4';

const POLICY = (caFile: string) => `
schema_version = 1
gateway {
  local_profile = "bench"
  limits {
    body_buffer = "1MiB"
  }
  proxy {
    listen = "127.0.0.1:0"
  }
}
defaults {
  unknown_host = "deny"
}
endpoint "https" "bench" {
  hosts   = ["bench.test", "${UPSTREAM_IP}"]
  ca_cert = "<<file:${caFile}>>"
}
credential "bearer_token" "bench" {
  endpoint = https.bench
}
profile "bench" {
  credentials = [bearer_token.bench]
}
${Array.from({ length: 8 }, (_, i) => `
rule "deny-area-${i}" {
  endpoint  = https.bench
  condition = "http.path.startsWith('/private/${i}/') || ('x-block' in http.headers && http.headers['x-block'] == '${i}')"
  verdict   = "deny"
  reason    = "area ${i} is off limits"
}`).join('\n')}
rule "no-deletes" {
  endpoint  = https.bench
  condition = "http.method == 'DELETE'"
  verdict   = "deny"
  reason    = "no deletes"
}
rule "reads" {
  endpoint  = https.bench
  condition = "http.method in ['GET', 'HEAD'] && !('admin' in http.query)"
  verdict   = "allow"
}
`;

interface Target {
  name: string;
  origin: string;
  dispatcher: (connections: number) => Dispatcher;
  /** The proxy's process, whose CPU time is charged to the requests (none for direct). */
  pid?: number | undefined;
}

/** CPU seconds (user + system) a process has used, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

interface Sample {
  rps: number;
  p50: number;
  p99: number;
  mbps: number;
  errors: number;
  ttfb?: number;
  /** CPU time the proxy process spent per request, in µs. */
  cpuUs?: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function load(d: Dispatcher, url: string, opts: { method: 'GET' | 'POST'; body?: Buffer; connections: number; seconds: number }): Promise<Sample> {
  const lat: number[] = [];
  let bytes = 0;
  let errors = 0;
  const started = performance.now();
  const end = started + opts.seconds * 1000;
  await Promise.all(
    Array.from({ length: opts.connections }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          const res = await request(url, { dispatcher: d, method: opts.method, body: opts.body, headers: { authorization: 'Bearer cp_ph_bench' } });
          for await (const c of res.body) bytes += (c as Buffer).length;
          if (res.statusCode !== 200) {
            if (errors++ === 0) process.stderr.write(`  first error: HTTP ${res.statusCode}\n`);
          }
          lat.push(performance.now() - t0);
        } catch (err) {
          if (errors++ === 0) process.stderr.write(`  first error: ${(err as Error).message}\n`);
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  lat.sort((a, b) => a - b);
  return { rps: lat.length / elapsed, p50: percentile(lat, 50), p99: percentile(lat, 99), mbps: bytes / elapsed / 1e6, errors };
}

async function sse(d: Dispatcher, url: string, seconds: number): Promise<Sample> {
  const firsts: number[] = [];
  const totals: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t0 = performance.now();
    try {
      const res = await request(url, { dispatcher: d, headers: { accept: 'text/event-stream' } });
      let first = 0;
      let events = 0;
      for await (const c of res.body) {
        if (!first) first = performance.now() - t0;
        events += (c as Buffer).toString('latin1').split('\n\n').length - 1;
      }
      if (events < 1000) errors++;
      firsts.push(first);
      totals.push(performance.now() - t0);
    } catch {
      errors++;
    }
  }
  firsts.sort((a, b) => a - b);
  totals.sort((a, b) => a - b);
  return { rps: totals.length / seconds, p50: percentile(totals, 50), p99: percentile(totals, 99), mbps: 0, errors, ttfb: percentile(firsts, 50) };
}

function spawnJson(cmd: string, args: string[], cwd = process.cwd()): Promise<{ child: ChildProcess; info: Record<string, unknown> }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], cwd });
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (line) => resolve({ child, info: JSON.parse(line) as Record<string, unknown> }));
    child.once('exit', (code) => reject(new Error(`${cmd} exited with ${code}`)));
  });
}

async function waitForPort(port: number, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`port ${port} never opened`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'clawpatrol-bench-http-'));
  const children: ChildProcess[] = [];
  try {
    const pki = makeTestPki(dir, ['bench.test'], [UPSTREAM_IP]);
    writeFileSync(join(dir, 'server.pem'), pki.serverCertPem);
    writeFileSync(join(dir, 'server.key'), pki.serverKeyPem);
    writeFileSync(join(dir, 'policy.hcl'), POLICY(pki.caPath));
    const tsx = ['--import', 'tsx'];
    const up = await spawnJson(process.execPath, [...tsx, 'bench/http/upstream.ts', UPSTREAM_IP, join(dir, 'server.pem'), join(dir, 'server.key')]);
    children.push(up.child);
    const port = up.info['port'] as number;
    const prof = PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : [];
    const gw = await spawnJson(process.execPath, [...prof, ...tsx, 'bench/http/gateway.ts', dir, UPSTREAM_IP, INGRESS_IP, String(port)]);
    children.push(gw.child);
    const gatewayCa = readFileSync(gw.info['caPath'] as string, 'utf8');
    let baseline: { child: ChildProcess; ca: string } | null = null;
    if (BASELINE) {
      // Its own state directory, so the two gateways share no vault, CA or audit database.
      const baseDir = join(dir, 'baseline');
      mkdirSync(baseDir);
      writeFileSync(join(baseDir, 'policy.hcl'), POLICY(pki.caPath));
      const b = await spawnJson(process.execPath, [...tsx, 'bench/http/gateway.ts', baseDir, UPSTREAM_IP, BASELINE_INGRESS_IP, String(port)], BASELINE);
      children.push(b.child);
      baseline = { child: b.child, ca: readFileSync(b.info['caPath'] as string, 'utf8') };
    }
    const mitmPort = await freePort();
    const mitmConf = join(dir, 'mitm');
    const mitm = spawn(
      'mitmdump',
      ['-q', '--listen-host', '127.0.0.1', '--listen-port', String(mitmPort), '--set', `confdir=${mitmConf}`, '--set', `ssl_verify_upstream_trusted_ca=${pki.caPath}`, '--set', 'stream_large_bodies=128k'],
      { stdio: 'ignore' },
    );
    children.push(mitm);
    await waitForPort(mitmPort);
    const mitmCaPath = join(mitmConf, 'mitmproxy-ca-cert.pem');
    while (!existsSync(mitmCaPath)) await new Promise((r) => setTimeout(r, 100));
    const mitmCa = readFileSync(mitmCaPath, 'utf8');

    const ipOrigin = `https://${UPSTREAM_IP}:${port}`;
    const allTargets: Target[] = [
      { name: 'direct', origin: ipOrigin, dispatcher: (c) => new Agent({ connections: c, connect: { ca: pki.caPem } }) },
      {
        name: 'gateway-tunnel',
        origin: `https://bench.test:${port}`,
        dispatcher: (c) => new Agent({ connections: c, connect: { ca: gatewayCa, lookup: lookupTo(INGRESS_IP) } }),
        pid: gw.child.pid,
      },
      {
        name: 'gateway-proxy',
        origin: ipOrigin,
        dispatcher: (c) => new ProxyAgent({ uri: `http://127.0.0.1:${gw.info['proxyPort']}`, connections: c, requestTls: { ca: gatewayCa } }),
        pid: gw.child.pid,
      },
      ...(baseline
        ? [
            {
              name: 'baseline-tunnel',
              origin: `https://bench.test:${port}`,
              dispatcher: (c: number) => new Agent({ connections: c, connect: { ca: baseline.ca, lookup: lookupTo(BASELINE_INGRESS_IP) } }),
              pid: baseline.child.pid,
            },
          ]
        : []),
      {
        name: 'mitmproxy',
        origin: ipOrigin,
        dispatcher: (c) => new ProxyAgent({ uri: `http://127.0.0.1:${mitmPort}`, connections: c, requestTls: { ca: mitmCa } }),
        pid: mitm.pid,
      },
    ];
    const targets = allTargets.filter((t) => PATHS.length === 0 || PATHS.includes(t.name) || t.name === 'direct' || t.name === 'mitmproxy');
    const big = Buffer.alloc(1024 * 1024, 0x62);
    const allWorkloads: Array<{ name: string; connections: number; run: (d: Dispatcher, origin: string, seconds: number) => Promise<Sample> }> = [
      { name: 'json-c1', connections: 1, run: (d, o, s) => load(d, `${o}/json`, { method: 'GET', connections: 1, seconds: s }) },
      { name: 'json-c16', connections: 16, run: (d, o, s) => load(d, `${o}/json`, { method: 'GET', connections: 16, seconds: s }) },
      { name: 'big-c4', connections: 4, run: (d, o, s) => load(d, `${o}/big`, { method: 'GET', connections: 4, seconds: s }) },
      { name: 'upload-c4', connections: 4, run: (d, o, s) => load(d, `${o}/upload`, { method: 'POST', body: big, connections: 4, seconds: s }) },
      { name: 'sse', connections: 1, run: (d, o, s) => sse(d, `${o}/sse?n=1000`, s) },
    ];
    const workloads = allWorkloads.filter((w) => ONLY.length === 0 || ONLY.includes(w.name));

    const results = new Map<string, Sample[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const w of workloads) {
        for (const t of targets) {
          const d = t.dispatcher(w.connections);
          await w.run(d, t.origin, 0.5); // warm-up: connections, TLS sessions, leaf certificates, JIT
          const cpu0 = t.pid ? cpuSeconds(t.pid) : 0;
          const s = await w.run(d, t.origin, SECONDS);
          if (t.pid) s.cpuUs = ((cpuSeconds(t.pid) - cpu0) * 1e6) / Math.max(1, s.rps * SECONDS);
          await d.close();
          const key = `${w.name}|${t.name}`;
          results.set(key, [...(results.get(key) ?? []), s]);
          process.stderr.write(
            `round ${round + 1} ${w.name} ${t.name}: ${s.rps.toFixed(0)} req/s p50 ${s.p50.toFixed(2)} ms p99 ${s.p99.toFixed(2)} ms` +
              `${s.cpuUs ? ` proxy CPU ${s.cpuUs.toFixed(0)} µs/req` : ''}${s.errors ? ` errors ${s.errors}` : ''}\n`,
          );
        }
      }
    }

    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const lines = [
      `| workload | path | req/s | MB/s | p50 ms | p99 ms | p50 added vs direct | req/s vs mitmproxy | proxy CPU µs/req | req per proxy CPU-second vs mitmproxy | errors |`,
      `|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
    ];
    for (const w of workloads) {
      const m = (t: string, f: (s: Sample) => number) => median((results.get(`${w.name}|${t}`) ?? []).map(f));
      for (const t of targets) {
        const rps = m(t.name, (s) => s.rps);
        const p50 = m(t.name, (s) => (w.name === 'sse' ? s.ttfb ?? s.p50 : s.p50));
        const p99 = m(t.name, (s) => s.p99);
        const added = p50 - m('direct', (s) => (w.name === 'sse' ? s.ttfb ?? s.p50 : s.p50));
        const vsMitm = rps / m('mitmproxy', (s) => s.rps);
        const errors = (results.get(`${w.name}|${t.name}`) ?? []).reduce((n, s) => n + s.errors, 0);
        const cpu = t.pid ? m(t.name, (s) => s.cpuUs ?? NaN) : NaN;
        const cpuVsMitm = m('mitmproxy', (s) => s.cpuUs ?? NaN) / cpu;
        lines.push(
          `| ${w.name} | ${t.name} | ${rps.toFixed(0)} | ${m(t.name, (s) => s.mbps).toFixed(1)} | ${p50.toFixed(2)}${w.name === 'sse' ? ' (first event)' : ''} | ${p99.toFixed(2)} | ${t.name === 'direct' ? '—' : `${added >= 0 ? '+' : ''}${added.toFixed(2)}`} | ${t.name === 'mitmproxy' ? '1.0×' : `${vsMitm.toFixed(1)}×`} | ${Number.isNaN(cpu) ? '—' : cpu.toFixed(0)} | ${Number.isNaN(cpu) ? '—' : `${cpuVsMitm.toFixed(1)}×`} | ${errors} |`,
        );
      }
    }
    const os = await import('node:os');
    process.stdout.write(
      `\n${SECONDS}s per run, ${ROUNDS} rounds, medians. Node ${process.version}, ${os.cpus().length} CPUs, load average at the end ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}.\n\n${lines.join('\n')}\n`,
    );
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, PROFILE ? 3000 : 300));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
