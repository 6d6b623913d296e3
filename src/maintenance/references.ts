import { IntegrityError, RegbackupError } from '../errors.js';
import type { CouchSourceSnapshot, TarballSourceSnapshot } from '../repo/format/source-snapshots.js';
import type { BlobReader } from '../repo/reader.js';
import type { Repository } from '../repo/repository.js';
import { loadSnapshot, type SnapshotInfo, type SnapshotManifest } from '../repo/snapshot.js';
import { chunkIds, validateRef, type StreamRef } from '../repo/stream-ref.js';
import { ObjectNotFoundError, type ObjectStore } from '../store/types.js';
import { deletedKeys, loadMarks } from './marks.js';
import { checkDocEntry } from '../repo/format/couchdb-listing.js';
import { checkEntryData } from '../repo/format/tarball-listing.js';
import { ExternalSorter } from '../util/external-sort.js';
import { nameProblem, showName } from '../repo/names.js';

const MAX_REFUSED_LISTED = 100;
/** Bytes of blob IDs the reference scan keeps in memory before it sorts them into a run on disk. */
export const REFERENCE_SORT_BUDGET = 16 * 1024 * 1024;

/**
 * Every blob the given snapshots need, as a sorted stream of hex IDs (external sort: memory stays bounded).
 * Listings are chunked at line ends, so a listing chunk met in an earlier snapshot stands for entries
 * already counted and is not read again: the cost of scanning 30 daily snapshots is about one listing plus
 * what changed.
 */
export interface ReferenceStats {
  snapshots: number;
  listingChunks: number;
  listingChunksRead: number;
  entries: number;
  /** Tarball entries whose names a restore refuses (src/repo/names.ts): their data is still referenced. */
  refusedNames: number;
  /** The first of them: where, which name (escaped), why. */
  refused: { where: string; name: string; reason: string }[];
}

export interface References {
  /** Sorted, unique hex blob IDs. */
  ids: AsyncGenerator<string>;
  stats: ReferenceStats;
}

/**
 * A snapshot that was listed, or undefined when it has been forgotten since (`forget` records the snapshots
 * it deletes before deleting them). A listed snapshot gone without such a record is a real loss: loud.
 */
export async function loadListedSnapshot(
  repo: Repository,
  store: ObjectStore,
  info: SnapshotInfo,
): Promise<SnapshotManifest | undefined> {
  try {
    return await loadSnapshot(repo, store, info);
  } catch (err) {
    if (!(err instanceof ObjectNotFoundError)) throw err;
    if (deletedKeys(await loadMarks(repo, store)).has(info.key)) return undefined;
    throw new IntegrityError(
      `snapshot ${info.id} was listed on ${store.name} but is gone, and no forget recorded its deletion`,
    );
  }
}

export async function scanReferences(
  repo: Repository,
  reader: BlobReader,
  store: ObjectStore,
  snapshots: readonly SnapshotInfo[],
  tmpDir: string,
): Promise<References> {
  // 16 MiB (as the sorter counts: ~250 bytes per ID, ~65k IDs a run): a million documents make ~20 runs on
  // disk, merged in one pass; the heap stays small beside the rest of check and prune.
  const sorter = new ExternalSorter((r) => r, { tmpDir, unique: true, memoryBudget: REFERENCE_SORT_BUDGET });
  const stats: ReferenceStats = {
    snapshots: 0,
    listingChunks: 0,
    listingChunksRead: 0,
    entries: 0,
    refusedNames: 0,
    refused: [],
  };
  const seenUnits = new Set<string>();
  const seenRefs = new Set<string>();

  /** Adds every blob of a stream: its chunks, and the blobs holding an indirect chunk list. */
  const addRef = async (ref: StreamRef) => {
    validateRef(ref);
    if (ref.chunks) {
      for (const c of ref.chunks) await sorter.add(c);
      return;
    }
    await addRef(ref.indirect!);
    for await (const id of chunkIds(reader, ref)) await sorter.add(id.toString('hex'));
  };

  /** Adds a listing's blobs and, for each line-aligned unit of chunks not seen before, its entries' blobs. */
  const addListing = async (ref: StreamRef, onEntry: (e: unknown) => Promise<void>, what: string) => {
    const key = JSON.stringify(ref);
    if (seenRefs.has(key)) return; // the very same listing (an unchanged database, a carried-over source)
    seenRefs.add(key);
    if (ref.indirect) await addRef(ref.indirect);
    let unit: Buffer[] = [];
    let unitIds: string[] = [];
    const flush = async () => {
      const k = unitIds.join('');
      unitIds = [];
      const parts = unit;
      unit = [];
      if (seenUnits.has(k)) return;
      seenUnits.add(k);
      const text = Buffer.concat(parts).toString('utf8');
      for (const line of text.split('\n')) {
        if (!line) continue;
        let v: unknown;
        try {
          v = JSON.parse(line);
        } catch {
          throw new IntegrityError(`${what}: a listing line is not JSON`);
        }
        stats.entries++;
        try {
          await onEntry(v);
        } catch (err) {
          // A malformed entry is damage to report (check names it), not a bug.
          if (err instanceof RegbackupError) throw err;
          throw new IntegrityError(`${what}: a listing entry is malformed: ${(err as Error).message}`);
        }
      }
    };
    for await (const id of chunkIds(reader, ref)) {
      const hex = id.toString('hex');
      await sorter.add(hex);
      stats.listingChunks++;
      // A chunk that formed a whole unit before (it ends a line, so its bytes are that unit's) is skipped
      // without even being read, when it starts a unit here too.
      if (unitIds.length === 0 && seenUnits.has(hex)) continue;
      unitIds.push(hex);
      const bytes = await reader.read(Buffer.from(id));
      stats.listingChunksRead++;
      unit.push(bytes);
      if (bytes[bytes.length - 1] === 0x0a) await flush();
    }
    if (unit.length) await flush();
  };

  for (const info of snapshots) {
    const m = await loadListedSnapshot(repo, store, info);
    if (!m) continue; // forgotten since it was listed: it needs nothing any more
    stats.snapshots++;
    for (const src of m.sources) {
      if (src.kind === 'couchdb') {
        for (const db of (src as CouchSourceSnapshot).databases) {
          if (db.security) await addRef(db.security);
          await addListing(
            db.listing,
            async (v) => {
              const e = checkDocEntry(v);
              for (const leaf of e.leaves) {
                await addRef(leaf.body);
                for (const a of leaf.atts ?? []) await addRef(a.data);
              }
            },
            `snapshot ${info.id} ${src.name}/${db.name}`,
          );
        }
      } else if (src.kind === 'tarballs') {
        await addListing(
          (src as TarballSourceSnapshot).listing,
          async (v) => {
            // Whatever the entry's name (a restore may refuse it): its data is referenced.
            await addRef(checkEntryData(v));
            const path = (v as { path?: unknown }).path;
            const reason = nameProblem(path);
            if (reason !== undefined && stats.refusedNames++ < MAX_REFUSED_LISTED)
              stats.refused.push({
                where: `snapshot ${info.id.slice(0, 12)} ${src.name}`,
                name: showName(path),
                reason,
              });
          },
          `snapshot ${info.id} ${src.name}`,
        );
      } else {
        // Not knowing what a source refers to, prune could delete what it needs: refuse.
        throw new IntegrityError(
          `snapshot ${info.id} holds a source of unknown kind ${JSON.stringify(src.kind)}; refusing to prune (upgrade regbackup)`,
        );
      }
    }
  }
  return { ids: sorter.sorted(), stats };
}
