import { checkName, showName } from '../names.js';
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
