import { hkdfSync } from 'node:crypto';

/**
 * Chunking (docs/FORMAT.md §7, "Chunking").
 *
 * - `cdc`: FastCDC with normalized chunking (level 2) over a 32-bit gear hash whose table is derived from the
 *   repository secret, so that chunk boundaries (and thus chunk sizes, visible to a storage provider through
 *   pack offsets) do not depend on content alone. Used for JSON (packuments, listings), which changes by
 *   insertions: only the chunks around an edit change.
 * - `cdc` with `snap`: the same, but a cut moves forward to just after the next `snap` byte (at most to
 *   `max`). Listings use it with "\n": their chunks hold whole lines, so a chunk seen before is a set of
 *   entries seen before (prune and check skip it).
 * - `fixed`: cut every `size` bytes. Used for data that is already compressed and immutable (tarballs): CDC
 *   finds nothing to share inside gzip streams, and identical files still get identical chunks.
 */
export type ChunkerParams =
  { kind: 'cdc'; min: number; avg: number; max: number; snap?: number } | { kind: 'fixed'; size: number };

export const MAX_CHUNK = 16 * 1024 * 1024 - 1;

export function validateChunkerParams(p: ChunkerParams): void {
  if (p.kind === 'fixed') {
    if (!Number.isInteger(p.size) || p.size < 1024 || p.size > MAX_CHUNK)
      throw new Error('bad fixed chunk size');
    return;
  }
  const ok =
    Number.isInteger(p.min) &&
    Number.isInteger(p.avg) &&
    Number.isInteger(p.max) &&
    p.min >= 64 &&
    p.min < p.avg &&
    p.avg < p.max &&
    p.max <= MAX_CHUNK &&
    (p.avg & (p.avg - 1)) === 0 &&
    (p.snap === undefined || (Number.isInteger(p.snap) && p.snap >= 0 && p.snap <= 255));
  if (!ok)
    throw new Error('bad CDC chunker parameters (need 64 <= min < avg < max <= 16 MiB, avg a power of two)');
}

/** The 256-entry gear table, from the chunker key: HKDF-SHA256(key, "", "regbackup/v1 gear", 1024) as u32 LE. */
export function gearTable(chunkerKey: Buffer): Int32Array {
  const bytes = Buffer.from(hkdfSync('sha256', chunkerKey, Buffer.alloc(0), 'regbackup/v1 gear', 1024));
  const t = new Int32Array(256);
  for (let i = 0; i < 256; i++) t[i] = bytes.readInt32LE(i * 4);
  return t;
}

/** A mask with `bits` one-bits at the top of a 32-bit word (the bits that depend on the most input bytes). */
function topMask(bits: number): number {
  return (((1 << bits) - 1) << (32 - bits)) | 0;
}

/**
 * Incremental chunker: feed buffers of a stream in order, get the lengths of the chunks completed so far;
 * `finish()` gives the length of the last chunk. Boundaries do not depend on how the stream was split.
 */
export class Chunker {
  private n = 0; // bytes in the current chunk so far
  private h = 0; // gear hash of the current chunk
  private seeking = false; // `snap`: a cut point was found, the chunk ends after the next snap byte
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(
    private readonly p: ChunkerParams,
    private readonly gear: Int32Array,
  ) {
    validateChunkerParams(p);
    if (p.kind === 'cdc') {
      const bits = Math.round(Math.log2(p.avg));
      this.maskS = topMask(bits + 2);
      this.maskL = topMask(bits - 2);
    } else {
      this.maskS = this.maskL = 0;
    }
  }

  /** Lengths of the chunks that end inside `buf` (the first one may have started in an earlier buffer). */
  push(buf: Uint8Array): number[] {
    const out: number[] = [];
    const len = buf.length;
    let i = 0;
    let n = this.n;
    if (this.p.kind === 'fixed') {
      const size = this.p.size;
      while (i < len) {
        const take = Math.min(size - n, len - i);
        n += take;
        i += take;
        if (n === size) {
          out.push(n);
          n = 0;
        }
      }
      this.n = n;
      return out;
    }
    const { min, avg, max } = this.p;
    const gear = this.gear;
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = this.h;
    const snap = this.p.snap;
    while (i < len) {
      if (this.seeking) {
        // Move the cut forward to just after the next snap byte (a newline: chunks hold whole lines), but
        // never beyond max.
        const at = buf.indexOf(snap!, i);
        const room = max - n;
        if (at >= 0 && at - i < room) {
          n += at + 1 - i;
          i = at + 1;
        } else if (len - i >= room) {
          n += room;
          i += room;
        } else {
          // No snap byte in the rest of this buffer: the chunk goes on in the next one.
          n += len - i;
          break;
        }
        out.push(n);
        n = 0;
        h = 0;
        this.seeking = false;
        continue;
      }
      if (n < min) {
        const skip = Math.min(min - n, len - i);
        n += skip;
        i += skip;
        if (n < min) break;
      }
      let cut = false;
      if (n < avg) {
        // Before the average size: the stricter mask (normalized chunking pulls sizes towards avg).
        const stop = Math.min(len, i + (avg - n));
        const i0 = i;
        while (i < stop) {
          h = ((h << 1) + gear[buf[i]!]!) | 0;
          i++;
          if ((h & maskS) === 0) {
            cut = true;
            break;
          }
        }
        n += i - i0;
      }
      if (!cut && n >= avg && n < max) {
        const stop = Math.min(len, i + (max - n));
        const i0 = i;
        while (i < stop) {
          h = ((h << 1) + gear[buf[i]!]!) | 0;
          i++;
          if ((h & maskL) === 0) {
            cut = true;
            break;
          }
        }
        n += i - i0;
      }
      if (cut && snap !== undefined && n < max && buf[i - 1] !== snap) {
        this.seeking = true;
        continue;
      }
      if (cut || n >= max) {
        out.push(n);
        n = 0;
        h = 0;
      }
    }
    this.h = h;
    this.n = n;
    return out;
  }

  /** Length of the final chunk (0 when the stream ended on a boundary), and resets for the next stream. */
  finish(): number {
    const n = this.n;
    this.n = 0;
    this.h = 0;
    this.seeking = false;
    return n;
  }
}
