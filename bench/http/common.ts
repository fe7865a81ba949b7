/**
 * What both HTTPS benchmark runners share: the policy the gateway runs, the
 * processes under test (gateway, mitmproxy) and their cleanup, CPU time from
 * /proc, and the results table.
 *
 *   run.ts  undici clients, a Node upstream: SSE, the explicit proxy, uploads
 *   wrk.ts  wrk and nginx: a client and an upstream cheap enough that the proxy is the bottleneck
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { createInterface } from 'node:readline';

export const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
export const flag = (name: string): boolean => process.argv.includes(`--${name}`);
export const listArg = (name: string): string[] => arg(name, '').split(',').filter(Boolean);

/** The options both runners take (see the README). */
export function runOptions() {
  return {
    seconds: Number(arg('seconds', '4')),
    rounds: Number(arg('rounds', '3')),
    only: listArg('only'),
    paths: listArg('paths'),
    baseline: arg('baseline', ''),
    /** `--profile DIR`: write a V8 CPU profile of the gateway process there. */
    profile: arg('profile', ''),
    /** `--dist`: the gateways run their checkout's compiled dist/ (`npm run build` there first), as in production. */
    dist: flag('dist'),
  };
}

export const UPSTREAM_IP = '127.0.0.2';
/** What the upstreams (Node's and nginx) answer to `GET /json` and `GET /big`. */
export const JSON_BODY = JSON.stringify({ id: 42, name: 'widget', tags: ['a', 'b', 'c'], price: 9.99, ok: true });
export const BIG_BYTES = 1024 * 1024;

/** The placeholder every client sends; the gateway swaps in the vault's token. */
export const PLACEHOLDER_AUTH = 'Bearer cp_ph_bench';

/** The path of the LLM-style workload (a JSON POST whose body a rule reads). */
export const LLM_PATH = '/v1/messages';

/**
 * An agent's LLM call: ≈ 30 KB of JSON (a conversation), the shape of a
 * messages API request.
 */
export function llmRequestBody(): string {
  const messages = Array.from({ length: 40 }, (_, i) => ({
    role: i % 2 ? 'assistant' : 'user',
    content: `Please look at the file src/module${i}.ts and explain what its exported function does, step by step. `.repeat(7),
  }));
  return JSON.stringify({ model: 'claude-sonnet-4', max_tokens: 4096, system: 'You are a careful coding agent. '.repeat(20), messages, stream: false });
}

/**
 * The gateway's policy: 10 rules, one bearer credential, the upstream's CA.
 * With `inspectBodies`, an 11th rule reads `http.body_json` on the LLM path,
 * so the gateway buffers, decodes and parses every request body (and records
 * it in the audit log) — on every path of the endpoint, uploads included.
 */
export const POLICY = (caFile: string, hosts: string[], opts: { inspectBodies?: boolean } = {}) => `
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
  hosts   = [${hosts.map((h) => JSON.stringify(h)).join(', ')}]
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
${
  opts.inspectBodies
    ? `rule "llm-models" {
  endpoint  = https.bench
  condition = "http.path == '${LLM_PATH}' && has(http.body_json.model) && http.body_json.model == 'claude-forbidden'"
  verdict   = "deny"
  reason    = "that model is not allowed"
}`
    : ''
}
`;

/** CPU seconds (user + system, every thread) a process has used, from /proc (Linux). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
}

/** `taskset -c CPUS cmd …` when pinned: the process and every thread it starts stay on those CPUs. */
export function pinned(cpuList: string | null, cmd: string, args: string[]): [string, string[]] {
  return cpuList === null ? [cmd, args] : ['taskset', ['-c', cpuList, cmd, ...args]];
}

/**
 * The benchmark's temp directory and child processes, removed and stopped
 * however the run ends: normally, by an exception, or by Ctrl-C / SIGTERM.
 */
export class Scope {
  readonly dir: string;
  private readonly children = new Set<ChildProcess>();
  private closing: Promise<void> | null = null;

  constructor(prefix: string) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    const onSignal = (signal: NodeJS.Signals) => {
      process.stderr.write(`\n${signal}: stopping the benchmark's processes\n`);
      void this.close().finally(() => process.exit(130));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    // Last resort (e.g. process.exit from elsewhere): nothing async runs any more.
    process.once('exit', () => {
      for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      rmSync(this.dir, { recursive: true, force: true });
    });
  }

  /** Spawn a child that this scope stops at the end. */
  spawn(cmd: string, args: string[], opts: { cwd?: string; stdout?: 'pipe' | 'ignore'; stderr?: 'inherit' | 'ignore'; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    const child = spawn(cmd, args, { stdio: ['ignore', opts.stdout ?? 'pipe', opts.stderr ?? 'inherit'], cwd: opts.cwd ?? process.cwd(), env: opts.env ?? process.env });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Spawn a child that prints one JSON line when ready. */
  spawnJson(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ child: ChildProcess; info: Record<string, unknown> }> {
    const child = this.spawn(cmd, args, opts);
    return new Promise((resolve, reject) => {
      const rl = createInterface({ input: child.stdout! });
      rl.once('line', (line) => resolve({ child, info: JSON.parse(line) as Record<string, unknown> }));
      child.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`)));
    });
  }

  /** SIGTERM every child, SIGKILL what is left after `graceMs`, remove the directory. Idempotent. */
  close(graceMs = 2000): Promise<void> {
    this.closing ??= (async () => {
      const alive = [...this.children];
      for (const c of alive) c.kill('SIGTERM');
      await Promise.all(
        alive.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              const t = setTimeout(() => {
                c.kill('SIGKILL');
                resolve();
              }, graceMs);
              c.once('exit', () => {
                clearTimeout(t);
                resolve();
              });
            }),
        ),
      );
      rmSync(this.dir, { recursive: true, force: true });
    })();
    return this.closing;
  }
}

export async function waitForPort(port: number, host = '127.0.0.1', ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`${host}:${port} never opened`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, host, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.once('error', reject);
  });
}

export interface GatewayProcess {
  child: ChildProcess;
  pid: number;
  /** PEM of the gateway CA its clients must trust. */
  ca: string;
  proxyPort: number;
  ingressPort: number;
}

/**
 * Start `bench/http/gateway.ts` from `checkout` (this one, or a baseline
 * worktree) with its own state directory under the scope.
 */
export async function startGateway(
  scope: Scope,
  o: {
    name: string;
    policy: string;
    ingressIp: string;
    /** The port the agent "dialed" (the upstream's); the ingress listens on `ingressPort` (default: the same). */
    upstreamPort: number;
    ingressPort?: number;
    checkout?: string;
    cpus?: string | null;
    nodeFlags?: string[];
    /** Run the compiled engine from the checkout's dist/ (as `clawpatrol gateway` does) instead of the sources through tsx. */
    dist?: boolean;
    /** false: audit records are dropped instead of written (to measure what the audit log costs). */
    audit?: boolean;
  },
): Promise<GatewayProcess> {
  const checkout = o.checkout ?? process.cwd();
  if (o.dist && !existsSync(join(checkout, 'dist/src/protocols/http/index.js'))) {
    throw new Error(`--dist: ${checkout}/dist is missing; run \`npm run build\` there first`);
  }
  const dir = join(scope.dir, o.name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'policy.hcl'), o.policy);
  const args = [...(o.nodeFlags ?? []), '--import', 'tsx', 'bench/http/gateway.ts', dir, UPSTREAM_IP, o.ingressIp, String(o.upstreamPort)];
  if (o.ingressPort !== undefined) args.push(String(o.ingressPort));
  const [cmd, full] = pinned(o.cpus ?? null, process.execPath, args);
  const env = { ...process.env, CLAWPATROL_BENCH_DIST: o.dist ? '1' : '0', CLAWPATROL_BENCH_AUDIT: o.audit === false ? 'off' : 'on' };
  const { child, info } = await scope.spawnJson(cmd, full, { cwd: checkout, env });
  return {
    child,
    pid: child.pid!,
    ca: readFileSync(info['caPath'] as string, 'utf8'),
    proxyPort: info['proxyPort'] as number,
    // A baseline checkout's gateway.ts may predate `ingressPort`: then it listens on the dialed port.
    ingressPort: (info['ingressPort'] as number | undefined) ?? o.upstreamPort,
  };
}

export interface MitmProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  /** PEM of mitmproxy's CA. */
  ca: string;
}

/**
 * `mitmdump` 8 (Debian), quiet, verifying the upstream against `upstreamCaPath`,
 * streaming bodies above 128 KiB. `mode`: regular (explicit proxy, CONNECT) or
 * `reverse:https://host:port` (clients that cannot speak CONNECT).
 */
export async function startMitmproxy(scope: Scope, o: { upstreamCaPath: string; mode?: string; cpus?: string | null }): Promise<MitmProcess> {
  const port = await freePort();
  const confdir = join(scope.dir, 'mitm');
  const args = ['-q', '--listen-host', '127.0.0.1', '--listen-port', String(port), '--set', `confdir=${confdir}`];
  args.push('--set', `ssl_verify_upstream_trusted_ca=${o.upstreamCaPath}`, '--set', 'stream_large_bodies=128k');
  if (o.mode) args.push('--mode', o.mode);
  const [cmd, full] = pinned(o.cpus ?? null, 'mitmdump', args);
  // mitmdump logs every connection a client drops (wrk at the end of each run) on stderr.
  const child = scope.spawn(cmd, full, { stdout: 'ignore', stderr: process.env['BENCH_LOG'] ? 'inherit' : 'ignore' });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`mitmdump exited with ${code} (BENCH_LOG=1 shows its output)`))));
  await Promise.race([waitForPort(port), exited]);
  const caPath = join(confdir, 'mitmproxy-ca-cert.pem');
  while (!existsSync(caPath)) await new Promise((r) => setTimeout(r, 100));
  return { child, pid: child.pid!, port, ca: readFileSync(caPath, 'utf8') };
}

export interface Sample {
  rps: number;
  p50: number;
  p99: number;
  mbps: number;
  errors: number;
  /** SSE: time to the first event (ms); reported in place of p50. */
  ttfb?: number;
  /** CPU time the proxy process spent per request, in µs. */
  cpuUs?: number;
  /** CPU time the client and the upstream together spent per request, in µs. */
  sideCpuUs?: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const median = (xs: number[]): number => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!);

/** Samples per `workload|path`, in the order they were taken. */
export class Results {
  private readonly byKey = new Map<string, Sample[]>();

  samples(workload: string, path: string): readonly Sample[] {
    return this.byKey.get(`${workload}|${path}`) ?? [];
  }

  add(workload: string, path: string, s: Sample): void {
    const key = `${workload}|${path}`;
    this.byKey.set(key, [...(this.byKey.get(key) ?? []), s]);
  }

  /**
   * Medians per workload and path as a markdown table, each path against
   * `direct` (added latency) and `mitmproxy` (request rate, CPU per request).
   */
  table(workloads: string[], paths: Array<{ name: string; proxy: boolean }>, o: { sideCpu?: boolean } = {}): string {
    const side = o.sideCpu === true;
    const lines = [
      `| workload | path | req/s | MB/s | p50 ms | p99 ms | p50 added vs direct | req/s vs mitmproxy | proxy CPU µs/req | req per proxy CPU-second vs mitmproxy |${side ? ' client+upstream CPU µs/req |' : ''} errors |`,
      `|---|---|---:|---:|---:|---:|---:|---:|---:|---:|${side ? '---:|' : ''}---:|`,
    ];
    const fmt = (x: number, digits: number) => (Number.isNaN(x) ? '—' : x.toFixed(digits));
    for (const w of workloads) {
      const m = (path: string, f: (s: Sample) => number) => median((this.byKey.get(`${w}|${path}`) ?? []).map(f));
      const latency = (s: Sample) => s.ttfb ?? s.p50;
      const direct50 = m('direct', latency);
      const mitmRps = m('mitmproxy', (s) => s.rps);
      const mitmCpu = m('mitmproxy', (s) => s.cpuUs ?? NaN);
      for (const t of paths) {
        if (!this.byKey.has(`${w}|${t.name}`)) continue;
        const rps = m(t.name, (s) => s.rps);
        const p50 = m(t.name, latency);
        const added = p50 - direct50;
        const cpu = t.proxy ? m(t.name, (s) => s.cpuUs ?? NaN) : NaN;
        const errors = (this.byKey.get(`${w}|${t.name}`) ?? []).reduce((n, s) => n + s.errors, 0);
        const firstEvent = this.byKey.get(`${w}|${t.name}`)?.[0]?.ttfb !== undefined ? ' (first event)' : '';
        lines.push(
          `| ${w} | ${t.name} | ${rps.toFixed(0)} | ${fmt(m(t.name, (s) => s.mbps), 1)} | ${p50.toFixed(2)}${firstEvent} | ${m(t.name, (s) => s.p99).toFixed(2)} | ` +
            `${t.name === 'direct' ? '—' : `${added >= 0 ? '+' : ''}${added.toFixed(2)}`} | ${t.name === 'mitmproxy' ? '1.0×' : `${(rps / mitmRps).toFixed(1)}×`} | ` +
            `${fmt(cpu, 0)} | ${Number.isNaN(cpu) ? '—' : `${(mitmCpu / cpu).toFixed(1)}×`} |${side ? ` ${fmt(m(t.name, (s) => s.sideCpuUs ?? NaN), 0)} |` : ''} ${errors} |`,
        );
      }
    }
    return lines.join('\n');
  }
}

/**
 * `path` against `against`, round by round: both ran back to back in each
 * round, so the ratio of each pair cancels most of the load that other jobs
 * put on the machine, which moves single numbers by 2× here.
 */
export function pairedLines(results: Results, workloads: string[], pairs: Array<[string, string]>): string {
  const lines: string[] = [];
  for (const [path, against] of pairs) {
    for (const w of workloads) {
      const a = results.samples(w, path);
      const b = results.samples(w, against);
      const n = Math.min(a.length, b.length);
      if (n === 0) continue;
      const cpu = Array.from({ length: n }, (_, i) => (a[i]!.cpuUs ?? NaN) / (b[i]!.cpuUs ?? NaN)).filter((x) => !Number.isNaN(x));
      const rps = Array.from({ length: n }, (_, i) => a[i]!.rps / b[i]!.rps);
      const fewer = cpu.filter((x) => x < 1).length;
      lines.push(
        `- ${w}: ${path} ÷ ${against}, per round: CPU per request ×${median(cpu).toFixed(2)} (lower in ${fewer} of ${cpu.length} rounds), req/s ×${median(rps).toFixed(2)}`,
      );
    }
  }
  return lines.join('\n');
}

export function describeRun(seconds: number, rounds: number, extra = ''): string {
  return `${seconds}s per run, ${rounds} rounds, medians${extra}. Node ${process.version}, ${cpus().length} CPUs, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, load average at the end ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}.`;
}

export function logSample(round: number, workload: string, path: string, s: Sample): void {
  process.stderr.write(
    `round ${round + 1} ${workload} ${path}: ${s.rps.toFixed(0)} req/s p50 ${(s.ttfb ?? s.p50).toFixed(2)} ms p99 ${s.p99.toFixed(2)} ms` +
      `${s.cpuUs ? ` proxy CPU ${s.cpuUs.toFixed(0)} µs/req` : ''}${s.sideCpuUs ? ` client+upstream ${s.sideCpuUs.toFixed(0)} µs/req` : ''}${s.errors ? ` errors ${s.errors}` : ''}\n`,
  );
}
