/**
 * Hot reload through real file-system events (chokidar): valid edits take
 * effect within a second, invalid edits and deletions keep the old policy,
 * gateway changes ask for a restart, directories reload on added files.
 */
import { describe, it, expect, afterEach } from 'vitest';
import { writeFileSync, unlinkSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { PolicyWatcher } from '../../src/policy/index.js';
import { PolicyLoadError } from '../../src/policy/watcher.js';
import type { Diagnostic } from '../../src/policy/types.js';
import type { CompiledPolicy } from '../../src/policy/compiled.js';
import { HEADER, httpAction, tempDir, writePolicyDir } from './helpers.js';

const policy = (verdict: 'allow' | 'deny', extra = '') => `${HEADER}${extra}
endpoint "https" "x" { hosts = ["x.example.com"] }
rule "r" {
  endpoint = https.x
  verdict  = "${verdict}"
}
`;

const watchers: PolicyWatcher[] = [];
afterEach(async () => {
  await Promise.all(watchers.splice(0).map((w) => w.close()));
});

async function start(path: string): Promise<{ w: PolicyWatcher; logs: string[] }> {
  const logs: string[] = [];
  const w = await PolicyWatcher.start(path, { debounceMs: 50, log: (l) => logs.push(l) });
  watchers.push(w);
  return { w, logs };
}

function next<T>(w: PolicyWatcher, event: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${event}' event within 3 s`)), 3000);
    w.once(event, (v: T) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

const verdictOf = (p: CompiledPolicy) => p.decide(httpAction('x.example.com')).verdict;

describe('PolicyWatcher', () => {
  it('rejects an invalid initial policy with its diagnostics', async () => {
    const dir = writePolicyDir({ 'p.hcl': `${HEADER}rule "r" {}\n` });
    const err = await PolicyWatcher.start(join(dir, 'p.hcl')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PolicyLoadError);
    expect((err as PolicyLoadError).diagnostics.length).toBeGreaterThan(0);
  });

  it('file mode: a valid edit is in force within one second', async () => {
    const dir = writePolicyDir({ 'p.hcl': policy('allow') });
    const file = join(dir, 'p.hcl');
    const { w, logs } = await start(file);
    const before = w.current();
    expect(verdictOf(before)).toBe('allow');
    const reloaded = next<CompiledPolicy>(w, 'reload');
    const t0 = Date.now();
    writeFileSync(file, policy('deny'));
    const p = await reloaded;
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(w.current()).toBe(p);
    expect(verdictOf(w.current())).toBe('deny');
    // The snapshot an in-flight decision took is untouched.
    expect(verdictOf(before)).toBe('allow');
    expect(logs.some((l) => l.startsWith('policy reloaded'))).toBe(true);
  });

  it('file mode: an editor-style atomic replace (write temp + rename) reloads', async () => {
    const dir = writePolicyDir({ 'p.hcl': policy('allow') });
    const file = join(dir, 'p.hcl');
    const { w } = await start(file);
    const reloaded = next(w, 'reload');
    writeFileSync(join(dir, 'p.hcl.tmp'), policy('deny'));
    renameSync(join(dir, 'p.hcl.tmp'), file);
    await reloaded;
    expect(verdictOf(w.current())).toBe('deny');
  });

  it('an invalid edit keeps the old policy and reports the diagnostics as an event and a log line', async () => {
    const dir = writePolicyDir({ 'p.hcl': policy('allow') });
    const file = join(dir, 'p.hcl');
    const { w, logs } = await start(file);
    const old = w.current();
    const invalid = next<Diagnostic[]>(w, 'invalid');
    writeFileSync(file, policy('allow').replace('verdict  = "allow"', 'verdict  = "perhaps"'));
    const ds = (await invalid).filter((d) => d.severity === 'error');
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ summary: 'Invalid value', pos: { line: 6, col: 14 } });
    expect(w.current()).toBe(old);
    expect(logs.join('\n')).toContain('policy reload rejected; keeping the policy in force');
    expect(logs.join('\n')).toContain(`error: ${file}:6:14: Invalid value`);
  });

  it('a deleted file is an invalid reload: the old policy stays', async () => {
    const dir = writePolicyDir({ 'p.hcl': policy('deny') });
    const file = join(dir, 'p.hcl');
    const { w } = await start(file);
    const old = w.current();
    const invalid = next<Diagnostic[]>(w, 'invalid');
    unlinkSync(file);
    const ds = await invalid;
    expect(ds[0]).toMatchObject({ summary: 'Cannot read policy', hint: 'no such file or directory' });
    expect(w.current()).toBe(old);
    expect(verdictOf(w.current())).toBe('deny');
  });

  it('a changed gateway block: restart needed, rules reloaded, old gateway values kept', async () => {
    const gw = (buffer: string) => `gateway {\n  limits {\n    body_buffer = "${buffer}"\n  }\n}\n`;
    const dir = writePolicyDir({ 'p.hcl': policy('allow', gw('1MiB')) });
    const file = join(dir, 'p.hcl');
    const { w } = await start(file);
    const restart = next<string>(w, 'restart-needed');
    const reloaded = next<CompiledPolicy>(w, 'reload');
    writeFileSync(file, policy('deny', gw('2MiB')));
    expect(await restart).toContain('restart');
    const p = await reloaded;
    expect(verdictOf(p)).toBe('deny');
    expect(p.model.gateway.limits.bodyBuffer).toBe(1024 * 1024);
  });

  it('directory mode: adding, editing and removing *.hcl files reloads; other files are ignored', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.hcl'), policy('allow'));
    const { w } = await start(dir);
    let reloaded = next<CompiledPolicy>(w, 'reload');
    writeFileSync(
      join(dir, 'b.hcl'),
      `rule "first" {\n  endpoint = https.x\n  priority = 10\n  verdict  = "deny"\n}\n`,
    );
    await reloaded;
    expect(w.current().decide(httpAction('x.example.com')).rule).toBe('first');

    let fired = false;
    w.once('reload', () => (fired = true));
    w.once('invalid', () => (fired = true));
    writeFileSync(join(dir, 'notes.txt'), 'not policy');
    writeFileSync(join(dir, '.hidden.hcl'), 'garbage {{{');
    await new Promise((r) => setTimeout(r, 400));
    expect(fired).toBe(false);

    reloaded = next<CompiledPolicy>(w, 'reload');
    unlinkSync(join(dir, 'b.hcl'));
    await reloaded;
    expect(w.current().decide(httpAction('x.example.com')).rule).toBe('r');
  });

  it('close() stops watching', async () => {
    const dir = writePolicyDir({ 'p.hcl': policy('allow') });
    const file = join(dir, 'p.hcl');
    const { w } = await start(file);
    await w.close();
    let fired = false;
    w.on('reload', () => (fired = true));
    writeFileSync(file, policy('deny'));
    await new Promise((r) => setTimeout(r, 400));
    expect(fired).toBe(false);
    expect(verdictOf(w.current())).toBe('allow');
  });
});
