/**
 * The response scrubber alone: MiB/s over 1 MiB bodies of different kinds,
 * with the prefilter (the gateway's path) and without it (the automaton
 * reading every byte, as the scrubber did before the prefilter), plus the
 * obvious implementation (one native `Buffer.indexOf` pass per form) for
 * scale. Runs interleaved, several rounds, medians.
 *
 *   node --import tsx bench/http/scrub.ts [--rounds 5]
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { Scrubber, secretForms } from '../../src/vault/scrub.js';

const arg = (name: string, dflt: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const ROUNDS = Number(arg('rounds', '5'));
const MiB = 1024 * 1024;
const CHUNK = 16 * 1024; // what a TLS socket hands over at a time

function jsonText(size: number): Buffer {
  const words = ['model', 'content', 'text', 'assistant', 'user', 'tokens', 'usage', 'stop_reason', 'end_turn', 'the', 'quick', 'brown', 'fox'];
  const parts: string[] = [];
  let n = 0;
  for (let i = 0; n < size; i++) {
    const line = JSON.stringify({ id: `msg_${(i * 7919).toString(36)}`, type: words[i % words.length], content: [{ type: 'text', text: words.slice(i % 5, (i % 5) + 7).join(' ') }], usage: { input_tokens: i % 1000 } }) + '\n';
    parts.push(line);
    n += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

/** Every form of every secret with its last byte changed, over and over: each is a candidate that fails only at its end. */
function nearMisses(values: string[], size: number): Buffer {
  const misses = values.flatMap((v) => secretForms(v)).map((f) => {
    const m = Buffer.from(f);
    m[m.length - 1] = m[m.length - 1]! ^ 1;
    return m;
  });
  const one = Buffer.concat(misses);
  return Buffer.concat(Array.from({ length: Math.ceil(size / one.length) }, () => one)).subarray(0, size);
}

const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString().trim();
const secretSets: Record<string, string[]> = {
  '1 token': ['sk-bench-secret-0123456789abcdef'],
  '10 tokens + PEM key': [
    'sk-bench-secret-0123456789abcdef',
    'ghp_' + randomBytes(27).toString('base64url').slice(0, 36),
    'sk-ant-api03-' + randomBytes(60).toString('base64url'),
    'xoxb-' + randomBytes(20).toString('hex'),
    'AKIA' + randomBytes(10).toString('hex').toUpperCase(),
    randomBytes(30).toString('base64'),
    'hunter2-password!',
    'pg-pass-é-ünïcode',
    randomBytes(16).toString('hex'),
    pem,
  ],
};

function reference(values: string[]): (b: Buffer) => Buffer {
  const forms = values.flatMap((v) => secretForms(v));
  return (input) => {
    let out = input;
    for (const f of forms) {
      for (let at = input.indexOf(f); at !== -1; at = input.indexOf(f, at + 1)) {
        if (out === input) out = Buffer.from(input);
        out.fill(0x2a, at, at + f.length);
      }
    }
    return out;
  };
}

function streamed(s: Scrubber): (b: Buffer) => void {
  return (input) => {
    const c = s.cursor();
    for (let i = 0; i < input.length; i += CHUNK) c.push(input.subarray(i, i + CHUNK));
    c.end();
  };
}

/** MiB/s of `fn` over `input`, best of a few repetitions (the median is taken over rounds). */
function rate(fn: (b: Buffer) => unknown, input: Buffer): number {
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    fn(input);
    best = Math.min(best, performance.now() - t0);
  }
  return input.length / MiB / (best / 1000);
}

const rows: string[] = [];
for (const [setName, values] of Object.entries(secretSets)) {
  const inputs: Record<string, Buffer> = {
    'same byte (bench body)': Buffer.alloc(MiB, 0x61),
    'random bytes': randomBytes(MiB),
    'JSON text': jsonText(MiB),
    'base64 text': Buffer.from(randomBytes(MiB).toString('base64')).subarray(0, MiB),
    'hex text': Buffer.from(randomBytes(MiB / 2).toString('hex')),
    'near misses (adversarial)': nearMisses(values, MiB),
  };
  const fast = new Scrubber(values);
  const slow = new Scrubber(values, { prefilter: false });
  const ways: Record<string, (b: Buffer) => unknown> = {
    prefilter: (b) => fast.scrubBuffer(b),
    'prefilter, 16 KiB chunks': streamed(fast),
    'automaton only': (b) => slow.scrubBuffer(b),
    'indexOf per form': reference(values),
  };
  const forms = values.flatMap((v) => secretForms(v)).length;
  for (const [inputName, input] of Object.entries(inputs)) {
    const samples = new Map<string, number[]>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const [way, fn] of Object.entries(ways)) samples.set(way, [...(samples.get(way) ?? []), rate(fn, input)]);
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const m = Object.fromEntries([...samples].map(([k, v]) => [k, median(v)]));
    rows.push(
      `| ${setName} (${forms} forms) | ${inputName} | ${m['prefilter']!.toFixed(0)} | ${m['prefilter, 16 KiB chunks']!.toFixed(0)} | ${m['automaton only']!.toFixed(0)} | ${m['indexOf per form']!.toFixed(0)} | ${(m['prefilter']! / m['automaton only']!).toFixed(1)}× |`,
    );
    process.stderr.write(`${rows[rows.length - 1]}\n`);
  }
}
process.stdout.write(
  `\n| secrets | 1 MiB of | prefilter MiB/s | prefilter, 16 KiB chunks | automaton only | indexOf per form | prefilter vs automaton |\n|---|---|---:|---:|---:|---:|---:|\n${rows.join('\n')}\n`,
);
