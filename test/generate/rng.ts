/**
 * Deterministic pseudo-random numbers for the registry generator.
 *
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit state) seeded through cyrb128, a
 * string hash: `Rng.derive(seed, 'pkg', 17, 'v', 3)` gives an independent stream for every (seed, path),
 * so one package's or one version's randomness never depends on how much another one consumed.
 */

import { createCipheriv, createHash, type Cipheriv } from 'node:crypto';

export type SeedPart = string | number;

function cyrb128(str: string): [number, number, number, number] {
  let h1 = 1779033703,
    h2 = 3144134277,
    h3 = 1013904242,
    h4 = 2773480762;
  for (let i = 0; i < str.length; i++) {
    const k = str.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

export function seedKey(parts: readonly SeedPart[]): string {
  return parts.map((p) => (typeof p === 'number' ? `#${p}` : p)).join('\u0000');
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spareNormal: number | undefined;

  constructor(key: string) {
    [this.a, this.b, this.c, this.d] = cyrb128(key);
    for (let i = 0; i < 12; i++) this.u32();
  }

  static derive(...parts: SeedPart[]): Rng {
    return new Rng(seedKey(parts));
  }

  /** Uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(arr: readonly T[]): T {
    if (arr.length === 0) throw new Error('pick from an empty array');
    return arr[this.int(arr.length)]!;
  }

  /** Index into an array of `n` with a Zipf-like skew (low indices much more likely). */
  zipfIndex(n: number, skew = 1.1): number {
    // inverse-transform of a continuous power law on [1, n+1)
    const u = this.next();
    if (skew === 1) return Math.min(n - 1, Math.floor(Math.exp(u * Math.log(n + 1))) - 1);
    const a = 1 - skew;
    const x = Math.pow(1 + u * (Math.pow(n + 1, a) - 1), 1 / a);
    return Math.min(n - 1, Math.max(0, Math.floor(x) - 1));
  }

  pickZipf<T>(arr: readonly T[], skew = 1.1): T {
    return arr[this.zipfIndex(arr.length, skew)]!;
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.spareNormal !== undefined) {
      const s = this.spareNormal;
      this.spareNormal = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Log-normal with the given median and sigma (of the underlying normal). */
  logNormal(median: number, sigma: number): number {
    return median * Math.exp(sigma * this.normal());
  }

  /** Exponential with the given mean. */
  exponential(mean: number): number {
    let u = 0;
    while (u === 0) u = this.next();
    return -Math.log(u) * mean;
  }

  hex(nBytes: number): string {
    let s = '';
    for (let i = 0; i < nBytes; i += 4) s += this.u32().toString(16).padStart(8, '0');
    return s.slice(0, nBytes * 2);
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/**
 * `n` deterministic pseudo-random bytes (AES-128-CTR keystream keyed by SHA-256 of the seed path): a few
 * GB/s, used for the incompressible parts of tarballs.
 */
export function keystream(n: number, ...parts: SeedPart[]): Buffer {
  const out = keystreamCipher(parts).update(Buffer.alloc(n));
  return out;
}

/** The cipher behind `keystream`: feed it zeros (in chunks of any size) to get the same bytes. */
export function keystreamCipher(parts: readonly SeedPart[]): Cipheriv {
  const digest = createHash('sha256').update(seedKey(parts)).digest();
  return createCipheriv('aes-128-ctr', digest.subarray(0, 16), digest.subarray(16, 32));
}
