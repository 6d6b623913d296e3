import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IntegrityError } from '../../errors.js';
import { encodeRawLines } from '../../repo/format/listing.js';
import type { BackupContext } from '../types.js';
import type { DbSnapshot } from '../../repo/format/source-snapshots.js';
import { readStream, writeStream, type StreamRef } from '../../repo/stream-ref.js';
import { ExternalSorter, splitLines } from '../../util/external-sort.js';
import type { DbRun } from './context.js';
import {
  checkDocEntry,
  compareIds,
  countEntry,
  emptyCounts,
  lineId,
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

/** The counts of a listing as its snapshot entry recorded them. */
export function snapshotCounts(db: DbSnapshot): ListingCounts {
  return {
    docCount: db.docCount,
    deletedCount: db.deletedCount,
    conflictCount: db.conflictCount,
    attachmentCount: db.attachmentCount,
    attachmentBytes: db.attachmentBytes,
    bodyBytes: db.bodyBytes,
    localCount: db.localCount ?? 0,
  };
}

/** Takes an entry's share out of the counts (the entry was counted in them). */
function uncountEntry(c: ListingCounts, e: DocEntry): void {
  const d = emptyCounts();
  countEntry(d, e);
  for (const k of Object.keys(d) as (keyof ListingCounts)[]) c[k] -= d[k];
}

/**
 * The previous listing's lines with their IDs, in order (an entry out of order is an IntegrityError); a line
 * is parsed and checked whole only when its entry is asked for (the IDs come from `lineId`).
 */
export async function* previousLines(
  run: DbRun,
  previous: DbSnapshot,
  what: string,
): AsyncGenerator<{ id: string; line: string; entry: () => DocEntry }> {
  let n = 0;
  let last: string | undefined;
  for await (const line of splitLines(readStream(run.ctx.reader!, previous.listing))) {
    n++;
    if (!line) continue;
    const at = n;
    const entry = () => {
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        throw new IntegrityError(`${what}: line ${at} of the listing is not JSON`);
      }
      try {
        return checkDocEntry(v);
      } catch (err) {
        throw new IntegrityError(`${what}: line ${at} of the listing: ${(err as Error).message}`);
      }
    };
    const id = lineId(line) ?? entry().id;
    if (last !== undefined && compareIds(last, id) >= 0) {
      throw new IntegrityError(`${what}: ${JSON.stringify(id)} is out of order`);
    }
    last = id;
    yield { id, line, entry };
  }
}

/** `_local` document IDs: their entries are dropped from a previous listing (read whole again each run). */
const LOCAL_PREFIX = '_local/';

/**
 * Writes the new complete listing: the documents fetched in this run (sorted externally, the last fetch of
 * each) merge-joined with the previous listing, fetched entries winning; previous `_local` entries are
 * dropped (they are read whole each run, when asked for). Collects the tarballs named by the fetched
 * packuments.
 *
 * The cost follows the changes, not the database: a previous line kept is passed on as stored, byte for
 * byte, without being parsed (its ID is read from the line's start, and the order is still checked). It was
 * checked when it was written, and the listing's chunks are verified by their keyed blob IDs when read. The
 * counts are the previous snapshot's, less the entries replaced or dropped (only those are parsed), plus the
 * entries fetched.
 */
export async function mergeListing(
  run: DbRun,
  fetched: ExternalSorter,
  previous: DbSnapshot | undefined,
): Promise<{ listing: StreamRef; counts: ListingCounts; expectations: ExpectationSorter }> {
  const { ctx, cfg } = run;
  // The previous counts are trusted only when they are whole numbers; otherwise every kept line is counted.
  const recount = !previous || !countsValid(snapshotCounts(previous));
  const counts = recount ? emptyCounts() : snapshotCounts(previous);
  const expectations = new ExpectationSorter(ctx.tmpDir);
  const entries = async function* (): AsyncGenerator<string> {
    const what = `previous listing of ${cfg.name}/${run.db}`;
    const prevIt = previous ? previousLines(run, previous, what)[Symbol.asyncIterator]() : undefined;
    let l = prevIt ? await prevIt.next() : { done: true as const, value: undefined };
    /** A previous line passed on, or dropped when it is a `_local` entry. */
    const keep = function (p: { id: string; line: string; entry: () => DocEntry }): string | undefined {
      if (recount) {
        const e = p.entry();
        if (e.local) return undefined;
        countEntry(counts, e);
        return p.line;
      }
      if (!p.id.startsWith(LOCAL_PREFIX)) return p.line;
      const e = p.entry();
      if (!e.local) return p.line;
      uncountEntry(counts, e);
      return undefined;
    };
    for await (const rec of fetched.sorted()) {
      const r = recordPayload<FetchedRecord>(rec);
      while (!l.done && compareIds(l.value.id, r.e.id) < 0) {
        const line = keep(l.value);
        if (line !== undefined) yield line;
        l = await prevIt!.next();
      }
      if (!l.done && l.value.id === r.e.id) {
        if (!recount) uncountEntry(counts, l.value.entry());
        l = await prevIt!.next();
      }
      countEntry(counts, r.e);
      for (const t of r.x ?? []) await expectations.add(t);
      yield JSON.stringify(r.e);
    }
    while (!l.done) {
      const line = keep(l.value);
      if (line !== undefined) yield line;
      l = await prevIt!.next();
    }
  };
  const listing = await writeStream(ctx.writer, encodeRawLines(entries()), 'tree');
  return { listing, counts, expectations };
}

/**
 * Every count a whole number, none below zero. Counts carried over from a previous snapshot that fail this
 * after a merge did not add up with its listing: the run reads the database whole instead.
 */
export function countsValid(c: ListingCounts): boolean {
  return Object.values(c).every((v) => Number.isSafeInteger(v) && v >= 0);
}
