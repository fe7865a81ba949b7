/**
 * README's main job (`./examples/demo/demo.sh`) must keep working: it is the
 * first thing a new user runs. It drives the real CLI, a real PostgreSQL and
 * real psql, so this also guards the whole Postgres path end to end.
 */
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';

describe('examples/demo/demo.sh', () => {
  it('reads are allowed, writes are denied, the audit log verifies, the password never leaks', async () => {
    const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('bash', ['examples/demo/demo.sh'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      child.on('close', (c) => resolve({ code: c, out }));
    });
    expect(code, out).toBe(0);
    expect(out).toContain('(3 rows)');
    expect(out).toContain('ERROR:  the shop database is read-only for agents');
    expect(out).toContain("ERROR:  functions that reach the server's files are not for agents");
    expect(out).toContain('Rows still in orders: 3');
    expect(out).toMatch(/audit log intact: \d+ records verified/);
    expect(out).toContain('The database password appears nowhere');
  }, 180_000);
});
