import { compareCodePoints } from '../../util/external-sort.js';

/** Listing order of two relative paths. */
export function comparePaths(a: string, b: string): number {
  return compareCodePoints(a.replaceAll('/', '\0'), b.replaceAll('/', '\0'));
}
