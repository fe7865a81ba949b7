import { describe, it, expect } from 'vitest';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Scrubber, scrubberFor, secretForms, MIN_SECRET_BYTES } from '../../src/vault/scrub.js';

const CANARY = 'cnry_' + randomBytes(9).toString('base64url') + '/+?&= é';
const scrubber = new Scrubber([CANARY]);

/** Every way a careless upstream might echo the canary back, produced by real encoders. */
function echoes(secret: string): Record<string, string> {
  const b = Buffer.from(secret);
  const out: Record<string, string> = {
    raw: secret,
    json: JSON.stringify({ echo: secret }),
    jsonSlash: JSON.stringify({ echo: secret }).replace(/\//g, '\\/'),
    pythonAscii: JSON.stringify(secret).replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')),
    goHtml: JSON.stringify(secret).replace(/&/g, '\\u0026'),
    allEscaped: [...secret].map((c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')).join(''),
    allEscapedUpper: [...secret].map((c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()).join(''),
    hex: b.toString('hex'),
    HEX: b.toString('hex').toUpperCase(),
    uri: encodeURIComponent(secret),
    uriLower: encodeURIComponent(secret).replace(/%[0-9A-F]{2}/g, (m) => m.toLowerCase()),
    form: new URLSearchParams({ token: secret }).toString(),
    query: new URL('https://x.example/?t=' + encodeURIComponent(secret)).href,
    percentAll: [...b].map((x) => '%' + x.toString(16).padStart(2, '0').toUpperCase()).join(''),
    nestedB64: Buffer.from(b.toString('base64')).toString('base64'),
  };
  for (let k = 0; k < 3; k++) {
    const prefix = Buffer.from('xyz'.slice(0, k));
    const suffix = Buffer.from('tail');
    const blob = Buffer.concat([prefix, b, suffix]);
    out[`base64@${k}`] = blob.toString('base64');
    out[`base64unpadded@${k}`] = blob.toString('base64').replace(/=+$/, '');
    out[`base64url@${k}`] = blob.toString('base64url');
    out[`base64exact@${k}`] = Buffer.concat([prefix, b]).toString('base64');
  }
  out.basicAuthHeader = 'Authorization: Basic ' + Buffer.from(`someuser:${secret}`).toString('base64');
  return out;
}

/** True when the secret can still be recovered from `text` by decoding any of its encodings. */
function leaks(text: string, secret: string): boolean {
  const b = Buffer.from(secret);
  if (text.includes(secret)) return true;
  const candidates = [text];
  for (const lit of [`"${text}"`, ...(text.match(/"(?:[^"\\]|\\.)*"/g) ?? [])]) {
    try {
      candidates.push(JSON.parse(lit) as string);
    } catch {
      /* not a JSON string */
    }
  }
  try {
    candidates.push(decodeURIComponent(text.replace(/\+/g, ' ')));
  } catch {
    /* not URL-encoded */
  }
  for (const c of [...candidates]) {
    for (const m of c.match(/[A-Za-z0-9+/_-]{8,}={0,2}/g) ?? []) {
      const d1 = Buffer.from(m.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      candidates.push(d1.toString('latin1'), d1.toString('utf8'));
      const d2 = Buffer.from(d1.toString('latin1'), 'base64');
      candidates.push(d2.toString('utf8'));
    }
    for (const m of c.match(/[0-9a-fA-F]{8,}/g) ?? []) candidates.push(Buffer.from(m, 'hex').toString('utf8'));
  }
  return candidates.some((c) => c.includes(secret) || Buffer.from(c, 'latin1').includes(b));
}

async function streamThrough(s: Scrubber, chunks: Buffer[]): Promise<{ out: Buffer; emittedAfter: number[] }> {
  const parts: Buffer[] = [];
  const emittedAfter: number[] = [];
  const t = s.stream();
  t.on('data', (d: Buffer) => parts.push(d));
  for (const c of chunks) {
    await new Promise<void>((r) => t.write(c, () => r()));
    emittedAfter.push(parts.reduce((n, p) => n + p.length, 0));
  }
  await new Promise<void>((r) => t.end(r));
  return { out: Buffer.concat(parts), emittedAfter };
}

describe('scrubber: forms in one chunk', () => {
  for (const [name, echoed] of Object.entries(echoes(CANARY))) {
    it(`removes the ${name} form and keeps the length`, () => {
      const text = `<html>before ${echoed} after</html>`;
      expect(leaks(text, CANARY)).toBe(true); // the test itself can see the leak…
      const clean = scrubber.scrubText(text);
      expect(leaks(clean, CANARY)).toBe(false); // …and it is gone
      expect(Buffer.byteLength(clean)).toBe(Buffer.byteLength(text));
      expect(clean.startsWith('<html>before ')).toBe(true);
      expect(clean.endsWith(' after</html>')).toBe(true);
      expect(clean).toContain('*'.repeat(8));
    });
  }

  it('leaves text without secrets untouched (same Buffer back)', () => {
    const body = Buffer.from(JSON.stringify({ ok: true, items: Array.from({ length: 100 }, (_, i) => `item-${i}`) }));
    expect(scrubber.scrubBuffer(body)).toBe(body);
    expect(scrubber.scrubText('nothing to see')).toBe('nothing to see');
  });

  it('ignores values too short to scrub safely', () => {
    expect(secretForms('abc')).toEqual([]);
    expect(new Scrubber(['pw']).empty).toBe(true);
    expect(new Scrubber(['pw']).scrubText('pw pw')).toBe('pw pw');
    expect(MIN_SECRET_BYTES).toBe(4);
  });

  it('PEM keys: removed raw, JSON-escaped, and line by line when only part of it is echoed', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString().trim();
    const s = new Scrubber([pem]);
    const lines = pem.split('\n');
    const body = lines.slice(1, -1);
    for (const text of [`key: ${pem}`, JSON.stringify({ key: pem }), JSON.stringify({ key: pem }).replace(/\//g, '\\/'), `partial: ${body[1]}`]) {
      const clean = s.scrubText(text);
      for (const line of body) if (line.length >= 16) expect(clean).not.toContain(line);
      expect(clean.length).toBe(text.length);
    }
  });

  it('handles several secrets, one inside another', () => {
    const s = new Scrubber(['token-1234', 'xx-token-1234-yy', 'other-secret']);
    expect(s.scrubText('a token-1234 b xx-token-1234-yy c other-secret')).toBe(`a ${'*'.repeat(10)} b ${'*'.repeat(16)} c ${'*'.repeat(12)}`);
  });

  it('keeps a __proto__ key from a parsed body as data', () => {
    const parsed = JSON.parse(`{"__proto__":{"polluted":"${CANARY}"},"x":1}`) as Record<string, unknown>;
    const clean = scrubber.scrubDeep(parsed);
    expect(Object.getPrototypeOf(clean)).toBe(Object.prototype);
    expect(JSON.stringify(clean)).toBe(`{"__proto__":{"polluted":"${'*'.repeat(Buffer.byteLength(CANARY))}"},"x":1}`);
  });

  it('scrubs strings deep inside facts, keys included', () => {
    const facts = { http: { headers: { 'x-echo': CANARY }, body_json: { list: [1, `Bearer ${CANARY}`], [CANARY]: null } } };
    const clean = scrubber.scrubDeep(facts);
    expect(JSON.stringify(clean)).not.toContain(CANARY);
    expect(clean.http.body_json.list[0]).toBe(1);
    expect(facts.http.headers['x-echo']).toBe(CANARY); // input untouched
  });
});

describe('scrubber: streams', () => {
  const text = Buffer.from(`HTTP body {"token":"${CANARY}","b64":"${Buffer.from(CANARY).toString('base64')}"} end\n`);
  const expected = scrubber.scrubBuffer(text);

  it('split into two chunks at every offset', async () => {
    for (let i = 0; i <= text.length; i++) {
      const { out } = await streamThrough(scrubber, [text.subarray(0, i), text.subarray(i)]);
      expect(out.equals(expected), `split at ${i}`).toBe(true);
    }
  });

  it('split into three chunks at every pair of offsets inside the secret', async () => {
    const start = text.indexOf(Buffer.from(CANARY));
    const end = start + Buffer.byteLength(CANARY);
    for (let i = start; i <= end; i++) {
      for (let j = i; j <= end; j++) {
        const { out } = await streamThrough(scrubber, [text.subarray(0, i), text.subarray(i, j), text.subarray(j)]);
        expect(out.equals(expected), `split at ${i},${j}`).toBe(true);
      }
    }
  });

  it('one byte at a time', async () => {
    const { out } = await streamThrough(scrubber, [...text].map((b) => Buffer.from([b])));
    expect(out.equals(expected)).toBe(true);
    expect(leaks(out.toString('utf8'), CANARY)).toBe(false);
  });

  it('holds back at most the longest form minus one byte, and nothing that cannot start a secret', async () => {
    const chunks = [...text].map((b) => Buffer.from([b]));
    const { emittedAfter } = await streamThrough(scrubber, chunks);
    let written = 0;
    chunks.forEach((c, i) => {
      written += c.length;
      expect(written - emittedAfter[i]!).toBeLessThanOrEqual(scrubber.maxPatternLength - 1);
    });
    // An SSE event with no secret prefix at its end is delivered whole, immediately.
    const sse = Buffer.from('event: message\ndata: {"delta":"hello"}\n\n');
    const { emittedAfter: e2 } = await streamThrough(scrubber, [sse]);
    expect(e2[0]).toBe(sse.length);
  });

  it('works in a real stream pipeline', async () => {
    const parts: Buffer[] = [];
    await pipeline(
      Readable.from([text.subarray(0, 20), text.subarray(20, 33), text.subarray(33)]),
      scrubber.stream(),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          parts.push(chunk);
          cb();
        },
      }),
    );
    expect(Buffer.concat(parts).equals(expected)).toBe(true);
  });

  it('an empty scrubber passes chunks straight through', async () => {
    const { out, emittedAfter } = await streamThrough(new Scrubber([]), [Buffer.from('abc'), Buffer.from('def')]);
    expect(out.toString()).toBe('abcdef');
    expect(emittedAfter).toEqual([3, 6]);
  });

  it('property: any secret, any surroundings, any chunking: same bytes as one-shot, same length, no raw secret', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ minLength: 4, maxLength: 40, unit: 'grapheme' }),
        fc.string({ maxLength: 60 }),
        fc.string({ maxLength: 60 }),
        fc.constantFrom('raw', 'base64', 'hex', 'uri', 'json'),
        fc.array(fc.nat({ max: 200 }), { maxLength: 6 }),
        async (secret, before, after, form, cuts) => {
          const s = new Scrubber([secret]);
          const enc =
            form === 'raw' ? secret
            : form === 'base64' ? Buffer.from(before.slice(0, 2) + secret).toString('base64')
            : form === 'hex' ? Buffer.from(secret).toString('hex')
            : form === 'uri' ? encodeURIComponent(secret)
            : JSON.stringify(secret);
          const input = Buffer.from(before + enc + after);
          const oneShot = s.scrubBuffer(input);
          expect(oneShot.length).toBe(input.length);
          const { out } = await streamThrough(s, cutAt(input, cuts));
          expect(out.equals(oneShot)).toBe(true);
          if (Buffer.byteLength(secret) >= MIN_SECRET_BYTES) expect(out.includes(Buffer.from(secret))).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('scrubberFor', () => {
  it('shares one compiled scrubber per set of values', () => {
    expect(scrubberFor(['aaaa1111', 'bbbb2222'])).toBe(scrubberFor(['bbbb2222', 'aaaa1111']));
    expect(scrubberFor(['aaaa1111'])).not.toBe(scrubberFor(['aaaa1111', 'bbbb2222']));
  });
});

/** The obvious scrubber: every occurrence of every form, found with indexOf, overwritten. */
function referenceScrub(values: readonly string[], input: Buffer): Buffer {
  const out = Buffer.from(input);
  for (const v of values) {
    for (const form of secretForms(v)) {
      for (let at = input.indexOf(form); at !== -1; at = input.indexOf(form, at + 1)) out.fill(0x2a, at, at + form.length);
    }
  }
  return out;
}

/** The longest tail of `seen` that could still grow into a form (a proper prefix of one). */
function referenceHold(forms: readonly Buffer[], seen: Buffer): number {
  for (let d = seen.length; d > 0; d--) {
    const tail = seen.subarray(seen.length - d);
    if (forms.some((f) => f.length > d && f.subarray(0, d).equals(tail))) return d;
  }
  return 0;
}

function cutAt(input: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    chunks.push(input.subarray(prev, p));
    prev = p;
  }
  chunks.push(input.subarray(prev));
  return chunks;
}

describe('scrubber: differential against the obvious implementation', () => {
  // A small alphabet shared by secrets and noise, so inputs are full of near-misses:
  // partial forms, forms overlapping each other, forms cut at a chunk boundary.
  const alphabet = ['a', 'b', 'A', '0', '1', '%', '2', 'F', '\\', 'u', '/', '+', '=', '-', '_', 'é'];
  const secretArb = fc.string({ unit: fc.constantFrom(...alphabet), minLength: 4, maxLength: 24 });
  const noiseArb = fc.string({ unit: fc.constantFrom(...alphabet, 'Y', 'W', 'J', 'h', 'x', '"', ' '), maxLength: 40 });

  it('one-shot and streamed output equal the reference on random inputs with planted forms', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(secretArb, { minLength: 1, maxLength: 3 }),
        fc.array(fc.tuple(noiseArb, fc.nat(), fc.nat(), fc.boolean()), { maxLength: 8 }),
        fc.array(fc.nat({ max: 2000 }), { maxLength: 8 }),
        async (secrets, segments, cuts) => {
          const forms = secrets.flatMap((v) => secretForms(v));
          if (forms.length === 0) return;
          // Noise, then a form (whole, or cut short so only a prefix is there).
          const parts: Buffer[] = [];
          for (const [noise, which, cut, whole] of segments) {
            parts.push(Buffer.from(noise));
            const form = forms[which % forms.length]!;
            parts.push(whole ? form : form.subarray(0, cut % form.length));
          }
          const input = Buffer.concat(parts);
          const expected = referenceScrub(secrets, input);
          const s = new Scrubber(secrets);
          expect(s.scrubBuffer(input).equals(expected)).toBe(true);
          const chunks = cutAt(input, cuts);
          const { out, emittedAfter } = await streamThrough(s, chunks);
          expect(out.equals(expected)).toBe(true);
          // After each chunk exactly the tail that could still begin a form is held back.
          let written = 0;
          chunks.forEach((c, i) => {
            written += c.length;
            expect(written - emittedAfter[i]!).toBe(referenceHold(forms, input.subarray(0, written)));
          });
        },
      ),
      { numRuns: 400 },
    );
  });

  it('every form of a real token at every offset of a long text, and at every chunk boundary', async () => {
    const secrets = ['ghp_' + randomBytes(27).toString('base64url').slice(0, 36), 'sk-bench-secret-0123456789abcdef', CANARY];
    const s = new Scrubber(secrets);
    const filler = Buffer.from(JSON.stringify({ text: 'lorem ipsum '.repeat(400), b64: randomBytes(600).toString('base64'), hex: randomBytes(300).toString('hex') }));
    for (const form of secrets.flatMap((v) => secretForms(v))) {
      const at = form[0]! % 97; // a varying place per form
      const input = Buffer.concat([filler.subarray(0, 1000 + at), form, filler.subarray(1000 + at)]);
      const expected = referenceScrub(secrets, input);
      expect(expected.includes(form)).toBe(false);
      expect(s.scrubBuffer(input).equals(expected)).toBe(true);
      for (const cut of [1000 + at, 1001 + at, 1000 + at + (form.length >> 1), 999 + at + form.length]) {
        const { out } = await streamThrough(s, [input.subarray(0, cut), input.subarray(cut)]);
        expect(out.equals(expected), `cut at ${cut}`).toBe(true);
      }
    }
  });

  it('Scrubber.scan continued by state (the Postgres engine holds bytes itself) equals one-shot', () => {
    const s = new Scrubber(['token-1234', '1234-abcd', CANARY]);
    const input = Buffer.from(`x token-1234-abcd y ${CANARY} z token-12`);
    const expected = referenceScrub(['token-1234', '1234-abcd', CANARY], input);
    for (let cut = 0; cut <= input.length; cut++) {
      const a = s.scan(input.subarray(0, cut), 0, 0, null);
      const keep = a.output.subarray(0, a.output.length - a.hold);
      const joined = Buffer.concat([a.output.subarray(a.output.length - a.hold), input.subarray(cut)]);
      const b = s.scan(joined, a.hold, a.state, joined);
      expect(Buffer.concat([keep, b.output]).equals(expected), `cut at ${cut}`).toBe(true);
    }
  });
});
