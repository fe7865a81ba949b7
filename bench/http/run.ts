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
 *       [--paths direct,gateway-tunnel,…] [--baseline DIR] [--dist] [--profile DIR]
 *
 * `--baseline DIR`: also run the gateway of another checkout (e.g.
 * `git worktree add DIR <commit>`) as path `baseline-tunnel`, side by side
 * with this one — before/after numbers for a change from one run.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, ProxyAgent, request, type Dispatcher } from 'undici';
import { makeTestPki } from '../../test/http/support/certs.js';
import { lookupTo } from '../../test/http/support/gateway.js';
import {
  BIG_BYTES,
  PLACEHOLDER_AUTH,
  POLICY,
  Results,
  Scope,
  UPSTREAM_IP,
  cpuSeconds,
  describeRun,
  logSample,
  pairedLines,
  runOptions,
  percentile,
  startGateway,
  startMitmproxy,
  type Sample,
} from './common.js';

const { seconds: SECONDS, rounds: ROUNDS, only: ONLY, paths: PATHS, baseline: BASELINE, profile: PROFILE, dist: DIST } = runOptions();
const INGRESS_IP = '127.0.0.3';
const BASELINE_INGRESS_IP = '127.0.0.4';

interface Target {
  name: string;
  origin: string;
  dispatcher: (connections: number) => Dispatcher;
  /** The proxy's process, whose CPU time is charged to the requests (none for direct). */
  pid?: number | undefined;
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
          const res = await request(url, { dispatcher: d, method: opts.method, body: opts.body, headers: { authorization: PLACEHOLDER_AUTH } });
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

async function main(): Promise<void> {
  const scope = new Scope('clawpatrol-bench-http-');
  try {
    const dir = scope.dir;
    const pki = makeTestPki(dir, ['bench.test'], [UPSTREAM_IP]);
    writeFileSync(join(dir, 'server.pem'), pki.serverCertPem);
    writeFileSync(join(dir, 'server.key'), pki.serverKeyPem);
    const up = await scope.spawnJson(process.execPath, ['--import', 'tsx', 'bench/http/upstream.ts', UPSTREAM_IP, join(dir, 'server.pem'), join(dir, 'server.key')]);
    const port = up.info['port'] as number;
    const policy = POLICY(pki.caPath, ['bench.test', UPSTREAM_IP]);
    const nodeFlags = PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : [];
    const gw = await startGateway(scope, { name: 'gateway', policy, ingressIp: INGRESS_IP, upstreamPort: port, nodeFlags, dist: DIST });
    // Its own state directory, so the two gateways share no vault, CA or audit database.
    const baseline = BASELINE ? await startGateway(scope, { name: 'baseline', policy, ingressIp: BASELINE_INGRESS_IP, upstreamPort: port, checkout: BASELINE, dist: DIST }) : null;
    const mitm = await startMitmproxy(scope, { upstreamCaPath: pki.caPath });

    const ipOrigin = `https://${UPSTREAM_IP}:${port}`;
    const allTargets: Target[] = [
      { name: 'direct', origin: ipOrigin, dispatcher: (c) => new Agent({ connections: c, connect: { ca: pki.caPem } }) },
      {
        name: 'gateway-tunnel',
        origin: `https://bench.test:${port}`,
        dispatcher: (c) => new Agent({ connections: c, connect: { ca: gw.ca, lookup: lookupTo(INGRESS_IP) } }),
        pid: gw.pid,
      },
      {
        name: 'gateway-proxy',
        origin: ipOrigin,
        dispatcher: (c) => new ProxyAgent({ uri: `http://127.0.0.1:${gw.proxyPort}`, connections: c, requestTls: { ca: gw.ca } }),
        pid: gw.pid,
      },
      ...(baseline
        ? [
            {
              name: 'baseline-tunnel',
              origin: `https://bench.test:${port}`,
              dispatcher: (c: number) => new Agent({ connections: c, connect: { ca: baseline.ca, lookup: lookupTo(BASELINE_INGRESS_IP) } }),
              pid: baseline.pid,
            },
          ]
        : []),
      {
        name: 'mitmproxy',
        origin: ipOrigin,
        dispatcher: (c) => new ProxyAgent({ uri: `http://127.0.0.1:${mitm.port}`, connections: c, requestTls: { ca: mitm.ca } }),
        pid: mitm.pid,
      },
    ];
    const targets = allTargets.filter((t) => PATHS.length === 0 || PATHS.includes(t.name) || t.name === 'direct' || t.name === 'mitmproxy');
    const big = Buffer.alloc(BIG_BYTES, 0x62);
    const allWorkloads: Array<{ name: string; connections: number; run: (d: Dispatcher, origin: string, seconds: number) => Promise<Sample> }> = [
      { name: 'json-c1', connections: 1, run: (d, o, s) => load(d, `${o}/json`, { method: 'GET', connections: 1, seconds: s }) },
      { name: 'json-c16', connections: 16, run: (d, o, s) => load(d, `${o}/json`, { method: 'GET', connections: 16, seconds: s }) },
      { name: 'big-c4', connections: 4, run: (d, o, s) => load(d, `${o}/big`, { method: 'GET', connections: 4, seconds: s }) },
      { name: 'upload-c4', connections: 4, run: (d, o, s) => load(d, `${o}/upload`, { method: 'POST', body: big, connections: 4, seconds: s }) },
      { name: 'sse', connections: 1, run: (d, o, s) => sse(d, `${o}/sse?n=1000`, s) },
    ];
    const workloads = allWorkloads.filter((w) => ONLY.length === 0 || ONLY.includes(w.name));

    const results = new Results();
    for (let round = 0; round < ROUNDS; round++) {
      for (const w of workloads) {
        for (const t of targets) {
          const d = t.dispatcher(w.connections);
          await w.run(d, t.origin, 0.5); // warm-up: connections, TLS sessions, leaf certificates, JIT
          const cpu0 = t.pid ? cpuSeconds(t.pid) : 0;
          const s = await w.run(d, t.origin, SECONDS);
          if (t.pid) s.cpuUs = ((cpuSeconds(t.pid) - cpu0) * 1e6) / Math.max(1, s.rps * SECONDS);
          await d.close();
          results.add(w.name, t.name, s);
          logSample(round, w.name, t.name, s);
        }
      }
    }
    const table = results.table(
      workloads.map((w) => w.name),
      targets.map((t) => ({ name: t.name, proxy: t.pid !== undefined })),
    );
    process.stdout.write(`\n${describeRun(SECONDS, ROUNDS, DIST ? ', gateways from dist/' : ', gateways from src/ through tsx')}\n\n${table}\n`);
    const paired = pairedLines(results, workloads.map((w) => w.name), [['gateway-tunnel', 'baseline-tunnel']]);
    if (paired) process.stdout.write(`\n${paired}\n`);
  } finally {
    await scope.close(PROFILE ? 5000 : 2000);
  }
}

await main();
