import { IntegrityError } from '../errors.js';
import type { BlobReader } from '../repo/reader.js';
import { readStream, type StreamRef } from '../repo/stream-ref.js';
import { splitLines } from '../util/external-sort.js';

/**
 * Listings are JSON-lines streams (one entry per line, sorted by the source's key) stored as tree blobs.
 * These helpers turn entries into the byte stream the writer stores, and a stored listing back into entries.
 */

const PIECE = 256 * 1024;

/** Encodes entries as JSON lines, in pieces of ~256 KiB. */
export async function* encodeLines<T>(entries: AsyncIterable<T>): AsyncGenerator<Buffer> {
  let parts: string[] = [];
  let size = 0;
  for await (const e of entries) {
    const line = JSON.stringify(e);
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

/** Reads a listing back: each line parsed, checked by `check` (which throws on a malformed entry). */
export async function* readListing<T>(
  reader: BlobReader,
  ref: StreamRef,
  check: (e: unknown) => T,
  what: string,
): AsyncGenerator<T> {
  let n = 0;
  for await (const line of splitLines(readStream(reader, ref))) {
    n++;
    if (!line) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new IntegrityError(`${what}: line ${n} of the listing is not JSON`);
    }
    try {
      yield check(v);
    } catch (err) {
      throw new IntegrityError(`${what}: line ${n} of the listing: ${(err as Error).message}`);
    }
  }
}
