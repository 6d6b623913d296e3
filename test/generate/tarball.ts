/**
 * npm-style package tarballs (`.tgz`): a ustar archive of `package/...` entries, gzip'd.
 *
 * Headers are written like npm's packer writes them (node-tar, `portable: true`): mode 0644, uid/gid 0,
 * empty user/group names, mtime 1985-10-26T08:15:00Z. The gzip stream is composed from segments so large
 * tarballs are cheap to make: text entries go through zlib's deflate (level 6 by default, byte-aligned
 * with a sync flush), the payload of a large binary entry (pseudo-random bytes) is emitted as deflate
 * "stored" blocks — which is what zlib itself emits for incompressible input — and the CRC-32 and size
 * trailer cover the whole archive. The result is one ordinary gzip member that `gunzip`, `tar` and
 * node's zlib read normally.
 */

import { createHash } from 'node:crypto';
import { constants as zc, crc32, deflateRawSync } from 'node:zlib';
import { keystreamCipher, type SeedPart } from './rng.js';

/** mtime npm gives every entry of a packed tarball. */
export const NPM_MTIME = new Date('1985-10-26T08:15:00.000Z');

export interface TarFile {
  /** path inside the archive, e.g. `package/index.js` */
  path: string;
  data: Buffer;
}

/** A large entry whose content is pseudo-random bytes (e.g. a prebuilt `.node`/`.wasm` binary). */
export interface BinaryEntry {
  path: string;
  /** bytes of content */
  size: number;
  /** seed path for the content (deterministic) */
  seed: readonly SeedPart[];
  /** fixed first bytes of the content (a file magic); counted in `size` */
  magic?: Buffer;
}

export interface BuiltTarball {
  data: Buffer;
  /** sha1 hex of `data` (npm `dist.shasum`) */
  shasum: string;
  /** `sha512-<base64>` of `data` (npm `dist.integrity`) */
  integrity: string;
  fileCount: number;
  /** sum of the entries' content sizes (npm `dist.unpackedSize`) */
  unpackedSize: number;
}

function writeOctal(buf: Buffer, off: number, len: number, value: number): void {
  // len-1 octal digits then NUL, like tar-stream/node-tar
  const s = value.toString(8).padStart(len - 1, '0');
  if (s.length > len - 1) throw new Error(`tar field overflow: ${value}`);
  buf.write(s, off, len - 1, 'ascii');
  buf[off + len - 1] = 0;
}

/** A 512-byte ustar header for a regular file. */
export function ustarHeader(path: string, size: number, mtime: Date = NPM_MTIME, mode = 0o644): Buffer {
  const h = Buffer.alloc(512);
  let name = path;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = path.lastIndexOf('/', 154);
    if (cut <= 0 || Buffer.byteLength(path.slice(cut + 1)) > 100)
      throw new Error(`path too long for ustar: ${path}`);
    prefix = path.slice(0, cut);
    name = path.slice(cut + 1);
  }
  h.write(name, 0, 100, 'utf8');
  writeOctal(h, 100, 8, mode);
  writeOctal(h, 108, 8, 0); // uid
  writeOctal(h, 116, 8, 0); // gid
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, Math.floor(mtime.getTime() / 1000));
  h.fill(0x20, 148, 156); // checksum placeholder: spaces
  h[156] = 0x30; // '0' regular file
  h.write('ustar\u000000', 257, 8, 'ascii');
  writeOctal(h, 329, 8, 0); // devmajor
  writeOctal(h, 337, 8, 0); // devminor
  h.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += h[i]!;
  h.write(sum.toString(8).padStart(6, '0'), 148, 6, 'ascii');
  h[154] = 0;
  h[155] = 0x20;
  return h;
}

const ZERO_PAD = Buffer.alloc(1024);

function pad512(n: number): number {
  return (512 - (n % 512)) % 512;
}

/** Uncompressed tar bytes for text entries (header + content + padding each). */
function tarEntries(files: readonly TarFile[]): Buffer[] {
  const out: Buffer[] = [];
  for (const f of files) {
    out.push(ustarHeader(f.path, f.data.length), f.data);
    const p = pad512(f.data.length);
    if (p) out.push(ZERO_PAD.subarray(0, p));
  }
  return out;
}

const STORED_MAX = 65535;

function storedOverhead(n: number): number {
  return 5 * Math.max(1, Math.ceil(n / STORED_MAX));
}

export interface TarballOptions {
  /** zlib level for the text entries (npm uses 9; default 6 here for speed) */
  level?: number;
  /**
   * Aim for this many bytes of gzip output when a binary entry is present: its size is chosen to fill
   * the difference (the result lands within a few bytes).
   */
  targetSize?: number;
  /**
   * Build into a per-thread scratch buffer: the returned `data` is only valid until the next call with
   * `scratch` (saves allocating and first-touching fresh memory for every tarball).
   */
  scratch?: boolean;
}

/** Gzip header bytes as zlib writes them (mtime 0, OS 3 = Unix, XFL from the level). */
function gzipHeader(level: number): Buffer {
  const xfl = level >= 9 ? 2 : level <= 1 ? 4 : 0;
  return Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, xfl, 0x03]);
}

let scratchBuf: Buffer = Buffer.alloc(0);
const ZERO_BLOCK = Buffer.alloc(STORED_MAX);

/**
 * Builds a `.tgz` from text entries and, optionally, one large binary entry after them. With
 * `targetSize` and a binary entry whose `size` is 0 (or negative), the binary's size is computed so
 * the gzip output is about `targetSize` bytes.
 */
export function buildTarball(
  files: readonly TarFile[],
  binary?: BinaryEntry,
  opts: TarballOptions = {},
): BuiltTarball {
  const level = opts.level ?? 6;
  const header = gzipHeader(level);
  const textTar = Buffer.concat(tarEntries(files));
  let unpackedSize = 0;
  for (const f of files) unpackedSize += f.data.length;
  let fileCount = files.length;

  // segments: [raw, deflated] pairs, and the binary payload (stored blocks) between them
  let head: { raw: Buffer; out: Buffer }[];
  let tail: { raw: Buffer; out: Buffer } | null = null;
  let size = 0;
  if (!binary) {
    const all = Buffer.concat([textTar, ZERO_PAD]);
    head = [{ raw: all, out: deflateRawSync(all, { level }) }];
  } else {
    const dText = deflateRawSync(textTar, { level, finishFlush: zc.Z_SYNC_FLUSH });
    size = binary.size;
    if (size <= 0) {
      // header ~60 B and trailer ~40 B once deflated; 8 B gzip trailer
      const fixed = header.length + dText.length + 60 + 40 + 8;
      const room = (opts.targetSize ?? 0) - fixed;
      size = Math.max(64, room - storedOverhead(room));
    }
    const hdr = ustarHeader(binary.path, size);
    head = [
      { raw: textTar, out: dText },
      { raw: hdr, out: deflateRawSync(hdr, { level, finishFlush: zc.Z_SYNC_FLUSH }) },
    ];
    const t = Buffer.concat([ZERO_PAD.subarray(0, pad512(size)), ZERO_PAD]);
    tail = { raw: t, out: deflateRawSync(t, { level }) };
    unpackedSize += size;
    fileCount += 1;
  }

  let total = header.length + 8;
  for (const s of head) total += s.out.length;
  if (binary) total += size + storedOverhead(size) + tail!.out.length;
  let data: Buffer;
  if (opts.scratch) {
    if (scratchBuf.length < total)
      scratchBuf = Buffer.allocUnsafe(Math.max(total, scratchBuf.length * 2, 1 << 20));
    data = scratchBuf.subarray(0, total);
  } else {
    data = Buffer.allocUnsafe(total);
  }
  const sha1 = createHash('sha1');
  const sha512 = createHash('sha512');
  let off = 0;
  let hashed = 0;
  const hashUpTo = (end: number): void => {
    const view = data.subarray(hashed, end);
    sha1.update(view);
    sha512.update(view);
    hashed = end;
  };
  let crc = 0;
  let isize = 0;
  off += header.copy(data, off);
  for (const s of head) {
    off += s.out.copy(data, off);
    crc = crc32(s.raw, crc);
    isize = (isize + s.raw.length) >>> 0;
  }
  if (binary) {
    // the binary payload: keystream written straight into place, block by block, hashed while hot
    const cipher = keystreamCipher(binary.seed);
    let pos = 0;
    do {
      const len = Math.min(STORED_MAX, size - pos);
      data[off] = 0x00; // BFINAL=0, BTYPE=00 (stored); the rest of the byte is alignment padding
      data.writeUInt16LE(len, off + 1);
      data.writeUInt16LE(~len & 0xffff, off + 3);
      off += 5;
      const ks = cipher.update(len === STORED_MAX ? ZERO_BLOCK : ZERO_BLOCK.subarray(0, len));
      if (pos === 0 && binary.magic) binary.magic.copy(ks, 0, 0, Math.min(binary.magic.length, len));
      ks.copy(data, off);
      crc = crc32(ks, crc);
      off += len;
      pos += len;
      hashUpTo(off);
    } while (pos < size);
    isize = (isize + size) >>> 0;
    off += tail!.out.copy(data, off);
    crc = crc32(tail!.raw, crc);
    isize = (isize + tail!.raw.length) >>> 0;
  }
  data.writeUInt32LE(crc >>> 0, off);
  data.writeUInt32LE(isize, off + 4);
  off += 8;
  if (off !== total) throw new Error(`tarball assembly: wrote ${off} of ${total} bytes`);
  hashUpTo(off);

  return {
    data,
    shasum: sha1.digest('hex'),
    integrity: `sha512-${sha512.digest('base64')}`,
    fileCount,
    unpackedSize,
  };
}
