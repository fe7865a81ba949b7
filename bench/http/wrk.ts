/**
 * HTTPS proxies under an efficient client and upstream: wrk (C, one event
 * loop per thread) against nginx (one worker), so that the proxy, not the
 * client or the upstream, is what limits the request rate.
 *
 *   direct           wrk → nginx
 *   gateway-tunnel   wrk → clawpatrol TLS ingress (as the WireGuard transport feeds it) → nginx
 *   baseline-tunnel  (with --baseline DIR) the same, served by another checkout's gateway
 *   mitmproxy        wrk → mitmdump --mode reverse:https://nginx (wrk speaks no CONNECT) → nginx
 *   node-relay       wrk → a Node TLS relay that only copies bytes (bench/http/relay.ts) → nginx:
 *                    the floor for any proxy built on Node's TLS and event loop
 *   gateway-no-audit (only when named in --paths) the gateway with a sink that drops audit
 *                    records: what the audit log costs per request
 *
 * Both proxies terminate TLS, re-encrypt upstream and verify nginx's
 * certificate against the throwaway CA. wrk sends the URL's host as SNI, so
 * the gateway is reached as `https://localhost:<ingress port>` with
 * `Host: localhost:<nginx port>`: the server name and port of the host the
 * agent "dialed", which the gateway resolves to nginx.
 *
 * Workloads (keep-alive, wrk `-t 1`):
 *   json-c1    small JSON GET, 1 connection: latency
 *   json-c16   small JSON GET, 16 connections: throughput
 *   big-c4     1 MiB response GET, 4 connections
 *   upload-c4  1 MiB request body POST, 4 connections
 *   llm-c16    (only when named in --only, never with upload-c4) an agent's LLM call: a ≈ 30 KB JSON
 *              POST whose body a rule reads, so the gateway buffers, parses and records it; 16 connections
 *
 *   node --import tsx bench/http/wrk.ts [--seconds 4] [--rounds 3] [--only json-c1,json-c16]
 *       [--paths gateway-tunnel,…] [--baseline DIR] [--pin] [--dist] [--threads 1] [--profile DIR]
 *
 * `--pin`: the proxy under test (every thread) on CPU 1, wrk and nginx on CPU 0.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki } from '../../test/http/support/certs.js';
import {
  BIG_BYTES,
  LLM_PATH,
  PLACEHOLDER_AUTH,
  POLICY,
  Results,
  Scope,
  UPSTREAM_IP,
  arg,
  cpuSeconds,
  llmRequestBody,
  describeRun,
  flag,
  freePort,
  logSample,
  pairedLines,
  runOptions,
  pinned,
  startGateway,
  startMitmproxy,
  type Sample,
} from './common.js';
import { startNginx } from './nginx.js';

const options = runOptions();
const { rounds: ROUNDS, only: ONLY, paths: PATHS, baseline: BASELINE, profile: PROFILE, dist: DIST } = options;
/** wrk takes whole seconds. */
const SECONDS = Math.max(1, Math.round(options.seconds));
const THREADS = arg('threads', '1');
const PIN = flag('pin');
/** Where the proxy runs and where wrk and nginx run, when pinned. */
const PROXY_CPUS = PIN ? '1' : null;
const SIDE_CPUS = PIN ? '0' : null;

/** wrk's Lua hooks: a POST body for uploads, and a one-line JSON summary at the end. */
const WRK_SCRIPT = `
local upload = tonumber(os.getenv("WRK_UPLOAD_BYTES") or "0")
if upload > 0 then
  wrk.method = "POST"
  wrk.body = string.rep("b", upload)
  wrk.headers["Content-Type"] = "application/octet-stream"
end
local bodyFile = os.getenv("WRK_BODY_FILE") or ""
if bodyFile ~= "" then
  local f = assert(io.open(bodyFile, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%.1f,"p99_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;

interface WrkSummary {
  requests: number;
  duration_us: number;
  bytes: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
  p50_us: number;
  p99_us: number;
}

interface Target {
  name: string;
  url: string;
  /** The proxy's process, whose CPU time is charged to the requests (none for direct). */
  pid?: number;
}

/**
 * One wrk run. wrk runs under bash so that bash's `times` reports wrk's own
 * CPU time once it has exited (Node cannot read a child's rusage).
 */
function runWrk(
  scope: Scope,
  url: string,
  o: { connections: number; seconds: number; uploadBytes: number; bodyFile?: string | undefined; host: string; script: string },
): Promise<{ summary: WrkSummary; cpuS: number }> {
  const wrkArgs = ['-t', THREADS, '-c', String(o.connections), '-d', `${o.seconds}s`, '--timeout', '10s', '-s', o.script];
  wrkArgs.push('-H', `Host: ${o.host}`, '-H', `Authorization: ${PLACEHOLDER_AUTH}`, url);
  const [cmd, args] = pinned(SIDE_CPUS, 'bash', ['-c', 'wrk "$@"; s=$?; times; exit $s', 'wrk', ...wrkArgs]);
  const child = scope.spawn(cmd, args, { env: { ...process.env, WRK_UPLOAD_BYTES: String(o.uploadBytes), WRK_BODY_FILE: o.bodyFile ?? '' } });
  child.stdout!.setEncoding('utf8');
  let out = '';
  child.stdout!.on('data', (c: string) => (out += c));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
      // `times`: the shell's own user/system times, then its children's (wrk's): "0m1.234s 0m0.567s".
      const childTimes = out.trimEnd().split('\n').at(-1)?.match(/^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/);
      if (code !== 0 || !line || !childTimes) return reject(new Error(`wrk ${url} failed (exit ${code}):\n${out}`));
      const cpuS = Number(childTimes[1]) * 60 + Number(childTimes[2]) + Number(childTimes[3]) * 60 + Number(childTimes[4]);
      resolve({ summary: JSON.parse(line.slice('WRKJSON '.length)) as WrkSummary, cpuS });
    });
  });
}

async function main(): Promise<void> {
  const scope = new Scope('clawpatrol-bench-wrk-');
  try {
    const dir = scope.dir;
    const pki = makeTestPki(dir, ['bench.test', 'localhost'], [UPSTREAM_IP]);
    const script = join(dir, 'bench.lua');
    writeFileSync(script, WRK_SCRIPT);
    const nginxPort = await freePort(UPSTREAM_IP);
    const nginx = await startNginx(scope, { host: UPSTREAM_IP, port: nginxPort, certPath: join(dir, 'server.pem'), keyPath: join(dir, 'server.key'), cpus: SIDE_CPUS });
    // llm-c16 needs a rule that reads request bodies, which makes the gateway inspect every body
    // on the endpoint: it runs only when named, and never beside upload-c4 (whose 1 MiB body would
    // then be buffered and recorded too).
    const llm = ONLY.includes('llm-c16');
    if (llm && ONLY.includes('upload-c4')) throw new Error('run llm-c16 and upload-c4 separately: llm-c16 makes the gateway inspect every request body');
    const policy = POLICY(pki.caPath, ['bench.test', 'localhost', UPSTREAM_IP], { inspectBodies: llm });
    const llmBody = join(dir, 'llm.json');
    writeFileSync(llmBody, llmRequestBody());
    const gatewayOpts = { policy, ingressIp: '127.0.0.1', upstreamPort: nginxPort, ingressPort: 0, cpus: PROXY_CPUS, dist: DIST };
    const gw = await startGateway(scope, { ...gatewayOpts, name: 'gateway', nodeFlags: [...(PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE}`] : []), ...(process.env['XP_FLAGS'] ? process.env['XP_FLAGS'].split(' ') : [])] });
    const baseline = BASELINE ? await startGateway(scope, { ...gatewayOpts, name: 'baseline', checkout: BASELINE }) : null;
    const noAudit = PATHS.includes('gateway-no-audit') ? await startGateway(scope, { ...gatewayOpts, name: 'no-audit', audit: false }) : null;
    const [relayCmd, relayArgs] = pinned(PROXY_CPUS, process.execPath, [
      '--import', 'tsx', 'bench/http/relay.ts', join(dir, 'server.pem'), join(dir, 'server.key'), pki.caPath, UPSTREAM_IP, String(nginxPort), 'localhost',
    ]);
    const relay = await scope.spawnJson(relayCmd, relayArgs);
    const mitm = await startMitmproxy(scope, { upstreamCaPath: pki.caPath, mode: `reverse:https://${UPSTREAM_IP}:${nginxPort}`, cpus: PROXY_CPUS });

    const allTargets: Target[] = [
      { name: 'direct', url: `https://${UPSTREAM_IP}:${nginxPort}` },
      { name: 'gateway-tunnel', url: `https://localhost:${gw.ingressPort}`, pid: gw.pid },
      ...(baseline ? [{ name: 'baseline-tunnel', url: `https://localhost:${baseline.ingressPort}`, pid: baseline.pid }] : []),
      ...(noAudit ? [{ name: 'gateway-no-audit', url: `https://localhost:${noAudit.ingressPort}`, pid: noAudit.pid }] : []),
      { name: 'mitmproxy', url: `https://127.0.0.1:${mitm.port}`, pid: mitm.pid },
      { name: 'node-relay', url: `https://127.0.0.1:${relay.info['port'] as number}`, pid: relay.child.pid! },
    ];
    const targets = allTargets.filter((t) => PATHS.length === 0 || PATHS.includes(t.name) || t.name === 'direct' || t.name === 'mitmproxy');
    const allWorkloads = [
      { name: 'json-c1', path: '/json', connections: 1, uploadBytes: 0 },
      { name: 'json-c16', path: '/json', connections: 16, uploadBytes: 0 },
      { name: 'big-c4', path: '/big', connections: 4, uploadBytes: 0 },
      { name: 'upload-c4', path: '/upload', connections: 4, uploadBytes: BIG_BYTES },
      { name: 'llm-c16', path: LLM_PATH, connections: 16, uploadBytes: 0, bodyFile: llmBody },
    ];
    const workloads = allWorkloads.filter((w) => (ONLY.length === 0 ? w.name !== 'llm-c16' : ONLY.includes(w.name)));

    const results = new Results();
    for (let round = 0; round < ROUNDS; round++) {
      for (const w of workloads) {
        for (const t of targets) {
          const o = { connections: w.connections, uploadBytes: w.uploadBytes, bodyFile: 'bodyFile' in w ? w.bodyFile : undefined, host: `localhost:${nginxPort}`, script };
          // Warm-up (first round only): JIT, leaf certificates, the proxies' upstream connections.
          if (round === 0) await runWrk(scope, `${t.url}${w.path}`, { ...o, seconds: 1 });
          const cpu0 = t.pid ? cpuSeconds(t.pid) : 0;
          const nginx0 = cpuSeconds(nginx.pid);
          const { summary, cpuS } = await runWrk(scope, `${t.url}${w.path}`, { ...o, seconds: SECONDS });
          const requests = Math.max(1, summary.requests);
          const elapsed = summary.duration_us / 1e6;
          const errors = summary.connect + summary.read + summary.write + summary.status + summary.timeout;
          if (errors) process.stderr.write(`  errors: ${JSON.stringify(summary)}\n`);
          const s: Sample = {
            rps: summary.requests / elapsed,
            p50: summary.p50_us / 1000,
            p99: summary.p99_us / 1000,
            mbps: summary.bytes / elapsed / 1e6,
            errors,
            sideCpuUs: ((cpuSeconds(nginx.pid) - nginx0 + cpuS) * 1e6) / requests,
          };
          if (t.pid) s.cpuUs = ((cpuSeconds(t.pid) - cpu0) * 1e6) / requests;
          results.add(w.name, t.name, s);
          logSample(round, w.name, t.name, s);
        }
      }
    }
    const fromNote = DIST ? ', gateways from dist/' : ', gateways from src/ through tsx';
    const pinNote = PIN ? `, pinned: proxy on CPU ${PROXY_CPUS}, wrk and nginx on CPU ${SIDE_CPUS}` : ', not pinned';
    process.stdout.write(
      `\n${describeRun(SECONDS, ROUNDS, `, wrk -t ${THREADS}${pinNote}${fromNote}`)}\n\n${results.table(
        workloads.map((w) => w.name),
        targets.map((t) => ({ name: t.name, proxy: t.pid !== undefined })),
        { sideCpu: true },
      )}\n`,
    );
    const paired = pairedLines(
      results,
      workloads.map((w) => w.name),
      [
        ['gateway-tunnel', 'baseline-tunnel'],
        ['gateway-no-audit', 'gateway-tunnel'],
      ],
    );
    if (paired) process.stdout.write(`\n${paired}\n`);
  } finally {
    await scope.close(PROFILE ? 5000 : 2000);
  }
}

await main();
