import type { TarballExpectation } from './source-snapshots.js';
import { IntegrityError } from '../../errors.js';
import { validateRef, type StreamRef } from '../stream-ref.js';
import { compareCodePoints } from '../../util/external-sort.js';
import { comparePaths } from './order.js';

/**
 * A CouchDB listing (docs/FORMAT.md §12.1, "CouchDB sources"): JSON lines, one document per line, sorted by
 * `comparePaths(id)` (code point order, "/" lowest):
 *
 *   {"id": "<doc id>", "rev": "<winning rev>", "deleted": <winner deleted?>, "local"?: true,
 *    "leaves": [{"rev": "…", "deleted": <bool>, "body": <StreamRef of the leaf's JSON>,
 *                "atts"?: [{"name", "type", "digest", "length", "revpos", "data": <StreamRef>,
 *                           "encoding"?, "encodedLength"?}],
 *                "ancestors"?: ["<parent rev>", "<oldest rev of the history>"]}, …]}
 *
 * Leaves are in CouchDB's order: the winner first (a non-deleted leaf before a deleted one, then the
 * longer history, then the greater revision hash). `atts` is omitted when a leaf has none. `_local`
 * documents carry `"local": true` and one leaf.
 */
export interface AttEntry {
  name: string;
  type?: string;
  digest: string;
  length: number;
  revpos?: number;
  data: StreamRef;
  /** Set when CouchDB stores the attachment compressed (the data is always the identity bytes). */
  encoding?: string;
  encodedLength?: number;
}

export interface LeafEntry {
  rev: string;
  deleted: boolean;
  body: StreamRef;
  atts?: AttEntry[];
  /**
   * Revisions of the leaf's history (`_revisions` of its body) a restore must find in the destination's
   * revision tree: the parent, then the oldest revision when it is another one. Absent for a history of one
   * revision, and in lines written by earlier builds of format version 1 (their histories go unchecked).
   */
  ancestors?: string[];
}

export interface DocEntry {
  id: string;
  rev: string;
  deleted: boolean;
  local?: true;
  leaves: LeafEntry[];
}

/** A fetched document on its way to the listing: the entry and the tarballs its winning body names. */
export interface FetchedRecord {
  e: DocEntry;
  x?: TarballExpectation[];
}

function revPos(rev: string): number {
  const n = Number.parseInt(rev, 10);
  return Number.isSafeInteger(n) ? n : 0;
}

function revHash(rev: string): string {
  const d = rev.indexOf('-');
  return d < 0 ? rev : rev.slice(d + 1);
}

/** CouchDB's leaf order: negative when `a` wins over `b`. */
export function compareLeaves(
  a: { rev: string; deleted: boolean },
  b: { rev: string; deleted: boolean },
): number {
  if (a.deleted !== b.deleted) return a.deleted ? 1 : -1;
  const pa = revPos(a.rev);
  const pb = revPos(b.rev);
  if (pa !== pb) return pb - pa;
  return compareCodePoints(revHash(b.rev), revHash(a.rev));
}

/** Listing order of document IDs. IDs with NUL are never listed, so this is a strict order. */
export function compareIds(a: string, b: string): number {
  return comparePaths(a, b);
}

/** The key under which the external sorter orders a record (code point order of it = `compareIds`). */
export function sortKey(id: string): string {
  return id.replaceAll('/', '\0');
}

/** Records for the external sorter: `<JSON id>\t<JSON payload>` (JSON never has a raw tab). */
export function encodeRecord(id: string, payload: unknown): string {
  return `${JSON.stringify(id)}\t${JSON.stringify(payload)}`;
}

export function recordKey(rec: string): string {
  return sortKey(JSON.parse(rec.slice(0, rec.indexOf('\t'))) as string);
}

export function recordPayload<T>(rec: string): T {
  return JSON.parse(rec.slice(rec.indexOf('\t') + 1)) as T;
}

function isStr(v: unknown): v is string {
  return typeof v === 'string';
}

function checkAtt(v: unknown): AttEntry {
  const a = v as AttEntry;
  if (!a || typeof a !== 'object' || !isStr(a.name) || !isStr(a.digest)) throw new Error('bad attachment');
  if (!Number.isSafeInteger(a.length) || a.length < 0) throw new Error(`bad length of attachment ${a.name}`);
  validateRef(a.data);
  if (a.data.size !== a.length) throw new Error(`size of attachment ${a.name} does not match its data`);
  return a;
}

/** `ancestors` as FORMAT §12.1 has them: the parent (generation one below), then an older oldest one, if any. */
function validAncestors(rev: string, a: unknown): boolean {
  if (!Array.isArray(a) || a.length < 1 || a.length > 2 || !a.every(isStr)) return false;
  const [parent, oldest] = a as string[];
  if (revPos(parent!) !== revPos(rev) - 1 || revPos(parent!) < 1) return false;
  return oldest === undefined || (revPos(oldest) >= 1 && revPos(oldest) < revPos(parent!));
}

/** Checks one line of a CouchDB listing (throws on a malformed entry). */
export function checkDocEntry(v: unknown): DocEntry {
  const e = v as DocEntry;
  if (!e || typeof e !== 'object' || !isStr(e.id) || e.id.includes('\0')) throw new Error('bad document ID');
  if (!isStr(e.rev) || typeof e.deleted !== 'boolean') throw new Error(`bad entry for ${e.id}`);
  if (!Array.isArray(e.leaves) || e.leaves.length === 0) throw new Error(`no leaves for ${e.id}`);
  for (const l of e.leaves) {
    if (!l || typeof l !== 'object' || !isStr(l.rev) || typeof l.deleted !== 'boolean') {
      throw new Error(`bad leaf of ${e.id}`);
    }
    validateRef(l.body);
    if (l.atts !== undefined) {
      if (!Array.isArray(l.atts)) throw new Error(`bad attachments of ${e.id}`);
      l.atts.forEach(checkAtt);
    }
    if (l.ancestors !== undefined && !validAncestors(l.rev, l.ancestors))
      throw new Error(`bad ancestors of ${e.id} revision ${l.rev}`);
  }
  if (e.leaves[0]!.rev !== e.rev) throw new Error(`the first leaf of ${e.id} is not its winner`);
  return e;
}

/** Wraps a listing so that an entry out of order (a corrupt or foreign listing) is an error, not a bad merge. */
export async function* inOrder<T extends { id: string }>(
  src: AsyncIterable<T>,
  what: string,
): AsyncGenerator<T> {
  let last: string | undefined;
  for await (const e of src) {
    if (last !== undefined && compareIds(last, e.id) >= 0) {
      throw new IntegrityError(`${what}: ${JSON.stringify(e.id)} is out of order`);
    }
    last = e.id;
    yield e;
  }
}

/**
 * The document ID of a listing line, read without parsing the rest of it: every line is written by
 * JSON.stringify of a DocEntry, so it begins `{"id":"…"`. Undefined for a line that does not (then it is
 * parsed whole).
 */
export function lineId(line: string): string | undefined {
  if (!line.startsWith('{"id":"')) return undefined;
  for (let i = 7; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x5c) i++;
    else if (c === 0x22) {
      try {
        const id = JSON.parse(line.slice(6, i + 1)) as unknown;
        return typeof id === 'string' ? id : undefined;
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

/** inOrder, for entries read with their lines. */
export async function* inOrderLines<T extends { id: string }>(
  src: AsyncIterable<{ entry: T; line: string }>,
  what: string,
): AsyncGenerator<{ entry: T; line: string }> {
  let last: string | undefined;
  for await (const l of src) {
    if (last !== undefined && compareIds(last, l.entry.id) >= 0) {
      throw new IntegrityError(`${what}: ${JSON.stringify(l.entry.id)} is out of order`);
    }
    last = l.entry.id;
    yield l;
  }
}

/** Counts of a listing, as in DbSnapshot. */
export interface ListingCounts {
  docCount: number;
  deletedCount: number;
  conflictCount: number;
  attachmentCount: number;
  attachmentBytes: number;
  bodyBytes: number;
  localCount: number;
}

export function emptyCounts(): ListingCounts {
  return {
    docCount: 0,
    deletedCount: 0,
    conflictCount: 0,
    attachmentCount: 0,
    attachmentBytes: 0,
    bodyBytes: 0,
    localCount: 0,
  };
}

export function countEntry(c: ListingCounts, e: DocEntry): void {
  for (const l of e.leaves) {
    c.bodyBytes += l.body.size;
    for (const a of l.atts ?? []) {
      c.attachmentCount++;
      c.attachmentBytes += a.length;
    }
  }
  if (e.local) {
    c.localCount++;
    return;
  }
  if (e.deleted) c.deletedCount++;
  else c.docCount++;
  if (e.leaves.filter((l) => !l.deleted).length > 1) c.conflictCount++;
}
