/**
 * Sizes ("1MiB", "512KB") and durations ("30s", "5m", "12h", "30d") as
 * written in policies. Anything else is a load error — never a silent default.
 */

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

export const SIZE_HINT = 'write a whole number with a unit: B, KB, MB, GB, KiB, MiB or GiB (e.g. "1MiB")';
export const DURATION_HINT = 'write a whole number with a unit: s, m, h or d (e.g. "30s", "5m", "30d")';

/** Bytes, or undefined when the text is not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^\s*(\d+)\s*([A-Za-z]+)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!];
  if (unit === undefined) return undefined;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** Seconds, or undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+)\s*([a-z])\s*$/.exec(text);
  if (!m) return undefined;
  const unit = DURATION_UNITS[m[2]!];
  if (unit === undefined) return undefined;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) ? n : undefined;
}
