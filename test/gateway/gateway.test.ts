/**
 * The composition root end to end: a real policy directory, the real vault,
 * CA, audit log and HTTPS engine, curl through the explicit proxy to a local
 * TLS upstream. Proves the one Action → Decision path: allow injects the
 * vault secret, deny answers 403 with the rule's reason, both are audited.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { startGateway, type RunningGateway } from '../../src/gateway/gateway.js';
import { openStore } from '../../src/store/index.js';
import { auditRows } from '../../src/audit/index.js';
import { makeTestPki } from '../http/support/certs.js';

const SECRET = 'canary-secret-7d1f0c9a2b';

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
}

describe('clawpatrol gateway (in process)', () => {
  let dir: string;
  let upstream: https.Server;
  let upstreamPort: number;
  const seen: Seen[] = [];
  let gw: RunningGateway;
  let caFile: string;
  let proxy: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cp-gw-'));
    const pki = makeTestPki(dir, ['api.test.local'], ['127.0.0.1']);
    upstream = https.createServer({ key: pki.serverKeyPem, cert: pki.serverCertPem }, (req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
      res.setHeader('content-type', 'application/json');
      // An upstream that echoes the credential it received must not leak it to the agent.
      res.end(JSON.stringify({ ok: true, echoed: req.headers.authorization }));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    upstreamPort = (upstream.address() as AddressInfo).port;

    const policyDir = join(dir, 'policy');
    mkdirSync(policyDir);
    writeFileSync(
      join(policyDir, 'gateway.hcl'),
      `schema_version = 1
gateway {
  state_dir        = "${join(dir, 'state')}"
  dashboard_listen = "127.0.0.1:0"
  audit_backlog    = 75000
  proxy { listen = "127.0.0.1:0" }
}
`,
    );
    writeFileSync(
      join(policyDir, 'api.hcl'),
      `endpoint "https" "api" {
  hosts   = ["api.test.local:${upstreamPort}"]
  ca_cert = <<-EOT
${pki.caPem.trim()}
  EOT
}
credential "bearer_token" "api" {
  endpoint = https.api
}
profile "default" {
  credentials = [bearer_token.api]
}
rule "no-deletes" {
  endpoint  = https.api
  condition = "http.method == 'delete'"
  verdict   = "deny"
  reason    = "deletes go through a change request"
}
`,
    );
    gw = await startGateway({
      configPath: policyDir,
      env: { ...process.env, CLAWPATROL_SECRET_API_TOKEN: SECRET, CLAWPATROL_STATE_DIR: '' },
      log: () => {},
      httpLookup: ((_host: string, opts: unknown, cb: unknown) => {
        const callback = (typeof opts === 'function' ? opts : cb) as (...a: unknown[]) => void;
        const all = typeof opts === 'object' && opts !== null && (opts as { all?: boolean }).all;
        if (all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
        else callback(null, '127.0.0.1', 4);
      }) as import('node:net').LookupFunction,
    });
    caFile = join(dir, 'gateway-ca.pem');
    writeFileSync(caFile, gw.ca.caCertPem);
    const p = gw.ingress.find((i) => i.kind === 'proxy');
    proxy = `http://${p!.address}`;
  });

  afterAll(async () => {
    await gw?.close();
    await new Promise<void>((r) => upstream?.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  // Asynchronous on purpose: the gateway runs in this process, so a blocking spawn would deadlock it.
  function curl(args: string[]): Promise<{ status: number; body: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn('curl', ['-sS', '-o', '-', '-w', '\n%{http_code}', '--max-time', '20', '--cacert', caFile, '-x', proxy, ...args]);
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('close', () => {
        const cut = out.lastIndexOf('\n');
        resolve({ body: out.slice(0, cut), status: Number(out.slice(cut + 1)), stderr: err });
      });
    });
  }

  it('injects the vault secret on allow and never shows it to the agent', async () => {
    const r = await curl(['-H', 'Authorization: Bearer PH_placeholder', `https://api.test.local:${upstreamPort}/repos`]);
    expect(r.status).toBe(200);
    expect(seen.at(-1)).toMatchObject({ method: 'GET', url: '/repos', authorization: `Bearer ${SECRET}` });
    expect(r.body).not.toContain(SECRET);
    expect(JSON.parse(r.body).ok).toBe(true);
  });

  it('denies with 403 and the rule reason, and nothing reaches the upstream', async () => {
    const before = seen.length;
    const r = await curl(['-X', 'DELETE', '-H', 'Accept: application/json', `https://api.test.local:${upstreamPort}/repos/1`]);
    expect(r.status).toBe(403);
    expect(r.body).toContain('deletes go through a change request');
    expect(seen.length).toBe(before);
  });

  it('bounds the audit backlog as gateway.audit_backlog says', () => {
    expect(gw.audit.stats().backlogLimit).toBe(75000);
  });

  it('audits both actions in the hash-chained log', async () => {
    await gw.audit.flush();
    const rows = [];
    for await (const row of auditRows(gw.store)) rows.push(row);
    const records = rows.map((r) => JSON.parse(r.record) as { rule: string; outcome: string; endpoint: string });
    expect(records).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ outcome: 'allow', endpoint: 'https.api' }),
        expect.objectContaining({ outcome: 'deny', rule: 'no-deletes', endpoint: 'https.api' }),
      ]),
    );
    expect(JSON.stringify(rows)).not.toContain(SECRET);
  });
});

describe('clawpatrol gateway (CLI)', () => {
  const bin = join(process.cwd(), 'dist/cli/main.js');

  it('exits 2 with diagnostics for an invalid policy', () => {
    const d = mkdtempSync(join(tmpdir(), 'cp-gwcli-'));
    try {
      writeFileSync(join(d, 'bad.hcl'), 'endpoint "https" {\n}\n');
      const r = spawnSync(process.execPath, [bin, 'gateway', join(d, 'bad.hcl')], { encoding: 'utf8' });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/^error: .*bad\.hcl:1:\d+: /m);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('exits 2 when the policy declares no way in', () => {
    const d = mkdtempSync(join(tmpdir(), 'cp-gwcli-'));
    try {
      writeFileSync(join(d, 'p.hcl'), `schema_version = 1\ngateway {\n  state_dir = "${join(d, 's')}"\n}\n`);
      const r = spawnSync(process.execPath, [bin, 'gateway', join(d, 'p.hcl')], { encoding: 'utf8' });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain('the gateway has no way in');
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('serves until SIGTERM, then exits 0', async () => {
    const d = mkdtempSync(join(tmpdir(), 'cp-gwcli-'));
    try {
      writeFileSync(
        join(d, 'p.hcl'),
        `schema_version = 1\ngateway {\n  state_dir = "${join(d, 's')}"\n  dashboard_listen = "127.0.0.1:0"\n  proxy { listen = "127.0.0.1:0" }\n}\n`,
      );
      const child = spawn(process.execPath, [bin, 'gateway', join(d, 'p.hcl')], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`gateway did not become ready: ${stderr}`)), 60_000);
        child.stderr.on('data', (c: Buffer) => {
          stderr += c.toString();
          if (stderr.includes('gateway: ready')) {
            clearTimeout(t);
            resolve();
          }
        });
        // A gateway that dies during startup fails the test at once, with its message.
        child.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`gateway exited (${code}) before it was ready: ${stderr}`));
        });
      });
      expect(stderr).toMatch(/proxy listening on 127\.0\.0\.1:\d+/);
      expect(stderr).toMatch(/CA fingerprint \(SHA-256\) ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
      expect(code).toBe(0);
      // The state dir was created private.
      const store = await openStore({ stateDir: join(d, 's') });
      await store.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
