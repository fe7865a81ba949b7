/** JSON encoding for stored documents: reject what JSON cannot round-trip instead of storing `undefined`. */
export function encodeJson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('store: value is not JSON-serialisable');
  return text;
}

export function decodeJson(text: string): unknown {
  return JSON.parse(text) as unknown;
}
