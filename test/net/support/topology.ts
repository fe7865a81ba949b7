/**
 * Three network namespaces on one machine, joined by veth pairs:
 *
 *   agent (192.168.50.2) ── gw (192.168.50.1 | 192.168.60.1, fd60::1) ── up (192.168.60.2, fd60::2)
 *   agent (192.168.51.2) ── gw2 (192.168.51.1)          with `Topology.create({ secondGateway: true })`
 *
 * `agent` is the agent host (it runs `clawpatrol join` / `run`; run creates
 * its own namespace from there), `gw` the gateway, `up` the upstream
 * servers. The agent host has no route to `up`: only the gateway does.
 * Names are unique per topology, and `destroy()` removes every namespace
 * (the veths go with them), including the namespaces `clawpatrol run`
 * made for devices enrolled during the test.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, mkdirSync, writeFileSync } from 'node:fs';

export const ADDR = {
  agent: '192.168.50.2',
  gwAgentSide: '192.168.50.1',
  gwUpSide: '192.168.60.1',
  up: '192.168.60.2',
  gwUpSide6: 'fd60::1',
  up6: 'fd60::2',
  agent2: '192.168.51.2',
  gw2AgentSide: '192.168.51.1',
} as const;

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.stdout}`);
  return r.stdout;
}

export class Topology {
  readonly id = randomBytes(3).toString('hex');
  readonly ns = { agent: `cpt-${this.id}-agent`, gw: `cpt-${this.id}-gw`, up: `cpt-${this.id}-up`, gw2: `cpt-${this.id}-gw2` };
  private readonly children = new Set<ChildProcess>();
  /** Extra namespaces to delete on destroy (made by `clawpatrol run`). */
  readonly extraNamespaces = new Set<string>();

  static create(opts: { secondGateway?: boolean } = {}): Topology {
    const t = new Topology();
    try {
      t.build();
      if (opts.secondGateway) t.buildSecondGateway();
    } catch (err) {
      t.destroy();
      throw err;
    }
    return t;
  }

  private build(): void {
    const { agent, gw, up } = this.ns;
    for (const n of [agent, gw, up]) {
      sh('ip', ['netns', 'add', n]);
      sh('ip', ['-n', n, 'link', 'set', 'lo', 'up']);
    }
    const va = `cpt${this.id}a`;
    const vu = `cpt${this.id}u`;
    sh('ip', ['link', 'add', `${va}0`, 'netns', agent, 'type', 'veth', 'peer', 'name', `${va}1`, 'netns', gw]);
    sh('ip', ['link', 'add', `${vu}0`, 'netns', up, 'type', 'veth', 'peer', 'name', `${vu}1`, 'netns', gw]);
    sh('ip', ['-n', agent, 'addr', 'add', `${ADDR.agent}/24`, 'dev', `${va}0`]);
    sh('ip', ['-n', gw, 'addr', 'add', `${ADDR.gwAgentSide}/24`, 'dev', `${va}1`]);
    sh('ip', ['-n', gw, 'addr', 'add', `${ADDR.gwUpSide}/24`, 'dev', `${vu}1`]);
    sh('ip', ['-n', up, 'addr', 'add', `${ADDR.up}/24`, 'dev', `${vu}0`]);
    sh('ip', ['-n', gw, '-6', 'addr', 'add', `${ADDR.gwUpSide6}/64`, 'dev', `${vu}1`, 'nodad']);
    sh('ip', ['-n', up, '-6', 'addr', 'add', `${ADDR.up6}/64`, 'dev', `${vu}0`, 'nodad']);
    for (const [n, d] of [[agent, `${va}0`], [gw, `${va}1`], [gw, `${vu}1`], [up, `${vu}0`]] as const) {
      sh('ip', ['-n', n, 'link', 'set', d, 'up']);
    }
    // The upstream answers the gateway, and only the gateway (the agent host has no route there).
    sh('ip', ['-n', up, 'route', 'add', 'default', 'via', ADDR.gwUpSide]);
    sh('ip', ['-n', up, '-6', 'route', 'add', 'default', 'via', ADDR.gwUpSide6]);
    // The gateway host's resolver is the upstream's DNS server (processes started with `spawnWithEtc`).
    mkdirSync(`/etc/netns/${gw}`, { recursive: true });
    writeFileSync(`/etc/netns/${gw}/resolv.conf`, `nameserver ${ADDR.up}\n`);
  }

  /** A second gateway host, reachable from the agent host only (its own link). */
  private buildSecondGateway(): void {
    const { agent, gw2 } = this.ns;
    this.extraNamespaces.add(gw2);
    sh('ip', ['netns', 'add', gw2]);
    sh('ip', ['-n', gw2, 'link', 'set', 'lo', 'up']);
    const v = `cpt${this.id}b`;
    sh('ip', ['link', 'add', `${v}0`, 'netns', agent, 'type', 'veth', 'peer', 'name', `${v}1`, 'netns', gw2]);
    sh('ip', ['-n', agent, 'addr', 'add', `${ADDR.agent2}/24`, 'dev', `${v}0`]);
    sh('ip', ['-n', gw2, 'addr', 'add', `${ADDR.gw2AgentSide}/24`, 'dev', `${v}1`]);
    sh('ip', ['-n', agent, 'link', 'set', `${v}0`, 'up']);
    sh('ip', ['-n', gw2, 'link', 'set', `${v}1`, 'up']);
    mkdirSync(`/etc/netns/${gw2}`, { recursive: true });
    writeFileSync(`/etc/netns/${gw2}/resolv.conf`, `nameserver ${ADDR.up}\n`);
  }

  /** Like `spawn`, through `ip netns exec`: the process also sees `/etc/netns/<ns>/*` (resolv.conf, hosts) as its /etc files. */
  spawnWithEtc(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** argv that runs `cmd` inside namespace `ns` without a new mount namespace (so `ip netns add` inside is visible to us). */
  argv(ns: string, cmd: string, args: string[]): [string, string[]] {
    return ['nsenter', [`--net=/run/netns/${ns}`, '--', cmd, ...args]];
  }

  spawn(ns: string, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const [c, a] = this.argv(ns, cmd, args);
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Run to completion; resolves with status, signal and output. */
  run(ns: string, cmd: string, args: string[], opts: SpawnOptions & { input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
    const child = this.spawn(ns, cmd, args, { ...opts, stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (process.env.CP_TEST_DEBUG) process.stderr.write(`[${ns}] ${d}`);
    });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    return new Promise((resolve) => {
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    });
  }

  destroy(): void {
    for (const c of this.children) c.kill('SIGKILL');
    for (const n of [...this.extraNamespaces, this.ns.agent, this.ns.gw, this.ns.up]) {
      spawnSync('ip', ['netns', 'del', n], { encoding: 'utf8' });
      rmSync(`/etc/netns/${n}`, { recursive: true, force: true });
    }
  }
}
