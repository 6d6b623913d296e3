import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, openSync, rmSync } from 'node:fs';
import path from 'node:path';
import { IntegrityError } from '../errors.js';
import { AgeEncryptor, createHeader } from './age.js';
import { BlobType, ID_SIZE } from './ids.js';
import type { Compression } from './compress.js';
import { releaseNow } from '../util/release.js';
import { writeAll } from '../util/write-all.js';

/**
 * Packs (docs/FORMAT.md §9, "Packs"): one age file per pack; its plaintext is
 *
 *   blob* | entry[n] | n u32 LE | "RBPACK01"
 *
 * where each blob is stored back to back (compressed or raw) and each 48-byte entry is
 *
 *   type u8 | compression u8 | reserved u16 (0) | offset u32 | length u32 | rawLength u32 | id[32]
 *
 * (all little endian; offsets and lengths in plaintext bytes of the pack). The trailer makes a pack readable on
 * its own, with nothing but the identity; the index holds the same entries so that a reader needs no trailer.
 */
export const PACK_MAGIC = 'RBPACK01';
export const ENTRY_SIZE = 48;

export interface PackEntry {
  id: Buffer;
  type: BlobType;
  compression: Compression;
  offset: number;
  length: number;
  rawLength: number;
}

export interface FinishedPack {
  /** 16 random bytes, hex: the pack's name. */
  id: string;
  type: BlobType;
  /** The spool file holding the whole age file, and its size. */
  path: string;
  size: number;
  /** SHA-256 of `bytes`: lets anyone check a pack's integrity (and repair copy it) without keys. */
  sha256: Buffer;
  entries: PackEntry[];
}

export function packKey(type: BlobType, id: string): string {
  return `${type === BlobType.tree ? 'tree' : 'data'}/${id.slice(0, 2)}/${id}`;
}

export function encodeEntry(e: PackEntry, out: Buffer, at: number): void {
  out[at] = e.type;
  out[at + 1] = e.compression;
  out.writeUInt16LE(0, at + 2);
  out.writeUInt32LE(e.offset, at + 4);
  out.writeUInt32LE(e.length, at + 8);
  out.writeUInt32LE(e.rawLength, at + 12);
  e.id.copy(out, at + 16, 0, ID_SIZE);
}

export function decodeEntry(buf: Buffer, at: number): PackEntry {
  const type = buf[at]!;
  const compression = buf[at + 1]!;
  if (type > 1 || compression > 1 || buf.readUInt16LE(at + 2) !== 0)
    throw new IntegrityError('bad pack entry');
  return {
    type,
    compression,
    offset: buf.readUInt32LE(at + 4),
    length: buf.readUInt32LE(at + 8),
    rawLength: buf.readUInt32LE(at + 12),
    id: Buffer.from(buf.subarray(at + 16, at + 16 + ID_SIZE)),
  };
}

/**
 * Builds one pack: blobs are encrypted as they are added, and the ciphertext goes straight to a spool file
 * (through a small write buffer), so a pack never sits in memory whole; finish() seals it. The spool file is
 * what gets uploaded.
 */
export class PackBuilder {
  private readonly hash: Hash = createHash('sha256');
  private readonly entries: PackEntry[] = [];
  private plainSize = 0;
  private cipherSize = 0;
  /** Ciphertext not yet written: written with one writev per MiB (no copy into a write buffer). */
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private constructor(
    readonly type: BlobType,
    private readonly enc: AgeEncryptor,
    private readonly fd: number,
    readonly path: string,
  ) {}

  static async create(type: BlobType, recipients: readonly string[], spoolDir: string): Promise<PackBuilder> {
    const { header, fileKey } = await createHeader(recipients);
    const file = path.join(spoolDir, `pack-${randomBytes(8).toString('hex')}`);
    const fd = openSync(file, 'wx', 0o600);
    return new PackBuilder(type, new AgeEncryptor(header, fileKey), fd, file);
  }

  /** Plaintext bytes so far (without the trailer). */
  get size(): number {
    return this.plainSize;
  }

  get count(): number {
    return this.entries.length;
  }

  add(id: Buffer, compression: Compression, rawLength: number, stored: Buffer): PackEntry {
    const e: PackEntry = {
      id,
      type: this.type,
      compression,
      offset: this.plainSize,
      length: stored.length,
      rawLength,
    };
    this.entries.push(e);
    this.plainSize += stored.length;
    this.out(this.enc.push(stored));
    return e;
  }

  finish(): FinishedPack {
    const trailer = Buffer.alloc(this.entries.length * ENTRY_SIZE + 4 + 8);
    this.entries.forEach((e, i) => encodeEntry(e, trailer, i * ENTRY_SIZE));
    trailer.writeUInt32LE(this.entries.length, this.entries.length * ENTRY_SIZE);
    trailer.write(PACK_MAGIC, this.entries.length * ENTRY_SIZE + 4, 'latin1');
    this.out(this.enc.push(trailer));
    this.out(this.enc.finish());
    this.drain();
    closeSync(this.fd);
    return {
      id: randomBytes(16).toString('hex'),
      type: this.type,
      path: this.path,
      size: this.cipherSize,
      sha256: this.hash.digest(),
      entries: this.entries,
    };
  }

  /** Gives up: the spool file is removed. */
  discard(): void {
    closeSync(this.fd);
    rmSync(this.path, { force: true });
  }

  private out(bufs: Buffer[]): void {
    for (const b of bufs) {
      this.hash.update(b);
      this.cipherSize += b.length;
      this.pending.push(b);
      this.pendingLen += b.length;
    }
    if (this.pendingLen >= WRITE_SIZE) this.drain();
  }

  private drain(): void {
    if (this.pendingLen) writeAll(this.fd, this.pending);
    // Hashed and written: the segments' memory goes back now, not at the worker's next GC (src/util/release.ts).
    releaseNow(this.pending.filter((b) => !this.enc.isPreamble(b)));
    this.pending = [];
    this.pendingLen = 0;
  }
}

/** Bytes of ciphertext gathered before a write. */
const WRITE_SIZE = 1024 * 1024;

/** Reads the trailer of a decrypted pack: its entries, checked to lie inside the blob area. */
export function parsePackTrailer(plain: Buffer, what = 'pack'): PackEntry[] {
  if (plain.length < 12 || plain.subarray(plain.length - 8).toString('latin1') !== PACK_MAGIC) {
    throw new IntegrityError(`${what}: no pack trailer`);
  }
  const n = plain.readUInt32LE(plain.length - 12);
  const trailerStart = plain.length - 12 - n * ENTRY_SIZE;
  if (n > plain.length / ENTRY_SIZE || trailerStart < 0)
    throw new IntegrityError(`${what}: bad entry count ${n}`);
  const entries: PackEntry[] = [];
  for (let i = 0; i < n; i++) {
    const e = decodeEntry(plain, trailerStart + i * ENTRY_SIZE);
    if (e.offset + e.length > trailerStart)
      throw new IntegrityError(`${what}: entry ${i} points past the blobs`);
    entries.push(e);
  }
  return entries;
}
