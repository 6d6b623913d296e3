import { IntegrityError } from '../../errors.js';
import { checkName, RefusedName, showName } from '../names.js';
import { validateRef, type StreamRef } from '../stream-ref.js';

/**
 * One file of a tarball listing (docs/FORMAT.md, "Tarball listings"): JSON lines sorted by `comparePaths`.
 */
export interface TarballEntry {
  path: string;
  size: number;
  /** Modification time (ms since the epoch), for the incremental check. */
  mtime: number;
  /** S3 sources: the object's ETag, for the incremental check. */
  etag?: string;
  /**
   * SHA-1 of the file, hex (npm's dist.shasum), computed when a packument of the run refers to the file (to
   * check it); checked again at restore. Every file is in any case verified at restore by its keyed chunk IDs.
   */
  sha1?: string;
  /** SHA-512 of the file, base64 (as in dist.integrity): only when the packument recorded no shasum. */
  sha512?: string;
  /** Set when the file did not match its packument's dist.shasum / dist.integrity at backup time. */
  flag?: 'checksum-mismatch';
  data: StreamRef;
}

/**
 * A listing entry, checked: its name by the name rule (src/repo/names.ts; a refused name throws RefusedName,
 * which readers report and skip), its fields and its data reference.
 */
export function checkEntry(v: unknown): TarballEntry {
  if (!v || typeof v !== 'object') throw new Error('not an object');
  checkName((v as TarballEntry).path);
  checkEntryData(v);
  return v as TarballEntry;
}

/**
 * The fields and data reference of a listing entry, whatever its name: what prune and check need (the data
 * of an entry whose name a restore would refuse is still referenced).
 */
export function checkEntryData(v: unknown): StreamRef {
  const e = v as TarballEntry;
  if (!e || typeof e !== 'object') throw new Error('not an object');
  // Named only in an error: showName costs more than the checks, and every entry of a listing comes here.
  const what = () => (typeof e.path === 'string' ? showName(e.path) : 'an entry');
  if (
    !Number.isSafeInteger(e.size) ||
    e.size < 0 ||
    typeof e.mtime !== 'number' ||
    (e.sha1 !== undefined && !/^[0-9a-f]{40}$/.test(e.sha1))
  ) {
    throw new Error(`bad entry for ${what()}`);
  }
  validateRef(e.data);
  if (e.data.size !== e.size) throw new Error(`size of ${what()} does not match its data`);
  return e.data;
}

/** What the incremental check of a file needs from its previous entry. */
export interface EntryHead {
  path: string;
  size: number;
  mtime: number;
  etag?: string;
}

/**
 * A line of a previous listing, for the incremental check: its head (path, size, modification time, ETag),
 * the line as stored (passed on as it is when the file is unchanged), its place, and the whole entry, parsed
 * and checked — at once for a line not written as this version writes it, else on demand (`entryOf`).
 */
export interface ListingLine {
  head: EntryHead;
  line: string;
  /** 1-based line of the listing. */
  n: number;
  entry?: TarballEntry;
}

/**
 * The head of a line as written by this version ({"path":"…","size":…,"mtime":…,"data":{…}…}), read without
 * parsing the line: a listing of millions of files is read on every incremental run, and its unchanged lines
 * are only compared and passed on. Any other line (an ETag, a path with quotes, another order) is parsed whole.
 */
const HEAD = /^\{"path":"((?:[^"\\]|\\.)*)","size":(\d{1,16}),"mtime":(-?\d{1,17}(?:\.\d+)?),"data":\{/;

/**
 * The lines of a tarball listing, in batches (one stored piece at a time). Every line's name is checked by the
 * name rule (a refused one goes to `onRefused` and is skipped) and its size and time are numbers; the rest
 * of an entry (its data reference) is checked when the entry is used (`entryOf`), not for a line passed on
 * unchanged: that line was checked when it was written, and `check` and restore check every line.
 */
export async function* readListingLines(
  chunks: AsyncIterable<Buffer>,
  what: string,
  onRefused?: (r: { refused: RefusedName; line: number }) => void,
): AsyncGenerator<ListingLine[]> {
  let n = 0;
  const parse = (line: string, out: ListingLine[]) => {
    n++;
    if (!line) return;
    const m = line.includes('"etag":') ? null : HEAD.exec(line);
    try {
      if (m) {
        const path = m[1]!.includes('\\') ? (JSON.parse(`"${m[1]!}"`) as string) : m[1]!;
        checkName(path);
        out.push({ head: { path, size: Number(m[2]), mtime: Number(m[3]) }, line, n });
        return;
      }
      const entry = parseEntry(line, what, n);
      out.push({ head: entry, line, n, entry });
    } catch (err) {
      if (err instanceof RefusedName && onRefused) {
        onRefused({ refused: err, line: n });
        return;
      }
      if (err instanceof IntegrityError) throw err;
      throw new IntegrityError(`${what}: line ${n} of the listing: ${(err as Error).message}`);
    }
  };
  let carry: Buffer | undefined;
  for await (const piece of chunks) {
    const buf = carry ? Buffer.concat([carry, piece]) : piece;
    carry = undefined;
    const out: ListingLine[] = [];
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
    const out: ListingLine[] = [];
    parse(carry.toString('utf8'), out);
    if (out.length) yield out;
  }
}

function parseEntry(line: string, what: string, n: number): TarballEntry {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new IntegrityError(`${what}: line ${n} of the listing is not JSON`);
  }
  return checkEntry(v);
}

/** The whole entry of a listing line, parsed and checked (an IntegrityError naming the line if malformed). */
export function entryOf(l: ListingLine, what: string): TarballEntry {
  if (!l.entry) {
    try {
      l.entry = parseEntry(l.line, what, l.n);
    } catch (err) {
      if (err instanceof IntegrityError) throw err;
      throw new IntegrityError(`${what}: line ${l.n} of the listing: ${(err as Error).message}`);
    }
    if (l.entry.path !== l.head.path || l.entry.size !== l.head.size || l.entry.mtime !== l.head.mtime)
      throw new IntegrityError(`${what}: line ${l.n} of the listing: its head does not match its entry`);
  }
  return l.entry;
}
