import { UsageError } from '../errors.js';

/**
 * A command-line option's parser for a whole number of at least `min` (default 0): "8" → 8; "8x", "-1",
 * "1.5" or "" are usage errors naming the option.
 */
export function wholeNumber(option: string, min = 0): (v: string) => number {
  return (v: string) => {
    const n = Number.parseInt(v, 10);
    if (!Number.isInteger(n) || n < min || String(n) !== v.trim())
      throw new UsageError(
        `${option} expects a whole number${min > 0 ? ` of at least ${min}` : ''}, got ${JSON.stringify(v)}`,
      );
    return n;
  };
}

/** A command-line option's parser for a fraction from 0 to 1 ("0.3"); anything else is a usage error. */
export function fraction(option: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v.trim());
    if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1)
      throw new UsageError(`${option} expects a fraction from 0 to 1, got ${JSON.stringify(v)}`);
    return n;
  };
}
