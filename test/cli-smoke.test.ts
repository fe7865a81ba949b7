import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';

describe('clawpatrol binary', () => {
  it('prints help and exits 0', () => {
    const r = spawnSync(process.execPath, ['dist/cli/main.js', '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('Usage: clawpatrol');
  });
  it('exits 2 on an unknown command', () => {
    const r = spawnSync(process.execPath, ['dist/cli/main.js', 'no-such-command'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
  });
});
