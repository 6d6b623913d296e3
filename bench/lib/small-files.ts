/**
 * The tarball stores of the issue 11 benches (bench/scale-files.ts, bench/scale-ops.ts): N files of 0.5–20 KB
 * of random bytes behind a gzip magic (so the writer does not try to compress them, as with real tarballs), in
 * the registry layout `s<scope>/p<pkg>/-/p<pkg>-1.0.<v>.tgz` (10 versions a package, 500 packages a scope).
 * The same layout and sizes for the same N (the bytes are random: `randomFillSync`).
 */
import { randomFillSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** A small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const GZIP = Buffer.from([0x1f, 0x8b, 0x08, 0x00]);
const VERSIONS = 10;
const PER_SCOPE = 500;

/** Where file i of a store lives (a suffix makes another version of the same package). */
export function fileOf(i: number, suffix = ''): { dir: string; name: string } {
  const pkg = Math.floor(i / VERSIONS);
  const scope = `s${Math.floor(pkg / PER_SCOPE)
    .toString()
    .padStart(4, '0')}`;
  const name = `p${pkg}`;
  return { dir: path.join(scope, name, '-'), name: `${name}-1.0.${i % VERSIONS}${suffix}.tgz` };
}

/** A file's size: 512 B to 20 KiB. */
export function smallSize(r: () => number): number {
  return 512 + Math.floor(r() * (20 * 1024 - 512));
}

/** Writes the n files of a store into `dir` (which must not hold another); returns their total bytes. */
export function writeSmallStore(dir: string, n: number): number {
  const r = rng(n);
  const pool = Buffer.allocUnsafe(64 * 1024 * 1024);
  let at = pool.length;
  let bytes = 0;
  let lastDir = '';
  for (let i = 0; i < n; i++) {
    const f = fileOf(i);
    const full = path.join(dir, f.dir);
    if (full !== lastDir) mkdirSync(full, { recursive: true });
    lastDir = full;
    const size = smallSize(r);
    if (at + size > pool.length) {
      randomFillSync(pool);
      at = 0;
    }
    pool.set(GZIP, at);
    writeFileSync(path.join(full, f.name), pool.subarray(at, at + size));
    at += size;
    bytes += size;
  }
  return bytes;
}

/**
 * Adds a new version of every `every`-th package of a store of n files (file name suffix `suffix`, PRNG seed
 * `seed`); returns their paths.
 */
export function addVersions(store: string, n: number, every: number, suffix: string, seed: number): string[] {
  const r = rng(seed);
  const pool = Buffer.allocUnsafe(20 * 1024);
  const added: string[] = [];
  for (let i = 0; i < n; i += every) {
    const f = fileOf(i, suffix);
    const p = path.join(store, f.dir, f.name);
    const size = smallSize(r);
    randomFillSync(pool, 0, size);
    pool.set(GZIP, 0);
    writeFileSync(p, pool.subarray(0, size));
    added.push(p);
  }
  return added;
}
