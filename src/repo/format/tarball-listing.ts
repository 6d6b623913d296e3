import { IntegrityError } from '../../errors.js';
import { checkName, RefusedName, showName } from '../names.js';
import { validateRef, type StreamRef } from '../stream-ref.js';
import { lineBatches } from './listing.js';

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
 * A whole line exactly as this version writes it for a file of a directory store — {"path":"…","size":N,
 * "mtime":T,"data":{"size":N,"chunks":["<64 hex>",…]}} and then, in this order, an optional "sha1", "sha512"
 * and "flag" — read without JSON.parse: a listing of millions of files is read on every incremental run, and
 * its unchanged lines are only compared and passed on. The pattern is anchored at both ends, so a line that
 * matches holds a well-formed data reference and no other key (no second "path" that JSON.parse would take
 * instead); its data size must equal its size. Any other line (an ETag, an indirect reference, another order,
 * anything malformed) is parsed and checked whole.
 */
const LINE =
  /^\{"path":"((?:[^"\\]|\\.)*)","size":(0|[1-9]\d{0,15}),"mtime":(-?(?:0|[1-9]\d{0,16})(?:\.\d+)?),"data":\{"size":(0|[1-9]\d{0,15}),"chunks":\[(?:"[0-9a-f]{64}"(?:,"[0-9a-f]{64}")*)?\]\}(?:,"sha1":"[0-9a-f]{40}")?(?:,"sha512":"[A-Za-z0-9+/]{86}==")?(?:,"flag":"checksum-mismatch")?\}$/;

/**
 * The lines of a tarball listing, in batches (one stored piece at a time). Every line's name is checked by the
 * name rule (a refused one goes to `onRefused` and is skipped); a line written as this version writes it is
 * checked whole by its shape (LINE) and parsed only when the entry is used (`entryOf`), any other is parsed
 * and checked at once.
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
    const m = LINE.exec(line);
    try {
      if (m && m[2] === m[4]) {
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
      throw namedLine(err, what, n);
    }
  };
  yield* lineBatches(chunks, parse);
}

/** A failure to read line `n`, as an IntegrityError that names the line (once). */
function namedLine(err: unknown, what: string, n: number): IntegrityError {
  const prefix = `${what}: line ${n} of the listing`;
  if (err instanceof IntegrityError && err.message.startsWith(prefix)) return err;
  return new IntegrityError(`${prefix}: ${(err as Error).message}`);
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
      throw namedLine(err, what, l.n);
    }
    if (l.entry.path !== l.head.path || l.entry.size !== l.head.size || l.entry.mtime !== l.head.mtime)
      throw new IntegrityError(`${what}: line ${l.n} of the listing: its head does not match its entry`);
  }
  return l.entry;
}
