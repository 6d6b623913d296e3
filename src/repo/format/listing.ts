import { IntegrityError } from '../../errors.js';
import { RefusedName } from '../names.js';
import type { BlobReader } from '../reader.js';
import { chunkIds, type StreamRef } from '../stream-ref.js';

/**
 * Listings are JSON-lines streams (one entry per line, sorted by the source's key) stored as tree blobs.
 * These helpers turn entries into the byte stream the writer stores, and a stored listing back into entries.
 */

const PIECE = 256 * 1024;

/** Encodes entries as JSON lines, in pieces of ~256 KiB. */
export async function* encodeLines<T>(entries: AsyncIterable<T>): AsyncGenerator<Buffer> {
  yield* encodeRawLines(jsonLines(entries));
}

async function* jsonLines<T>(entries: AsyncIterable<T>): AsyncGenerator<string> {
  for await (const e of entries) yield JSON.stringify(e);
}

/** Encodes lines already in JSON (entries that are passed through unchanged), in pieces of ~256 KiB. */
export async function* encodeRawLines(lines: AsyncIterable<string>): AsyncGenerator<Buffer> {
  let parts: string[] = [];
  let size = 0;
  for await (const line of lines) {
    parts.push(line);
    size += line.length;
    if (size >= PIECE) {
      yield Buffer.from(parts.join('\n') + '\n');
      parts = [];
      size = 0;
    }
  }
  if (parts.length) yield Buffer.from(parts.join('\n') + '\n');
}

/** Chunks of a listing asked for at once (readMany reads runs of them from one pack with one request). */
const WINDOW = 64;

/**
 * The bytes of a stored listing, chunk by chunk, as `readStream` gives them, but read `WINDOW` chunks at a time
 * with `BlobReader.readMany`, one window ahead: a listing's chunks lie one after the other in few packs, and
 * reading them one request each cost more than everything else done with them. Checks the total size.
 */
export async function* readListingBytes(reader: BlobReader, ref: StreamRef): AsyncGenerator<Buffer> {
  let size = 0;
  let ids: Buffer[] = [];
  let ahead: Promise<Buffer[]> | undefined;
  const start = (batch: Buffer[]) => {
    const p = reader.readMany(batch);
    p.catch(() => undefined); // awaited below, in order; this only keeps an early failure from being "unhandled"
    return p;
  };
  const take = async function* (next: Promise<Buffer[]> | undefined) {
    const prev = ahead;
    ahead = next;
    if (prev) {
      for (const b of await prev) {
        size += b.length;
        yield b;
      }
    }
  };
  for await (const id of chunkIds(reader, ref)) {
    ids.push(Buffer.from(id));
    if (ids.length >= WINDOW) {
      const batch = ids;
      ids = [];
      yield* take(start(batch));
    }
  }
  yield* take(ids.length ? start(ids) : undefined);
  yield* take(undefined);
  if (size !== ref.size) throw new IntegrityError(`stream is ${size} bytes, its reference says ${ref.size}`);
}

/** An entry of a listing that its check refused for its name (src/repo/names.ts), and where it is. */
export interface RefusedEntry {
  /** The refusal: the name as stored, shown safely by `refused.message`, and why. */
  refused: RefusedName;
  /** 1-based line of the listing. */
  line: number;
}

/**
 * Reads a listing back: each line parsed, checked by `check` (which throws on a malformed entry). An entry
 * the check refuses for its name (it throws RefusedName) is passed to `onRefused` and skipped, so that one
 * bad name never stops the reading of the others; without `onRefused` it stops the read like any other
 * malformed entry (an IntegrityError naming the listing and the line).
 */
export async function* readListing<T>(
  reader: BlobReader,
  ref: StreamRef,
  check: (e: unknown) => T,
  what: string,
  onRefused?: (r: RefusedEntry) => void,
): AsyncGenerator<T> {
  for await (const { entry } of readListingLines(reader, ref, check, what, onRefused)) yield entry;
}

/** readListing, with each entry's line as stored (to pass an unchanged entry on without encoding it again). */
export async function* readListingLines<T>(
  reader: BlobReader,
  ref: StreamRef,
  check: (e: unknown) => T,
  what: string,
  onRefused?: (r: RefusedEntry) => void,
): AsyncGenerator<{ entry: T; line: string }> {
  for await (const batch of readListingBatches(reader, ref, check, what, onRefused)) yield* batch;
}

/**
 * readListingLines in batches (the entries of one stored piece at a time): a listing of millions of small
 * entries read one await per entry spends most of its time in the awaits.
 */
export async function* readListingBatches<T>(
  reader: BlobReader,
  ref: StreamRef,
  check: (e: unknown) => T,
  what: string,
  onRefused?: (r: RefusedEntry) => void,
): AsyncGenerator<{ entry: T; line: string }[]> {
  let n = 0;
  const parse = (line: string, out: { entry: T; line: string }[]) => {
    n++;
    if (!line) return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new IntegrityError(`${what}: line ${n} of the listing is not JSON`);
    }
    let entry: T;
    try {
      entry = check(v);
    } catch (err) {
      if (err instanceof RefusedName && onRefused) {
        onRefused({ refused: err, line: n });
        return;
      }
      throw new IntegrityError(`${what}: line ${n} of the listing: ${(err as Error).message}`);
    }
    out.push({ entry, line });
  };
  yield* lineBatches(readListingBytes(reader, ref), parse);
}

/**
 * The lines of a stream of pieces, handed to `parse` one at a time (without the newline; a line may span
 * pieces), and what it pushed yielded a piece at a time.
 */
export async function* lineBatches<T>(
  pieces: AsyncIterable<Buffer>,
  parse: (line: string, out: T[]) => void,
): AsyncGenerator<T[]> {
  let carry: Buffer | undefined;
  for await (const piece of pieces) {
    const buf = carry ? Buffer.concat([carry, piece]) : piece;
    carry = undefined;
    const out: T[] = [];
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      parse(buf.toString('utf8', start, nl), out);
      start = nl + 1;
    }
    if (start < buf.length) carry = Buffer.from(buf.subarray(start));
    if (out.length) yield out;
  }
  if (carry && carry.length) {
    const out: T[] = [];
    parse(carry.toString('utf8'), out);
    if (out.length) yield out;
  }
}
