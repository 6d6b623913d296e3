/**
 * The limits of a repository's parameters (docs/FORMAT.md §15, "Limits a reader enforces"). One definition
 * of each: the reader refuses a config object outside them (repository.ts), and the configuration schema and
 * `regbackup init` refuse to create one — a repository that every later command would refuse is never made.
 */

export interface Limit {
  min: number;
  max: number;
  /** Sizes are shown with their unit (64 KiB) as well as in bytes. */
  bytes?: boolean;
}

/** Target size of a pack object. */
export const PACK_SIZE: Limit = { min: 64 * 1024, max: 1024 ** 3, bytes: true };

/** zstd level for compressible data. */
export const COMPRESSION_LEVEL: Limit = { min: 1, max: 19 };

function withUnit(n: number): string {
  for (const [unit, size] of [
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return `${n} bytes`;
}

/** "from 64 KiB to 1 GiB (65536 to 1073741824 bytes)", "from 1 to 19". */
export function describeLimit(limit: Limit): string {
  return limit.bytes
    ? `from ${withUnit(limit.min)} to ${withUnit(limit.max)} (${limit.min} to ${limit.max} bytes)`
    : `from ${limit.min} to ${limit.max}`;
}

export function withinLimit(n: unknown, limit: Limit): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= limit.min && n <= limit.max;
}

/** The first parameter outside its limit, as "pack size 1: allowed from 64 KiB to 1 GiB (…)"; else undefined. */
export function repositoryParamsProblem(p: {
  packSize: unknown;
  compressionLevel: unknown;
}): string | undefined {
  if (!withinLimit(p.packSize, PACK_SIZE))
    return `pack size ${String(p.packSize)}: allowed ${describeLimit(PACK_SIZE)}`;
  if (!withinLimit(p.compressionLevel, COMPRESSION_LEVEL))
    return `compression level ${String(p.compressionLevel)}: allowed ${describeLimit(COMPRESSION_LEVEL)}`;
  return undefined;
}
