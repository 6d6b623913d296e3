import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * Sorts any number of text records (no "\n" inside) within a memory budget: records are gathered into sorted
 * runs, runs that do not fit in memory are written to temporary files, and the runs are merged on the way
 * out. Used for directory listings of millions of entries and for the changes of big databases.
 */
export interface SortOptions {
  /** Approximate bytes of records held in memory before a run is written out. */
  memoryBudget?: number;
  /** Where run files go (default: the OS temp dir). */
  tmpDir?: string;
  /** Keep only the last of records with equal keys (in input order). */
  unique?: boolean;
  /**
   * Run files read at once, at most (default 16). Beyond that, runs are merged into bigger runs on disk as they
   * accumulate (groups of this many runs of the same size class), so that the memory of the final merge (one
   * read buffer per run) does not grow with the number of records.
   */
  fanIn?: number;
}

/** Read buffer of one run file while merging. */
const RUN_READ_BUFFER = 64 * 1024;
/** Write buffer of run files. */
const RUN_WRITE_BUFFER = 1024 * 1024;

export type KeyOf = (record: string) => string;

/** Byte order of UTF-8, which for strings equals code point order (JS's < compares UTF-16 code units). */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (0xD800-0xDFFF) encode code points above 0xFFFF: they sort after 0xE000-0xFFFF.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

export class ExternalSorter {
  private buf: { key: string; rec: string; n: number }[] = [];
  private bytes = 0;
  /** Run files, with their level: a level-L run holds about fanIn^L spills (levels never increase along the list). */
  private runs: { file: string; level: number }[] = [];
  private dir?: string;
  private counter = 0;
  private fileNo = 0;
  private readonly budget: number;
  private readonly fanIn: number;
  /** The most run files read at once so far (never more than `fanIn`). */
  maxRunsOpen = 0;
  /** The buffer run files are written through (made at the first spill). */
  private writeBuf?: Buffer;

  constructor(
    private readonly keyOf: KeyOf,
    private readonly opts: SortOptions = {},
  ) {
    this.budget = opts.memoryBudget ?? 32 * 1024 * 1024;
    this.fanIn = Math.max(2, opts.fanIn ?? 16);
  }

  /** Number of run files on disk. */
  get runCount(): number {
    return this.runs.length;
  }

  async add(record: string): Promise<void> {
    if (record.includes('\n')) throw new Error('external sort records cannot contain newlines');
    const key = this.keyOf(record);
    this.buf.push({ key, rec: record, n: this.counter++ });
    // What the record costs in the JS heap: two UTF-16 strings (the key is often a copy) and the holder.
    this.bytes += (record.length + (key === record ? 0 : key.length)) * 2 + 120;
    if (this.bytes >= this.budget) await this.spill();
  }

  private sortBuf(): void {
    this.buf.sort((a, b) => compareCodePoints(a.key, b.key) || a.n - b.n);
  }

  private async spill(): Promise<void> {
    this.sortBuf();
    const file = await this.writeRun(this.buf);
    this.runs.push({ file, level: 0 });
    this.buf = [];
    this.bytes = 0;
    // Like a counter in base fanIn: fanIn runs of one level become one run of the next.
    for (;;) {
      const n = this.runs.length;
      const level = this.runs[n - 1]!.level;
      if (n < this.fanIn || this.runs[n - this.fanIn]!.level !== level) break;
      await this.collapse(this.fanIn, level + 1);
    }
  }

  /**
   * Writes records (in order) as a run file: lines of `<input number>\t<record>`. Each record is encoded
   * straight into one reused buffer: joining lines into a string, then writing it, made three fresh copies of
   * every MiB (the join, its flattening, its UTF-8), each in new memory (a page fault per 4 KiB here: most of
   * the main thread's faults in a backup of 100k documents).
   */
  private async writeRun(
    records: Iterable<{ rec: string; n: number }> | AsyncIterable<{ rec: string; n: number }>,
  ): Promise<string> {
    this.dir ??= await mkdtemp(path.join(this.opts.tmpDir ?? os.tmpdir(), 'regbackup-sort-'));
    const file = path.join(this.dir, `run-${this.fileNo++}`);
    const fh = await open(file, 'w');
    try {
      let out = (this.writeBuf ??= Buffer.allocUnsafeSlow(RUN_WRITE_BUFFER));
      let at = 0;
      const flush = async () => {
        for (let done = 0; done < at;) done += (await fh.write(out, done, at - done)).bytesWritten;
        at = 0;
      };
      for await (const r of records) {
        // At most 3 UTF-8 bytes per UTF-16 code unit, the input number (<= 16 digits), a tab and a newline.
        const need = r.rec.length * 3 + 18;
        if (at + need > out.length) {
          await flush();
          if (need > out.length) out = Buffer.allocUnsafeSlow(need);
        }
        at += out.write(String(r.n), at, 'latin1');
        out[at++] = 0x09;
        at += out.write(r.rec, at, 'utf8');
        out[at++] = 0x0a;
      }
      await flush();
    } finally {
      await fh.close();
    }
    return file;
  }

  /**
   * Merges the last `count` runs into one run file of `level` (every record kept, with its input number: order,
   * stability and `unique` are decided by the final merge as before).
   */
  private async collapse(count: number, level: number): Promise<void> {
    const group = this.runs.slice(this.runs.length - count);
    const file = await this.writeRun(this.merge(group.map((r) => r.file)));
    await Promise.all(group.map((r) => rm(r.file, { force: true })));
    this.runs.splice(this.runs.length - count, count, { file, level });
  }

  /** The records in key order (stable: equal keys keep input order; with `unique`, only the last). */
  async *sorted(): AsyncGenerator<string> {
    try {
      let source: AsyncGenerator<{ key: string; rec: string; n: number }>;
      if (this.runs.length === 0) {
        this.sortBuf();
        const items = this.buf;
        this.buf = [];
        source = (async function* () {
          yield* items;
        })();
      } else {
        if (this.buf.length) await this.spill();
        // At most fanIn runs read at once: the smallest ones (at the end) merged first.
        while (this.runs.length > this.fanIn) {
          const count = Math.min(this.fanIn, this.runs.length - this.fanIn + 1);
          await this.collapse(count, this.runs[this.runs.length - count]!.level + 1);
        }
        source = this.merge(this.runs.map((r) => r.file));
      }
      let held: { key: string; rec: string } | undefined;
      for await (const r of source) {
        if (this.opts.unique) {
          if (held && held.key !== r.key) yield held.rec;
          held = r;
        } else yield r.rec;
      }
      if (held) yield held.rec;
    } finally {
      if (this.dir) await rm(this.dir, { recursive: true, force: true });
    }
  }

  /** The records of some run files in (key, input number) order. */
  private async *merge(files: string[]): AsyncGenerator<{ key: string; rec: string; n: number }> {
    this.maxRunsOpen = Math.max(this.maxRunsOpen, files.length);
    const readers = files.map((f) => lines(f, RUN_READ_BUFFER)[Symbol.asyncIterator]());
    const heads: ({ key: string; rec: string; n: number } | undefined)[] = [];
    const next = async (i: number) => {
      const r = await readers[i]!.next();
      if (r.done) return undefined;
      const tab = r.value.indexOf('\t');
      const rec = r.value.slice(tab + 1);
      return { key: this.keyOf(rec), rec, n: Number(r.value.slice(0, tab)) };
    };
    for (let i = 0; i < readers.length; i++) heads.push(await next(i));
    for (;;) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const h = heads[i];
        if (!h) continue;
        const b = best >= 0 ? heads[best]! : undefined;
        if (!b || compareCodePoints(h.key, b.key) < 0 || (h.key === b.key && h.n < b.n)) best = i;
      }
      if (best < 0) return;
      yield heads[best]!;
      heads[best] = await next(best);
    }
  }
}

/** Lines of a UTF-8 file, split on "\n" bytes (a multi-byte character is never cut). */
export async function* lines(file: string, readBuffer = 256 * 1024): AsyncGenerator<string> {
  yield* splitLines(createReadStream(file, { highWaterMark: readBuffer }));
}

/**
 * Splits a byte stream into lines. Works on bytes and decodes each whole line, so a character split across
 * two reads is decoded intact.
 */
export async function* splitLines(src: AsyncIterable<Buffer | Uint8Array>): AsyncGenerator<string> {
  let carry: Buffer | undefined;
  for await (const piece of src) {
    let buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    if (carry) {
      buf = Buffer.concat([carry, buf]);
      carry = undefined;
    }
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      yield buf.toString('utf8', start, nl);
      start = nl + 1;
    }
    if (start < buf.length) carry = Buffer.from(buf.subarray(start));
  }
  if (carry && carry.length) yield carry.toString('utf8');
}
