/**
 * Response bodies scrubbing can read. Scrubbing looks for the secret's bytes
 * as sent, and a gzip of the secret is not the secret: a compressed echo (a
 * 401 page quoting the token) would reach the agent intact. Once a credential
 * is injected the gateway asks for `Accept-Encoding: identity`; an upstream
 * that compresses anyway has its body decoded here, on the fly, and the agent
 * receives it uncompressed. A coding the gateway cannot decode is refused by
 * the caller rather than passed on unread.
 */
import zlib from 'node:zlib';
import { Readable, pipeline, type Transform } from 'node:stream';
import { readableSource, type BodySource } from './h1-client.js';
import { contentCodings } from './body.js';
import type { FieldList } from './headers.js';

function decoderFor(coding: string): Transform | null {
  if (coding === 'gzip' || coding === 'x-gzip') return zlib.createGunzip();
  if (coding === 'deflate') return zlib.createInflate();
  if (coding === 'br') return zlib.createBrotliDecompress();
  return null;
}

const isContentEncoding = ([name]: [string, string]): boolean => name.toLowerCase() === 'content-encoding';

/** The codings a response's fields declare, in the order they were applied (`identity` left out). */
export function responseCodings(fields: FieldList): string[] {
  return contentCodings(
    fields
      .filter(isContentEncoding)
      .map(([, v]) => v)
      .join(','),
  );
}

/**
 * The body decoded (codings undone in reverse order), streamed with
 * backpressure; null when one of the codings has no decoder. The caller drops
 * `Content-Encoding` and `Content-Length` (the decoded length is unknown).
 */
export function decodedBody(source: BodySource, codings: readonly string[]): BodySource | null {
  const decoders: Transform[] = [];
  for (const coding of [...codings].reverse()) {
    const d = decoderFor(coding);
    if (d === null) return null;
    decoders.push(d);
  }
  const feed = Readable.from(
    (async function* () {
      for (let chunk = await source.read(); chunk !== null; chunk = await source.read()) yield chunk;
    })(),
  );
  // A corrupt stream or a cut-off upstream errors the last decoder, so the reader's `read` rejects.
  pipeline([feed, ...decoders], () => undefined);
  const out = readableSource(decoders[decoders.length - 1]!);
  return {
    read: () => out.read(),
    destroy() {
      source.destroy();
      feed.destroy();
      for (const d of decoders) d.destroy();
    },
  };
}

/** `fields` without Content-Encoding: what the agent is told once the body is decoded. */
export function withoutContentEncoding(fields: FieldList): FieldList {
  return fields.filter((f) => !isContentEncoding(f));
}
