import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { encodeRawLines, readListingLines } from '../../repo/format/listing.js';
import type { BackupContext } from '../types.js';
import type { DbSnapshot } from '../../repo/format/source-snapshots.js';
import { writeStream, type StreamRef } from '../../repo/stream-ref.js';
import { ExternalSorter } from '../../util/external-sort.js';
import type { DbRun } from './context.js';
import {
  checkDocEntry,
  compareIds,
  countEntry,
  emptyCounts,
  inOrderLines,
  recordPayload,
  type DocEntry,
  type FetchedRecord,
  type ListingCounts,
} from '../../repo/format/couchdb-listing.js';

const SORT_BUDGET = 8 * 1024 * 1024;

/** The tarball expectations of one read, sorted externally by tarball path (listing order). */
export class ExpectationSorter {
  private readonly sorter: ExternalSorter;
  count = 0;

  constructor(tmpDir: string) {
    this.sorter = new ExternalSorter((r) => (JSON.parse(r) as { path: string }).path.replaceAll('/', '\0'), {
      tmpDir,
      memoryBudget: SORT_BUDGET,
    });
  }

  async add(e: unknown): Promise<void> {
    await this.sorter.add(JSON.stringify(e));
    this.count++;
  }

  /** Writes the sorted JSON lines to a file in `dir` (undefined when there are none). */
  async toFile(dir: string): Promise<string | undefined> {
    if (this.count === 0) {
      await this.discard();
      return undefined;
    }
    const file = path.join(dir, `couchdb-expectations-${randomBytes(8).toString('hex')}.jsonl`);
    const sorted = this.sorter.sorted();
    const lines = async function* () {
      for await (const line of sorted) yield `${line}\n`;
    };
    await pipeline(Readable.from(lines()), createWriteStream(file));
    return file;
  }

  /** Drops them (removing the sorter's temporary files). */
  async discard(): Promise<void> {
    for await (const _ of this.sorter.sorted()) {
      // discarded
    }
  }
}

/** Stores a sorted expectations file as a listing stream (tree blobs) and removes the file. */
export async function storeExpectationsFile(ctx: BackupContext, file: string): Promise<StreamRef> {
  try {
    return await writeStream(ctx.writer, createReadStream(file, { highWaterMark: 256 * 1024 }), 'tree');
  } finally {
    await rm(file, { force: true });
  }
}

/**
 * Writes the new complete listing: the documents fetched in this run (sorted externally, the last fetch of
 * each) merge-joined with the previous listing, fetched entries winning; previous `_local` entries are
 * dropped (they are read whole each run, when asked for). Counts the result, and collects the tarballs
 * named by the fetched packuments.
 */
export async function mergeListing(
  run: DbRun,
  fetched: ExternalSorter,
  previous: DbSnapshot | undefined,
): Promise<{ listing: StreamRef; counts: ListingCounts; expectations: ExpectationSorter }> {
  const { ctx, cfg } = run;
  const counts = emptyCounts();
  const expectations = new ExpectationSorter(ctx.tmpDir);
  // Lines: a previous entry kept is passed on as stored (checked, counted, not encoded again).
  const entries = async function* (): AsyncGenerator<string> {
    const what = `previous listing of ${cfg.name}/${run.db}`;
    const prevIt = previous
      ? inOrderLines(readListingLines(ctx.reader!, previous.listing, checkDocEntry, what), what)[
          Symbol.asyncIterator
        ]()
      : undefined;
    let l = prevIt ? await prevIt.next() : { done: true as const, value: undefined };
    const take = async (e: DocEntry, x: FetchedRecord['x']) => {
      countEntry(counts, e);
      for (const t of x ?? []) await expectations.add(t);
    };
    for await (const rec of fetched.sorted()) {
      const r = recordPayload<FetchedRecord>(rec);
      while (!l.done && compareIds(l.value.entry.id, r.e.id) < 0) {
        if (!l.value.entry.local) {
          await take(l.value.entry, undefined);
          yield l.value.line;
        }
        l = await prevIt!.next();
      }
      if (!l.done && l.value.entry.id === r.e.id) l = await prevIt!.next();
      await take(r.e, r.x);
      yield JSON.stringify(r.e);
    }
    while (!l.done) {
      if (!l.value.entry.local) {
        await take(l.value.entry, undefined);
        yield l.value.line;
      }
      l = await prevIt!.next();
    }
  };
  const listing = await writeStream(ctx.writer, encodeRawLines(entries()), 'tree');
  return { listing, counts, expectations };
}
