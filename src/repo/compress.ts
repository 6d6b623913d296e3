import { createRequire } from 'node:module';
import { IntegrityError } from '../errors.js';

/**
 * Compression of blobs (docs/FORMAT.md §8, "Compression"): zstd for data that compresses, nothing for data that
 * is already compressed (gzip'd tarballs): those are recognised by their magic bytes and stored raw without
 * spending CPU on a futile attempt; anything else is compressed and kept raw if it saves less than 5%.
 */
export const enum Compression {
  none = 0,
  zstd = 1,
}

interface DCtx {
  decompress(dst: Uint8Array, src: Uint8Array): number;
}
interface CCtx {
  setParameter(param: number, value: number): void;
  compress2(dst: Uint8Array, src: Uint8Array): number;
}
interface Binding {
  CCtx: new () => CCtx;
  DCtx: new () => DCtx;
  CParameter: { compressionLevel: number };
  compressBound(size: number): number;
}

// The native binding directly: it decompresses into a buffer of the exact expected size, so a hostile frame
// can never make us allocate more than the length recorded for the blob.
const binding = createRequire(import.meta.url)('zstd-napi/binding') as Binding;

const COMPRESSED_MAGIC: readonly number[][] = [
  [0x1f, 0x8b], // gzip (npm tarballs)
  [0x28, 0xb5, 0x2f, 0xfd], // zstd
  [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], // xz
  [0x42, 0x5a, 0x68], // bzip2
  [0x50, 0x4b, 0x03, 0x04], // zip
  [0x89, 0x50, 0x4e, 0x47], // png
  [0xff, 0xd8, 0xff], // jpeg
  [0x52, 0x49, 0x46, 0x46], // webp/riff
  [0x47, 0x49, 0x46, 0x38], // gif
];

export function looksCompressed(data: Uint8Array): boolean {
  return COMPRESSED_MAGIC.some((m) => data.length >= m.length && m.every((b, i) => data[i] === b));
}

export class BlobCompressor {
  private readonly cctx = new binding.CCtx();
  private scratch = Buffer.alloc(0);

  constructor(level: number) {
    this.cctx.setParameter(binding.CParameter.compressionLevel, level);
  }

  /**
   * Returns the bytes to store and how they are compressed. `hint` "raw" skips compression (the data is known
   * to be compressed already); "try" compresses unless the magic bytes say it is pointless.
   */
  compress(data: Buffer, hint: 'try' | 'raw'): { bytes: Buffer; compression: Compression } {
    if (hint === 'raw' || data.length < 64 || looksCompressed(data))
      return { bytes: data, compression: Compression.none };
    const z = this.zstd(data);
    if (z.length >= data.length * 0.95) return { bytes: data, compression: Compression.none };
    return { bytes: z, compression: Compression.zstd };
  }

  /** zstd, unconditionally (one frame with the content size in its header). */
  zstd(data: Buffer): Buffer {
    const bound = binding.compressBound(data.length);
    if (this.scratch.length < bound) this.scratch = Buffer.allocUnsafe(Math.max(bound, 256 * 1024));
    const n = this.cctx.compress2(this.scratch, data);
    return Buffer.from(this.scratch.subarray(0, n));
  }
}

const dctx = new binding.DCtx();

/** Decompresses a blob whose uncompressed length is known; anything else is an IntegrityError. */
export function decompressBlob(data: Buffer, compression: number, rawLength: number): Buffer {
  if (compression === Compression.none) {
    if (data.length !== rawLength)
      throw new IntegrityError(`stored length ${data.length} != recorded ${rawLength}`);
    return data;
  }
  if (compression !== Compression.zstd) throw new IntegrityError(`unknown compression ${compression}`);
  const out = Buffer.allocUnsafe(rawLength);
  let n: number;
  try {
    n = dctx.decompress(out, data);
  } catch (err) {
    throw new IntegrityError(`zstd data is corrupt: ${(err as Error).message}`);
  }
  if (n !== rawLength)
    throw new IntegrityError(`zstd data decompressed to ${n} bytes, expected ${rawLength}`);
  return out;
}

let metaCompressor: BlobCompressor | undefined;

/** Whole-buffer zstd (level 3) for metadata objects (snapshots, index objects). */
export function compressAll(data: Buffer): Buffer {
  metaCompressor ??= new BlobCompressor(3);
  return metaCompressor.zstd(data);
}
