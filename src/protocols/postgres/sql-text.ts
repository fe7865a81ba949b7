/**
 * libpg-query reports positions (statement locations, token offsets) as byte
 * offsets into the UTF-8 encoding of the input; JavaScript strings index
 * UTF-16 code units. This converts between the two.
 */

/** The text between byte offsets `start` and `end` (end of text when omitted). */
export function utf8Slice(text: string, start: number, end?: number): string {
  // Pure ASCII: byte offsets are string indices, no encoding needed.
  if (Buffer.byteLength(text, 'utf8') === text.length) return text.slice(start, end);
  return Buffer.from(text, 'utf8').subarray(start, end).toString('utf8');
}
