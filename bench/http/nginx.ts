/**
 * nginx as the benchmark's TLS upstream: one process (`master_process off`,
 * so the pid is the one doing the work and its CPU is easy to read), its own
 * prefix, config, logs and temp paths under `dir`, keep-alive without a
 * request limit (wrk and the proxies never reconnect mid-run).
 *
 *   GET  /json     the small JSON body the Node upstream serves
 *   GET  /big      1 MiB
 *   POST /upload   reads and discards the body (up to 2 MiB), answers a small JSON
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BIG_BYTES, JSON_BODY, LLM_PATH, pinned, waitForPort, type Scope } from './common.js';

export interface NginxProcess {
  pid: number;
  port: number;
}

export async function startNginx(
  scope: Scope,
  o: { host: string; port: number; certPath: string; keyPath: string; cpus?: string | null },
): Promise<NginxProcess> {
  const dir = join(scope.dir, 'nginx');
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  writeFileSync(join(dir, 'big.bin'), Buffer.alloc(BIG_BYTES, 0x61));
  // nginx's `return` takes a quoted string; the JSON holds no single quotes or backslashes.
  if (/['\\$]/.test(JSON_BODY)) throw new Error('JSON body needs escaping for nginx');
  const tmp = join(dir, 'tmp');
  const conf = `
daemon off;
master_process off;
worker_processes 1;
error_log ${join(dir, 'error.log')} warn;
pid ${join(dir, 'nginx.pid')};
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${tmp}/body;
  proxy_temp_path ${tmp}/proxy;
  fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi;
  scgi_temp_path ${tmp}/scgi;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  server {
    listen ${o.host}:${o.port} ssl;
    ssl_certificate ${o.certPath};
    ssl_certificate_key ${o.keyPath};
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /json { default_type application/json; return 200 '${JSON_BODY}'; }
    location = /big { default_type application/octet-stream; alias ${join(dir, 'big.bin')}; }
    location = /upload { client_max_body_size 2m; default_type application/json; return 200 '{"received":true}'; }
    location = ${LLM_PATH} { client_max_body_size 2m; default_type application/json; return 200 '{"id":"msg_1","type":"message","content":[{"type":"text","text":"ok"}]}'; }
  }
}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const [cmd, args] = pinned(o.cpus ?? null, 'nginx', ['-e', join(dir, 'error.log'), '-p', dir, '-c', confPath]);
  const child = scope.spawn(cmd, args, { stdout: 'ignore' });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`nginx exited with ${code}; see its error.log`))));
  await Promise.race([waitForPort(o.port, o.host), exited]);
  return { pid: child.pid!, port: o.port };
}
