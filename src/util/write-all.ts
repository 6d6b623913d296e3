import { writeSync, writevSync } from 'node:fs';

/** Writes all of `pieces` to `fd` (one writev, then plain writes for whatever a short write left). */
export function writeAll(fd: number, pieces: Buffer[]): void {
  let n = writevSync(fd, pieces);
  for (const p of pieces) {
    if (n >= p.length) {
      n -= p.length;
      continue;
    }
    let off = n;
    n = 0;
    while (off < p.length) off += writeSync(fd, p, off, p.length - off);
  }
}
