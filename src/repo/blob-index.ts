import {
  closeSync,
  existsSync,
  statSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeSync,
  fsyncSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { BlobType, ID_SIZE } from './ids.js';
import type { Compression } from './compress.js';
import type { PackEntry } from './pack.js';

/**
 * The local blob index: blob ID -> (pack, offset, length, raw length, type, compression), for tens of millions
 * of blobs within a memory budget. A small LSM tree of fixed-width 48-byte records:
 *
 * - a memtable: an open-addressing hash table in one Buffer (no JS object per blob);
 * - sorted runs: files of records sorted by ID. A run small enough stays in memory; a big one is read with
 *   positioned reads guided by in-memory fence keys, behind a Bloom filter that answers most misses.
 *
 * This is a cache. The truth is the index objects on the targets; the cache directory can be deleted at any
 * time and is rebuilt from them (see repository.ts).
 */

export const RECORD = 48;
// record: id[32] | packNo u32 @32 | offset u32 @36 | length u32 @40 | rawLength u24 @44 | flags u8 @47
// flags: bit 0 = type (0 data, 1 tree), bits 1..2 = compression

export interface PackInfo {
  /** 32 hex characters. */
  id: string;
  type: BlobType;
  /** Size of the pack object (ciphertext) in bytes. */
  size: number;
  /** SHA-256 of the pack object. */
  sha256: string;
}

export interface BlobLocation {
  pack: PackInfo;
  packNo: number;
  offset: number;
  length: number;
  rawLength: number;
  type: BlobType;
  compression: Compression;
}

function writeRecord(buf: Buffer, at: number, id: Buffer, packNo: number, e: Omit<PackEntry, 'id'>): void {
  id.copy(buf, at, 0, ID_SIZE);
  buf.writeUInt32LE(packNo, at + 32);
  buf.writeUInt32LE(e.offset, at + 36);
  buf.writeUInt32LE(e.length, at + 40);
  buf.writeUIntLE(e.rawLength, at + 44, 3);
  buf[at + 47] = (e.type & 1) | ((e.compression & 3) << 1);
}

/** Open-addressing hash table of records, keyed by the (uniformly random) blob ID. */
class MemTable {
  buf: Buffer;
  cap: number;
  count = 0;

  constructor(cap = 1 << 12) {
    this.cap = cap;
    this.buf = Buffer.alloc(cap * RECORD);
  }

  get bytes(): number {
    return this.buf.length;
  }

  private slot(id: Buffer): number {
    let i = id.readUInt32LE(0) & (this.cap - 1);
    for (;;) {
      const at = i * RECORD;
      // An all-zero ID marks an empty slot (a keyed BLAKE3 output of 32 zero bytes does not happen).
      if (this.isEmpty(at)) return i;
      if (this.buf.compare(id, 0, ID_SIZE, at, at + ID_SIZE) === 0) return i;
      i = (i + 1) & (this.cap - 1);
    }
  }

  private isEmpty(at: number): boolean {
    for (let k = 0; k < ID_SIZE; k += 4) if (this.buf.readUInt32LE(at + k) !== 0) return false;
    return true;
  }

  get(id: Buffer): number | undefined {
    const i = this.slot(id);
    const at = i * RECORD;
    return this.isEmpty(at) ? undefined : at;
  }

  /** True when the next new record makes the table double. */
  get full(): boolean {
    return (this.count + 1) * 10 > this.cap * 7;
  }

  put(id: Buffer, packNo: number, e: Omit<PackEntry, 'id'>): void {
    if ((this.count + 1) * 10 > this.cap * 7) this.grow();
    const at = this.slot(id) * RECORD;
    if (this.isEmpty(at)) this.count++;
    writeRecord(this.buf, at, id, packNo, e);
  }

  private grow(): void {
    const old = this.buf;
    this.cap *= 2;
    this.buf = Buffer.alloc(this.cap * RECORD);
    this.count = 0;
    for (let at = 0; at < old.length; at += RECORD) {
      let empty = true;
      for (let k = 0; k < ID_SIZE; k += 4) if (old.readUInt32LE(at + k) !== 0) empty = false;
      if (empty) continue;
      const i = this.slot(old.subarray(at, at + ID_SIZE)) * RECORD;
      old.copy(this.buf, i, at, at + RECORD);
      this.count++;
    }
  }

  /** The records, sorted by ID, in a new buffer (gathered from the table: no intermediate copy). */
  sorted(): Buffer {
    const at = new Uint32Array(this.count);
    let n = 0;
    for (let o = 0; o < this.buf.length; o += RECORD) if (!this.isEmpty(o)) at[n++] = o;
    return gatherSorted(this.buf, at.subarray(0, n));
  }
}

/**
 * The records at offsets `at` of `buf`, sorted by their 32-byte ID, in a new buffer. Sorted by the first 8
 * bytes (as two u32 big-endian) then the full key: IDs are random, ties on 8 bytes are rare.
 */
function gatherSorted(buf: Buffer, at: Uint32Array): Buffer {
  const n = at.length;
  const order = new Uint32Array(n);
  const hi = new Uint32Array(n);
  const lo = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    order[i] = i;
    hi[i] = buf.readUInt32BE(at[i]!);
    lo[i] = buf.readUInt32BE(at[i]! + 4);
  }
  order.sort(
    (a, b) =>
      hi[a]! - hi[b]! ||
      lo[a]! - lo[b]! ||
      buf.compare(buf, at[a]!, at[a]! + ID_SIZE, at[b]!, at[b]! + ID_SIZE),
  );
  const out = Buffer.allocUnsafe(n * RECORD);
  for (let i = 0; i < n; i++) buf.copy(out, i * RECORD, at[order[i]!]!, at[order[i]!]! + RECORD);
  return out;
}

/** Sorts 48-byte records in place by their 32-byte ID. */
export function sortRecords(buf: Buffer): void {
  const at = new Uint32Array(buf.length / RECORD);
  for (let i = 0; i < at.length; i++) at[i] = i * RECORD;
  gatherSorted(buf, at).copy(buf);
}

const BLOCK_RECORDS = 128;
const BLOOM_BITS_PER_KEY = 10;
const BLOOM_HASHES = 6;
/**
 * Runs are kept in memory whole while all such runs together stay within this size; the others are read from
 * disk block by block (a handful of small runs, e.g. one per backup since the last compaction, stay fast).
 */
const IN_MEMORY_RUNS = 8 * 1024 * 1024;

class SortedRun {
  private fd?: number;
  private data?: Buffer;
  private readonly fences: Uint32Array; // two u32 (big-endian words of the ID) per block: the block's first key
  private readonly bloom: Uint32Array;
  private readonly bloomBits: number;
  readonly count: number;
  private readonly block = Buffer.alloc(BLOCK_RECORDS * RECORD);

  /** `memoryRoom`: bytes this run may take in memory (it is read from disk when bigger). */
  constructor(
    readonly file: string,
    memoryRoom = IN_MEMORY_RUNS,
  ) {
    const size = statSync(file).size;
    if (size % RECORD !== 0) throw new Error(`index run ${file} is damaged`);
    this.count = size / RECORD;
    const blocks = Math.ceil(this.count / BLOCK_RECORDS);
    this.fences = new Uint32Array(blocks * 2);
    this.bloomBits = Math.max(64, this.count * BLOOM_BITS_PER_KEY);
    this.bloom = new Uint32Array(Math.ceil(this.bloomBits / 32));
    const fd = openSync(file, 'r');
    const chunk = Buffer.alloc(BLOCK_RECORDS * RECORD * 64);
    let rec = 0;
    let pos = 0;
    for (;;) {
      const n = readSync(fd, chunk, 0, chunk.length, pos);
      if (n <= 0) break;
      for (let at = 0; at + RECORD <= n; at += RECORD, rec++) {
        if (rec % BLOCK_RECORDS === 0) {
          const b = rec / BLOCK_RECORDS;
          this.fences[b * 2] = chunk.readUInt32BE(at);
          this.fences[b * 2 + 1] = chunk.readUInt32BE(at + 4);
        }
        this.bloomAdd(chunk, at);
      }
      pos += n;
    }
    if (size <= memoryRoom) {
      this.data = readFileSync(file);
      closeSync(fd);
    } else {
      this.fd = fd;
    }
  }

  private bloomAdd(buf: Buffer, at: number): void {
    for (let k = 0; k < BLOOM_HASHES; k++) {
      const bit = buf.readUInt32LE(at + 8 + k * 4) % this.bloomBits;
      this.bloom[bit >>> 5]! |= 1 << (bit & 31);
    }
  }

  private bloomHas(id: Buffer): boolean {
    for (let k = 0; k < BLOOM_HASHES; k++) {
      const bit = id.readUInt32LE(8 + k * 4) % this.bloomBits;
      if ((this.bloom[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }

  /** Returns a buffer holding the record and its offset in it, or undefined. */
  find(id: Buffer): { buf: Buffer; at: number } | undefined {
    if (this.count === 0 || !this.bloomHas(id)) return undefined;
    const h = id.readUInt32BE(0);
    const l = id.readUInt32BE(4);
    // Last block whose first key <= id.
    let lo = 0;
    let hi = this.fences.length / 2 - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      const fh = this.fences[mid * 2]!;
      const fl = this.fences[mid * 2 + 1]!;
      if (fh < h || (fh === h && fl <= l)) lo = mid;
      else hi = mid - 1;
    }
    // Equal 8-byte prefixes may straddle a block boundary: look in the previous block too when needed.
    for (let b = lo; b >= 0; b--) {
      const first = b * BLOCK_RECORDS;
      const n = Math.min(BLOCK_RECORDS, this.count - first);
      let buf: Buffer;
      let base: number;
      if (this.data) {
        buf = this.data;
        base = first * RECORD;
      } else {
        readSync(this.fd!, this.block, 0, n * RECORD, first * RECORD);
        buf = this.block;
        base = 0;
      }
      let a = 0;
      let z = n - 1;
      while (a <= z) {
        const m = (a + z) >>> 1;
        const c = buf.compare(id, 0, ID_SIZE, base + m * RECORD, base + m * RECORD + ID_SIZE);
        if (c === 0) return { buf, at: base + m * RECORD };
        if (c > 0) z = m - 1;
        else a = m + 1;
      }
      const fh = this.fences[b * 2]!;
      const fl = this.fences[b * 2 + 1]!;
      if (fh !== h || fl !== l) break;
    }
    return undefined;
  }

  /** Bytes of the run held in memory. */
  get memoryBytes(): number {
    return this.data?.length ?? 0;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.data = undefined;
  }
}

interface CacheState {
  version: 1;
  /** Names of the index objects whose contents are in this cache. */
  indexObjects: string[];
  runs: string[];
}

export interface BlobIndexOptions {
  /** Bytes the memtable may use before it is written out as a sorted run (default 16 MiB). */
  memoryBudget?: number;
}

export class BlobIndex {
  private readonly packList: PackInfo[] = [];
  private readonly packNos = new Map<string, number>();
  private mem = new MemTable();
  private runs: SortedRun[] = [];
  private state: CacheState;
  private dirtyPacks = false;
  private readonly budget: number;

  private constructor(
    readonly dir: string | undefined,
    opts: BlobIndexOptions,
  ) {
    this.budget = opts.memoryBudget ?? 16 * 1024 * 1024;
    this.state = { version: 1, indexObjects: [], runs: [] };
  }

  /** An index kept only in memory (tests, one-off reads). */
  static inMemory(opts: BlobIndexOptions = {}): BlobIndex {
    return new BlobIndex(undefined, { memoryBudget: Number.MAX_SAFE_INTEGER, ...opts });
  }

  /** Opens (or creates) the cached index in `dir`. A damaged cache is discarded, never trusted. */
  static open(dir: string, opts: BlobIndexOptions = {}): BlobIndex {
    mkdirSync(dir, { recursive: true });
    const idx = new BlobIndex(dir, opts);
    try {
      idx.load();
    } catch {
      idx.reset();
    }
    return idx;
  }

  private load(): void {
    const stateFile = path.join(this.dir!, 'state.json');
    if (!existsSync(stateFile)) return;
    const state = JSON.parse(readFileSync(stateFile, 'utf8')) as CacheState;
    if (state.version !== 1 || !Array.isArray(state.runs) || !Array.isArray(state.indexObjects))
      throw new Error('bad state');
    const packsFile = path.join(this.dir!, 'packs.jsonl');
    const lines = existsSync(packsFile) ? readFileSync(packsFile, 'utf8').split('\n').filter(Boolean) : [];
    for (const line of lines) {
      const p = JSON.parse(line) as PackInfo;
      this.packNos.set(p.id, this.packList.length);
      this.packList.push(p);
    }
    for (const r of state.runs) {
      if (!/^run-[0-9a-f]{16}\.bin$/.test(r)) throw new Error('bad run name');
      this.runs.push(this.openRun(path.join(this.dir!, r)));
    }
    this.state = state;
  }

  /** Forgets everything (the cache is rebuilt from the targets' index objects). */
  reset(): void {
    for (const r of this.runs) r.close();
    this.runs = [];
    this.mem = new MemTable();
    this.packList.length = 0;
    this.packNos.clear();
    this.state = { version: 1, indexObjects: [], runs: [] };
    if (this.dir) {
      rmSync(this.dir, { recursive: true, force: true });
      mkdirSync(this.dir, { recursive: true });
    }
  }

  get indexObjects(): readonly string[] {
    return this.state.indexObjects;
  }

  markIndexObject(name: string): void {
    if (!this.state.indexObjects.includes(name)) this.state.indexObjects.push(name);
  }

  get packCount(): number {
    return this.packList.length;
  }

  packs(): readonly PackInfo[] {
    return this.packList;
  }

  packById(id: string): PackInfo | undefined {
    const n = this.packNos.get(id);
    return n === undefined ? undefined : this.packList[n];
  }

  /** Adds a pack and its blobs. Adding a pack already present is a no-op. */
  addPack(info: PackInfo, entries: readonly PackEntry[]): void {
    if (this.packNos.has(info.id)) return;
    const no = this.packList.length;
    this.packList.push(info);
    this.packNos.set(info.id, no);
    this.dirtyPacks = true;
    for (const e of entries) {
      // Spilled before the table would double past the budget: the memtable never exceeds it.
      if (this.dir && this.mem.full && this.mem.bytes * 2 > this.budget) this.spill();
      this.mem.put(e.id, no, e);
    }
    if (this.dir && this.mem.bytes > this.budget) this.spill();
  }

  has(id: Buffer): boolean {
    return this.lookup(id) !== undefined;
  }

  lookup(id: Buffer): BlobLocation | undefined {
    const at = this.mem.get(id);
    if (at !== undefined) return this.decode(this.mem.buf, at);
    for (let i = this.runs.length - 1; i >= 0; i--) {
      const hit = this.runs[i]!.find(id);
      if (hit) return this.decode(hit.buf, hit.at);
    }
    return undefined;
  }

  /** Number of blobs (counting a blob stored in two packs twice). */
  get blobCount(): number {
    return this.mem.count + this.runs.reduce((n, r) => n + r.count, 0);
  }

  private decode(buf: Buffer, at: number): BlobLocation {
    const packNo = buf.readUInt32LE(at + 32);
    const flags = buf[at + 47]!;
    return {
      pack: this.packList[packNo]!,
      packNo,
      offset: buf.readUInt32LE(at + 36),
      length: buf.readUInt32LE(at + 40),
      rawLength: buf.readUIntLE(at + 44, 3),
      type: (flags & 1) as BlobType,
      compression: ((flags >> 1) & 3) as Compression,
    };
  }

  /** Opens a run, in memory if the runs already in memory leave room for it. */
  private openRun(file: string): SortedRun {
    const used = this.runs.reduce((n, r) => n + r.memoryBytes, 0);
    return new SortedRun(file, Math.max(0, IN_MEMORY_RUNS - used));
  }

  /** Writes the memtable out as a sorted run (and merges runs when there are too many). */
  private spill(): void {
    if (!this.dir || this.mem.count === 0) return;
    const name = `run-${randomBytes(8).toString('hex')}.bin`;
    atomicWrite(path.join(this.dir, name), this.mem.sorted());
    this.runs.push(this.openRun(path.join(this.dir, name)));
    this.state.runs.push(name);
    this.mem = new MemTable();
    if (this.runs.length > 8) this.compact();
  }

  /** Merges every run into one (a streaming k-way merge: memory stays at one block per run). */
  private compact(): void {
    const name = `run-${randomBytes(8).toString('hex')}.bin`;
    const out = path.join(this.dir!, name);
    const tmp = `${out}.tmp`;
    const fd = openSync(tmp, 'w');
    const readers = this.state.runs.map((r) => new RunReader(path.join(this.dir!, r)));
    const outBuf = Buffer.alloc(RECORD * 4096);
    let n = 0;
    let last: Buffer | undefined;
    for (;;) {
      let best = -1;
      for (let i = 0; i < readers.length; i++) {
        const cur = readers[i]!.current();
        if (!cur) continue;
        if (
          best < 0 ||
          Buffer.compare(cur.subarray(0, ID_SIZE), readers[best]!.current()!.subarray(0, ID_SIZE)) < 0
        )
          best = i;
      }
      if (best < 0) break;
      const rec = readers[best]!.current()!;
      if (!last || !last.equals(rec.subarray(0, ID_SIZE))) {
        rec.copy(outBuf, n * RECORD);
        last = Buffer.from(rec.subarray(0, ID_SIZE));
        if (++n === 4096) {
          writeSync(fd, outBuf, 0, n * RECORD);
          n = 0;
        }
      }
      readers[best]!.advance();
    }
    if (n) writeSync(fd, outBuf, 0, n * RECORD);
    fsyncSync(fd);
    closeSync(fd);
    for (const r of readers) r.close();
    renameSync(tmp, out);
    for (const r of this.runs) r.close();
    const old = this.state.runs;
    this.runs = [];
    this.runs = [this.openRun(out)];
    this.state.runs = [name];
    this.writeState();
    for (const r of old) rmSync(path.join(this.dir!, r), { force: true });
  }

  /** Makes everything added so far durable in the cache directory. */
  persist(): void {
    if (!this.dir) return;
    this.spill();
    if (this.dirtyPacks) {
      atomicWrite(
        path.join(this.dir, 'packs.jsonl'),
        Buffer.from(this.packList.map((p) => JSON.stringify(p)).join('\n') + '\n'),
      );
      this.dirtyPacks = false;
    }
    this.writeState();
  }

  private writeState(): void {
    atomicWrite(path.join(this.dir!, 'state.json'), Buffer.from(JSON.stringify(this.state)));
  }

  close(): void {
    for (const r of this.runs) r.close();
  }

  /**
   * Every record in blob-ID order (a streaming merge of the runs and the sorted memtable; memory stays at
   * one block per run). A blob stored in two packs appears twice.
   */
  *records(): Generator<{ id: Buffer; loc: BlobLocation }> {
    const sources: { current(): Buffer | undefined; advance(): void; close(): void }[] = [];
    const mem = this.mem.sorted();
    let memAt = 0;
    sources.push({
      current: () => (memAt < mem.length ? mem.subarray(memAt, memAt + RECORD) : undefined),
      advance: () => {
        memAt += RECORD;
      },
      close: () => undefined,
    });
    for (const r of this.runs) sources.push(new RunReader(r.file));
    try {
      for (;;) {
        let best = -1;
        for (let i = 0; i < sources.length; i++) {
          const cur = sources[i]!.current();
          if (!cur) continue;
          if (
            best < 0 ||
            Buffer.compare(cur.subarray(0, ID_SIZE), sources[best]!.current()!.subarray(0, ID_SIZE)) < 0
          )
            best = i;
        }
        if (best < 0) return;
        const rec = Buffer.from(sources[best]!.current()!);
        sources[best]!.advance();
        yield { id: rec.subarray(0, ID_SIZE), loc: this.decode(rec, 0) };
      }
    } finally {
      for (const s of sources) s.close();
    }
  }
}

class RunReader {
  private readonly fd: number;
  private readonly buf = Buffer.alloc(RECORD * 1024);
  private len = 0;
  private at = 0;
  private pos = 0;
  constructor(file: string) {
    this.fd = openSync(file, 'r');
    this.fill();
  }
  private fill(): void {
    this.len = readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
    this.pos += this.len;
    this.at = 0;
  }
  current(): Buffer | undefined {
    if (this.at >= this.len) return undefined;
    return this.buf.subarray(this.at, this.at + RECORD);
  }
  advance(): void {
    this.at += RECORD;
    if (this.at >= this.len && this.len > 0) this.fill();
  }
  close(): void {
    closeSync(this.fd);
  }
}

function atomicWrite(file: string, data: Buffer): void {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
