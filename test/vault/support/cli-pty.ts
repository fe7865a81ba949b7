/**
 * `clawpatrol …` from dist/ on a real terminal: script(1) gives the CLI a pty,
 * the keys are written once the prompt shows (raw mode is on by then), and
 * the exit status and everything the terminal displayed come back.
 */
import { spawn } from 'node:child_process';
import { expect } from 'vitest';

export async function typeAtPrompt(
  args: readonly string[],
  prompt: string,
  keys: string,
  env: Record<string, string>,
): Promise<{ code: number | null; screen: string }> {
  const command = [process.execPath, 'dist/cli/main.js', ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, ...env } });
  let screen = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (screen += d));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  await expect.poll(() => screen, { timeout: 60_000 }).toContain(prompt);
  child.stdin.write(keys);
  const code = await exited;
  child.stdin.end();
  return { code, screen };
}
