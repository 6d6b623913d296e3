import { randomBytes } from 'node:crypto';
import { open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { IntegrityError } from '../../errors.js';
import { readListingBytes } from '../../repo/format/listing.js';
import type { DbSnapshot } from '../../repo/format/source-snapshots.js';
import {
  checkDocEntry,
  compareIds,
  countEntry,
  emptyCounts,
  type DocEntry,
  type ListingCounts,
} from '../../repo/format/couchdb-listing.js';
import { lines } from '../../util/external-sort.js';
import type { DbRun } from './context.js';

/** `_local` document IDs: their entries are dropped from a previous listing (read whole again each run). */
export const LOCAL_PREFIX = '_local/';

/**
 * What the merge gets of the previous listing, in order: runs of lines it keeps as they are, byte for byte,
 * without looking at them (`first`/`last`: the IDs of their first and last lines), and single lines it may
 * replace or drop (the previous entries of the documents asked for, and `_local` entries).
 */
export type PreviousItem =
  | { kind: 'run'; first: string; last: string; pieces: () => AsyncGenerator<Buffer> }
  | { kind: 'line'; id: string; line: string; entry: () => DocEntry };

/** An item as spooled: its place in the data file. */
type Spooled =
  | { k: 'r'; a: string; z: string; o: number; n: number }
  | { k: 'l'; id: string; o: number; n: number; at: number };

const PIECE = 256 * 1024;
const FLUSH = 1024 * 1024;

/** Appends to a file in large writes. */
class Appender {
  private parts: Buffer[] = [];
  private size = 0;
  written = 0;

  constructor(private readonly fh: FileHandle) {}

  add(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
    this.written += b.length;
  }

  async maybeFlush(): Promise<void> {
    if (this.size >= FLUSH) await this.flush();
  }

  async flush(): Promise<void> {
    if (!this.size) return;
    const parts = this.parts;
    this.parts = [];
    this.size = 0;
    // Written as they are (no copy into one buffer); a short write goes on from where it stopped.
    while (parts.length) {
      let n = (await this.fh.writev(parts)).bytesWritten;
      while (parts.length && n >= parts[0]!.length) n -= parts.shift()!.length;
      if (n > 0) parts[0] = parts[0]!.subarray(n);
    }
  }
}

/**
 * The previous listing of an incremental run, read once (docs/FORMAT.md §12.1): round 1 asks it for the
 * previous entry of each changed document (`entryOf`, in ID order), and the merge then gets the whole listing
 * from it (`items`). What is read is spooled to a local file as it goes: the lines of the changed documents
 * (and `_local` entries) each on their own, the lines between them as runs of raw bytes. A kept line is
 * neither decoded nor parsed: only its ID is read, from the line's start, to find the changed ones and to
 * check the order (an entry out of order is an IntegrityError). The lines were checked when they were
 * written, and the listing's chunks are verified by their keyed blob IDs when read.
 *
 * `counts` are the previous snapshot's; when those are not whole numbers (`countsValid`), every line is parsed
 * and counted instead, as it is read.
 */
export class PreviousListing {
  readonly counts: ListingCounts;
  private readonly recount: boolean;
  private readonly what: string;
  private readonly dataFile: string;
  /** The items spooled, as JSON lines in a file of their own (memory stays flat however many changed). */
  private readonly indexFile: string;
  private indexFh?: FileHandle;
  private indexOut?: Appender;
  private data?: FileHandle;
  private out?: Appender;
  private src?: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  private eof = false;
  private lineNo = 0;
  private last: string | undefined;
  /** The open run: its first and last IDs, where it starts in the data file. */
  private run?: { a: string; z: string; o: number };
  /** The next line, read but not yet taken (its ID, its bytes in `buf`). */
  private head?: { id: string; s: number; e: number; at: number };
  private done = false;

  constructor(
    private readonly dbRun: DbRun,
    private readonly previous: DbSnapshot,
    counts: ListingCounts,
    recount: boolean,
  ) {
    this.recount = recount;
    this.counts = recount ? emptyCounts() : counts;
    this.what = `previous listing of ${dbRun.cfg.name}/${dbRun.db}`;
    const name = `couchdb-previous-${randomBytes(8).toString('hex')}`;
    this.dataFile = path.join(dbRun.ctx.tmpDir, name);
    this.indexFile = path.join(dbRun.ctx.tmpDir, `${name}.items`);
  }

  private async start(): Promise<void> {
    if (this.out) return;
    this.data = await open(this.dataFile, 'w+');
    this.out = new Appender(this.data);
    this.indexFh = await open(this.indexFile, 'w');
    this.indexOut = new Appender(this.indexFh);
    this.src = readListingBytes(this.dbRun.ctx.reader!, this.previous.listing)[Symbol.asyncIterator]();
  }

  /**
   * The next line (its ID, its bytes in `buf`), read but not yet taken; null when `buf` holds no whole line
   * more (`refill` then).
   */
  private scan(): typeof this.head | null {
    if (this.head) return this.head;
    for (;;) {
      const nl = this.buf.indexOf(0x0a, this.pos);
      if (nl < 0) return null;
      const s = this.pos;
      this.pos = nl + 1;
      this.lineNo++;
      if (nl === s) {
        this.keepBytes(s, nl + 1); // a blank line: kept where it is (readers skip it)
        continue;
      }
      this.head = { id: this.idOf(s, nl), s, e: nl + 1, at: this.lineNo };
      return this.head;
    }
  }

  /** Reads the next piece of the listing (false at its end). The kept bytes of `buf` are handed on first. */
  private async refill(): Promise<boolean> {
    if (this.eof) return false;
    this.flushSpan();
    await this.out!.maybeFlush();
    await this.indexOut!.maybeFlush();
    const r = await this.src!.next();
    if (r.done) {
      this.eof = true;
      if (this.pos < this.buf.length) {
        // A last line without "\n": given one.
        this.buf = Buffer.concat([this.buf.subarray(this.pos), Buffer.from('\n')]);
        this.pos = 0;
        return true;
      }
      return false;
    }
    this.buf = this.pos < this.buf.length ? Buffer.concat([this.buf.subarray(this.pos), r.value]) : r.value;
    this.pos = 0;
    return true;
  }

  private async peek(): Promise<typeof this.head> {
    for (;;) {
      const h = this.scan();
      if (h !== null) return h;
      if (!(await this.refill())) return undefined;
    }
  }

  /** The ID of the line at buf[s, e) ("\n" excluded): read from its start (`{"id":"…"`), or the line parsed when it does not. */
  private idOf(s: number, e: number): string {
    const b = this.buf;
    let id: string | undefined;
    if (e - s > 8 && b[s] === 0x7b && b[s + 1] === 0x22 && b.toString('latin1', s, s + 7) === '{"id":"') {
      let esc = false;
      for (let i = s + 7; i < e; i++) {
        const c = b[i]!;
        if (c < 0x20) break; // a raw control character: not JSON (parsed whole below, and refused)
        if (c === 0x5c) {
          esc = true;
          i++;
        } else if (c === 0x22) {
          if (!esc) id = b.toString('utf8', s + 7, i);
          else {
            try {
              const v = JSON.parse(b.toString('utf8', s + 6, i + 1)) as unknown;
              if (typeof v === 'string') id = v;
            } catch {
              // parsed whole below
            }
          }
          break;
        }
      }
    }
    if (id === undefined || this.recount) {
      const entry = this.parse(b.toString('utf8', s, e), this.lineNo);
      if (id !== undefined && id !== entry.id)
        throw new IntegrityError(`${this.what}: line ${this.lineNo}: bad ID`);
      id = entry.id;
      if (this.recount) countEntry(this.counts, entry);
    }
    if (this.last !== undefined && compareIds(this.last, id) >= 0) {
      throw new IntegrityError(`${this.what}: ${JSON.stringify(id)} is out of order`);
    }
    this.last = id;
    return id;
  }

  private parse(line: string, at: number): DocEntry {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new IntegrityError(`${this.what}: line ${at} of the listing is not JSON`);
    }
    try {
      return checkDocEntry(v);
    } catch (err) {
      throw new IntegrityError(`${this.what}: line ${at} of the listing: ${(err as Error).message}`);
    }
  }

  /** Bytes of `buf` to spool, not yet handed to the appender (lines taken one after the other join up). */
  private span?: { s: number; e: number };

  private keepBytes(s: number, e: number): void {
    if (this.span && this.span.e === s) this.span.e = e;
    else {
      this.flushSpan();
      this.span = { s, e };
    }
  }

  private flushSpan(): void {
    if (!this.span) return;
    this.out!.add(this.buf.subarray(this.span.s, this.span.e));
    this.span = undefined;
  }

  /** Where the next spooled byte goes in the data file. */
  private offset(): number {
    return this.out!.written + (this.span ? this.span.e - this.span.s : 0);
  }

  /** Takes the head line into the open run. */
  private takeIntoRun(): void {
    const h = this.head!;
    this.head = undefined;
    if (!this.run) this.run = { a: h.id, z: h.id, o: this.offset() };
    else this.run.z = h.id;
    this.keepBytes(h.s, h.e);
  }

  private spooled(it: Spooled): void {
    this.indexOut!.add(Buffer.from(`${JSON.stringify(it)}\n`));
  }

  private closeRun(): void {
    if (!this.run) return;
    const n = this.offset() - this.run.o;
    this.spooled({ k: 'r', a: this.run.a, z: this.run.z, o: this.run.o, n });
    this.run = undefined;
  }

  /** Takes the head line as a line of its own; returns it (decoded). */
  private takeAlone(): string {
    const h = this.head!;
    this.head = undefined;
    this.closeRun();
    const line = this.buf.toString('utf8', h.s, h.e - 1);
    this.spooled({ k: 'l', id: h.id, o: this.offset(), n: h.e - h.s, at: h.at });
    this.keepBytes(h.s, h.e);
    return line;
  }

  /** Reads on up to `id` (exclusive), spooling what it passes. `_local` lines are kept alone. */
  private async advance(id: string | undefined): Promise<void> {
    for (;;) {
      const h = this.scan();
      if (h === null) {
        if (await this.refill()) continue;
        return;
      }
      if (!h || (id !== undefined && compareIds(h.id, id) >= 0)) return;
      if (h.id.startsWith(LOCAL_PREFIX)) this.takeAlone();
      else this.takeIntoRun();
    }
  }

  /**
   * The previous entry of `id` (undefined when it had none). IDs must be asked for in increasing order; the
   * listing is read up to them only.
   */
  async entryOf(id: string): Promise<DocEntry | undefined> {
    if (this.done) throw new Error('entryOf after items');
    await this.start();
    await this.advance(id);
    const h = await this.peek();
    if (!h || h.id !== id) return undefined;
    const at = h.at;
    return this.parse(this.takeAlone(), at);
  }

  /** The whole previous listing, in order, as runs and lines (reading the rest of it first). */
  async *items(): AsyncGenerator<PreviousItem> {
    await this.start();
    await this.advance(undefined);
    this.closeRun();
    this.flushSpan();
    await this.out!.flush();
    await this.indexOut!.flush();
    await this.indexFh!.close();
    this.indexFh = undefined;
    this.done = true;
    const fh = this.data!;
    const readAt = async (o: number, n: number): Promise<Buffer> => {
      const b = Buffer.allocUnsafe(n);
      for (let got = 0; got < n;) {
        const { bytesRead } = await fh.read(b, got, n - got, o + got);
        if (bytesRead === 0) throw new Error(`${this.dataFile}: short read`);
        got += bytesRead;
      }
      return b;
    };
    for await (const l of lines(this.indexFile)) {
      const it = JSON.parse(l) as Spooled;
      if (it.k === 'r') {
        yield {
          kind: 'run',
          first: it.a,
          last: it.z,
          pieces: async function* () {
            for (let at = 0; at < it.n; at += PIECE)
              yield await readAt(it.o + at, Math.min(PIECE, it.n - at));
          },
        };
      } else {
        const line = (await readAt(it.o, it.n)).toString('utf8', 0, it.n - 1);
        yield { kind: 'line', id: it.id, line, entry: () => this.parse(line, it.at) };
      }
    }
  }

  /** Stops reading and removes the spool. */
  async close(): Promise<void> {
    this.done = true;
    await this.src?.return?.(undefined);
    await this.data?.close();
    this.data = undefined;
    await this.indexFh?.close();
    this.indexFh = undefined;
    await rm(this.dataFile, { force: true });
    await rm(this.indexFile, { force: true });
  }
}
