import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IntegrityError } from '../../errors.js';
import type { BackupContext } from '../types.js';
import type { DbSnapshot } from '../../repo/format/source-snapshots.js';
import { writeStream, type StreamRef } from '../../repo/stream-ref.js';
import { ExternalSorter, splitLines } from '../../util/external-sort.js';
import { LOCAL_PREFIX, type PreviousItem, type PreviousListing } from './previous.js';
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

/** Encodes the new listing: fetched entries (strings) gathered into pieces, kept runs passed on as read. */
class Out {
  private parts: string[] = [];
  private size = 0;

  line(l: string): Buffer | undefined {
    this.parts.push(l);
    this.size += l.length;
    return this.size >= PIECE ? this.flush() : undefined;
  }

  /**
   * The lines gathered, encoded once into a reused scratch buffer and copied out at their exact size (a joined
   * string made two more copies of each piece, flattened and re-encoded, in fresh memory).
   */
  flush(): Buffer | undefined {
    if (!this.parts.length) return undefined;
    let bound = 0;
    for (const l of this.parts) bound += l.length * 3 + 1;
    if (scratch.length < bound) scratch = Buffer.allocUnsafeSlow(Math.max(bound, 2 * PIECE));
    let at = 0;
    for (const l of this.parts) {
      at += scratch.write(l, at, 'utf8');
      scratch[at++] = 0x0a;
    }
    this.parts = [];
    this.size = 0;
    return Buffer.from(scratch.subarray(0, at));
  }
}

let scratch = Buffer.alloc(0);

const PIECE = 256 * 1024;

/** The lines of a run (a run is split only when a fetched entry falls inside it). */
async function* runLines(
  run: Extract<PreviousItem, { kind: 'run' }>,
): AsyncGenerator<{ id: string; line: string }> {
  for await (const line of splitLines(run.pieces())) {
    if (!line) continue;
    yield { id: lineId(line) ?? parseLine(line).id, line };
  }
}

/**
 * Writes the new complete listing: the documents fetched in this run (sorted externally, the last fetch of
 * each) merge-joined with the previous listing, fetched entries winning; previous `_local` entries are
 * dropped (they are read whole each run, when asked for). Collects the tarballs named by the fetched
 * packuments.
 *
 * The cost follows the changes, not the database: the previous listing is read once (`PreviousListing`, which
 * round 1 already read for the previous entries of the changed documents), and the runs of lines between
 * changed documents are passed on as stored, byte for byte, without being decoded or parsed. The counts are
 * the previous snapshot's (recounted from the listing when they were not valid), less the entries replaced or
 * dropped (only those are parsed), plus the entries fetched.
 */
export async function mergeListing(
  run: DbRun,
  fetched: ExternalSorter,
  previous: PreviousListing | undefined,
): Promise<{ listing: StreamRef; counts: ListingCounts; expectations: ExpectationSorter }> {
  const { ctx } = run;
  const counts = previous ? previous.counts : emptyCounts();
  const expectations = new ExpectationSorter(ctx.tmpDir);
  const entries = async function* (): AsyncGenerator<Buffer> {
    const out = new Out();
    const recs = fetched.sorted()[Symbol.asyncIterator]();
    let r: FetchedRecord | undefined;
    const nextRec = async () => {
      const n = await recs.next();
      r = n.done ? undefined : recordPayload<FetchedRecord>(n.value);
    };
    /** The fetched entry `r` goes out. */
    const put = async function* () {
      countEntry(counts, r!.e);
      for (const t of r!.x ?? []) await expectations.add(t);
      const b = out.line(JSON.stringify(r!.e));
      if (b) yield b;
      await nextRec();
    };
    /** A previous line: replaced by the fetched entry of its ID, or dropped when `_local`, or kept. */
    const prevLine = async function* (id: string, line: string, entry: () => DocEntry) {
      while (r && compareIds(r.e.id, id) < 0) yield* put();
      if (r && r.e.id === id) {
        uncountEntry(counts, entry());
        yield* put();
        return;
      }
      if (id.startsWith(LOCAL_PREFIX)) {
        const e = entry();
        if (e.local) {
          uncountEntry(counts, e);
          return;
        }
      }
      const b = out.line(line);
      if (b) yield b;
    };
    await nextRec();
    if (previous) {
      for await (const it of previous.items()) {
        if (it.kind === 'line') {
          yield* prevLine(it.id, it.line, it.entry);
          continue;
        }
        while (r && compareIds(r.e.id, it.first) < 0) yield* put();
        if (!r || compareIds(it.last, r.e.id) < 0) {
          // No fetched entry inside the run: it goes out as it is.
          const b = out.flush();
          if (b) yield b;
          yield* it.pieces();
          continue;
        }
        for await (const l of runLines(it)) {
          yield* prevLine(l.id, l.line, () => parseLine(l.line));
        }
      }
    }
    while (r) yield* put();
    const b = out.flush();
    if (b) yield b;
  };
  const listing = await writeStream(ctx.writer, entries(), 'tree');
  return { listing, counts, expectations };
}

function parseLine(line: string): DocEntry {
  try {
    return checkDocEntry(JSON.parse(line));
  } catch (err) {
    throw new IntegrityError(`previous listing: a kept line: ${(err as Error).message}`);
  }
}

/**
 * Every count a whole number, none below zero. Counts carried over from a previous snapshot that fail this
 * after a merge did not add up with its listing: the run reads the database whole instead.
 */
export function countsValid(c: ListingCounts): boolean {
  return Object.values(c).every((v) => Number.isSafeInteger(v) && v >= 0);
}
