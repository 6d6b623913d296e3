import type { CouchSeq, DbSnapshot } from '../../repo/format/source-snapshots.js';
import type { StreamRef } from '../../repo/stream-ref.js';
import { ExternalSorter } from '../../util/external-sort.js';
import { orderedMap } from '../../util/ordered.js';
import { ChangesFeed, currentLeaves, type ChangeRow } from './changes.js';
import type { DbRun } from './context.js';
import { batches, fetchBatch, type FetchItem } from './fetch.js';
import { countMismatch, dbInfo, type DbInfo } from './info.js';
import {
  encodeRecord,
  recordKey,
  recordPayload,
  type ListingCounts,
} from '../../repo/format/couchdb-listing.js';
import { localDocRecords } from './local.js';
import { countsValid, ExpectationSorter, mergeListing, snapshotCounts } from './merge.js';
import { PreviousListing } from './previous.js';

const SORT_BUDGET = 8 * 1024 * 1024;
const DEFAULT_MAX_ROUNDS = 5;

/** Drops rows the listing cannot hold (a NUL in the ID would break its order), with a finding each. */
async function* listable(run: DbRun, rows: AsyncIterable<ChangeRow>): AsyncGenerator<ChangeRow> {
  for await (const row of rows) {
    if (row.id.includes('\0')) {
      run.findings.add({
        severity: 'error',
        code: 'doc-id-unsupported',
        object: `${run.db}/${JSON.stringify(row.id)}`,
        message: 'document ID contains NUL; not backed up',
      });
      continue;
    }
    yield row;
  }
}

/**
 * Round 1 of an incremental run: the changes since the previous snapshot, sorted by ID (externally), joined
 * with the previous listing so that each changed document's previous entry is at hand (attachments with the
 * same name and digest are reused, not downloaded again). The previous listing is read only up to the last
 * changed ID here; the merge reads the rest (`PreviousListing` reads it once).
 */
async function* joinPrevious(
  run: DbRun,
  feed: ChangesFeed,
  prev: PreviousListing,
): AsyncGenerator<FetchItem> {
  const sorter = new ExternalSorter(recordKey, {
    unique: true,
    tmpDir: run.ctx.tmpDir,
    memoryBudget: SORT_BUDGET,
  });
  let n = 0;
  for await (const row of listable(run, feed.rows())) {
    await sorter.add(encodeRecord(row.id, row.revs));
    n++;
  }
  run.ctx.progress.docsTotal += n;
  for await (const rec of sorter.sorted()) {
    const id = JSON.parse(rec.slice(0, rec.indexOf('\t'))) as string;
    yield { id, revs: recordPayload<string[]>(rec), prev: await prev.entryOf(id) };
  }
}

export interface AttemptResult {
  ok: boolean;
  /** The GET /db taken before the attempt read anything. */
  startInfo: DbInfo;
  reason?: string;
  seq: CouchSeq;
  counts: ListingCounts;
  listing?: StreamRef;
  info: DbInfo;
  expectationsFile?: string;
}

/** Fetches the items through `_bulk_get` batches, `concurrency` at a time, into the sorter. Returns the number of records added. */
async function fetchAll(
  run: DbRun,
  items: AsyncIterable<FetchItem>,
  out: ExternalSorter,
  gone: Set<string>,
): Promise<number> {
  let n = 0;
  for await (const res of orderedMap(batches(items, run.cfg.batchSize), run.cfg.concurrency, (b) =>
    fetchBatch(run, b),
  )) {
    for (const rec of res.records) await out.add(rec);
    n += res.records.length;
    for (const id of res.gone) gone.add(id);
  }
  return n;
}

/**
 * One consistent read: rounds of "changes since S, fetch exactly those leaves" until a round sees no change
 * (the snapshot is then the database as of the last sequence), merged with the previous listing when
 * incremental, written as the new complete listing. The counts are checked against the `GET /db` taken
 * just before the quiet round: nothing changed between the two, so they must agree.
 */
export async function attempt(
  run: DbRun,
  infoStart: DbInfo,
  previous: DbSnapshot | undefined,
): Promise<AttemptResult> {
  const prevCounts = previous ? snapshotCounts(previous) : undefined;
  // Counts that are not whole numbers are not carried: the previous listing is counted as it is read.
  const prevListing = previous
    ? new PreviousListing(run, previous, prevCounts!, !countsValid(prevCounts!))
    : undefined;
  try {
    return await attemptWith(run, infoStart, previous, prevListing);
  } finally {
    await prevListing?.close();
  }
}

async function attemptWith(
  run: DbRun,
  infoStart: DbInfo,
  previous: DbSnapshot | undefined,
  prevListing: PreviousListing | undefined,
): Promise<AttemptResult> {
  const { ctx, cfg } = run;
  const fetched = new ExternalSorter(recordKey, {
    unique: true,
    tmpDir: ctx.tmpDir,
    memoryBudget: SORT_BUDGET,
  });
  const maxRounds = Math.max(1, run.opts.maxRounds ?? DEFAULT_MAX_ROUNDS);
  let since: CouchSeq | undefined = previous?.seq;
  let info = infoStart;
  let proof: DbInfo | undefined;
  let pending = new Set<string>();
  let fetchedRecords = 0;
  if (!previous) {
    const live = typeof info.doc_count === 'number' ? info.doc_count : 0;
    const del = typeof info.doc_del_count === 'number' ? info.doc_del_count : 0;
    ctx.progress.docsTotal += live + del;
  }
  for (run.round = 1; ; run.round++) {
    run.stats.rounds++;
    const feed = new ChangesFeed(run, since);
    const gone = new Set<string>();
    let seen = 0;
    const rows =
      run.round === 1 && prevListing ? joinPrevious(run, feed, prevListing) : listable(run, feed.rows());
    const counted = (async function* () {
      for await (const item of rows) {
        seen++;
        run.stats.changesRead++;
        pending.delete(item.id);
        yield item;
      }
    })();
    fetchedRecords += await fetchAll(run, counted, fetched, gone);
    // Documents found with a leaf gone that did not come back in this round's changes: read their leaves now.
    const left = [...pending];
    for (let i = 0; i < left.length; i += cfg.batchSize) {
      const current = await currentLeaves(run, left.slice(i, i + cfg.batchSize));
      seen += current.length;
      fetchedRecords += await fetchAll(run, listable(run, toAsync(current)), fetched, gone);
    }
    since = feed.lastSeq;
    pending = gone;
    if (seen === 0 && pending.size === 0) {
      proof = info;
      break;
    }
    if (run.round >= maxRounds) {
      run.findings.add({
        severity: 'warning',
        code: 'db-busy',
        object: run.db,
        message: `the database kept changing through ${run.round} rounds; the snapshot is as of sequence ${JSON.stringify(since)} with some documents newer than it`,
      });
      for (const id of pending) {
        run.findings.add({
          severity: 'warning',
          code: 'doc-incomplete',
          object: `${run.db}/${id}`,
          message:
            'a revision or attachment of this document was gone when fetched and it could not be read again in time',
        });
      }
      break;
    }
    info = await dbInfo(run);
  }

  if (cfg.includeLocal) for await (const rec of localDocRecords(run)) await fetched.add(rec);

  // Nothing fetched since the previous snapshot (and no _local entries to read or drop): the new listing is
  // the previous one, byte for byte; its counts are the ones recorded with it. Merging would rewrite the same
  // bytes (which dedup then drops) at a cost proportional to the database, not to its changes.
  const unchanged = previous && fetchedRecords === 0 && !cfg.includeLocal && !previous.localCount;
  const { listing, counts, expectations } = unchanged
    ? {
        listing: previous.listing,
        counts: snapshotCounts(previous),
        expectations: new ExpectationSorter(ctx.tmpDir),
      }
    : await mergeListing(run, fetched, prevListing);
  const seq = since ?? 0;
  const lastInfo = proof ?? info;

  // Counts carried over from a previous snapshot that do not add up: read the database whole instead.
  const carried = countsValid(counts)
    ? undefined
    : `the counts carried over from the previous snapshot do not add up (${JSON.stringify(counts)})`;
  const mismatch = carried ?? (proof ? countMismatch(proof, counts) : undefined);
  if (mismatch && previous) {
    await expectations.discard();
    return {
      ok: false,
      reason:
        carried ?? `the database was probably deleted and re-created: after merging the changes ${mismatch}`,
      seq,
      counts,
      info: lastInfo,
      startInfo: infoStart,
    };
  }
  if (mismatch) {
    run.findings.add({
      severity: 'warning',
      code: 'count-mismatch',
      object: run.db,
      message: `the snapshot does not match the server's counts taken at the same sequence: ${mismatch}`,
    });
  }
  const expectationsFile = await expectations.toFile(ctx.tmpDir);
  return { ok: true, seq, counts, listing, info: lastInfo, startInfo: infoStart, expectationsFile };
}

async function* toAsync<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}
