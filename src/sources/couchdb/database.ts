import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomBytes } from 'node:crypto';
import type { CouchdbSourceConfig } from '../../config/schema.js';
import { encodeLines, readListing } from '../../backup/listing.js';
import type {
  BackupContext,
  CouchSeq,
  CouchSourceSnapshot,
  DbSnapshot,
  Finding,
  PartResult,
} from '../../backup/types.js';
import { IntegrityError } from '../../errors.js';
import { writeBuffer, writeStream, type StreamRef } from '../../repo/stream-ref.js';
import { ExternalSorter } from '../../util/external-sort.js';
import { orderedMap } from '../../util/ordered.js';
import { ChangesFeed, currentLeaves, isSeq, sameSeq, SeqRefusedError, type ChangeRow } from './changes.js';
import { CouchHttpError } from './client.js';
import { newRun, type DbBackupOptions, type DbRun, type DbStats } from './context.js';
import { batches, fetchBatch, type FetchItem } from './fetch.js';
import {
  checkDocEntry,
  compareIds,
  countEntry,
  emptyCounts,
  encodeRecord,
  inOrder,
  recordKey,
  recordPayload,
  type DocEntry,
  type FetchedRecord,
  type ListingCounts,
} from './listing.js';
import { localDocRecords } from './local.js';

/** What `GET /db` says (fields vary: CouchDB 1.x/2.x/3.x, PouchDB). */
export interface DbInfo {
  doc_count?: unknown;
  doc_del_count?: unknown;
  update_seq?: unknown;
  purge_seq?: unknown;
  instance_start_time?: unknown;
  uuid?: unknown;
  props?: unknown;
}

/** The outcome of one database: its snapshot entry, and the tarballs its packuments name (a sorted file). */
export interface DbOutcome {
  db: DbSnapshot;
  /** JSON lines of TarballExpectation in tarball-path order, in ctx.tmpDir (the caller stores and removes it). */
  expectationsFile?: string;
  findings: Finding[];
  stats: DbStats;
}

const SORT_BUDGET = 16 * 1024 * 1024;
const DEFAULT_MAX_ROUNDS = 5;

async function dbInfo(run: DbRun): Promise<DbInfo> {
  const { body } = await run.client.json<DbInfo>('GET', run.path, { db: run.db });
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new CouchHttpError(
      `${run.client.where(run.db)}: GET /${run.path} did not answer a database description`,
      200,
      undefined,
    );
  }
  return body;
}

/** The `_security` object, stored as a JSON blob; a server that will not show it gets a warning. */
async function readSecurity(run: DbRun): Promise<StreamRef | undefined> {
  const p = `${run.path}/_security`;
  try {
    const bytes = await run.client.exchange('GET', p, { db: run.db }, async (res) =>
      Buffer.from(await res.arrayBuffer()),
    );
    run.client.parse(bytes, 'GET', p, run.db);
    return await writeBuffer(run.ctx.writer, bytes, 'json');
  } catch (err) {
    if (!(err instanceof CouchHttpError) || (err.status !== 401 && err.status !== 403)) throw err;
    run.findings.add({
      severity: 'warning',
      code: 'security-unreadable',
      object: run.db,
      message: `the _security object cannot be read with these credentials (HTTP ${err.status}); it is not in the snapshot`,
    });
    return undefined;
  }
}

/** Why the previous snapshot cannot be continued incrementally, if it cannot. */
function incrementalBlocker(run: DbRun, previous: DbSnapshot, info: DbInfo): string | undefined {
  if (!run.ctx.reader) return 'the previous listing cannot be read in this run (no reader)';
  const pi = previous.info ?? {};
  const ist = typeof info.instance_start_time === 'string' ? info.instance_start_time : undefined;
  if (
    pi.instanceStartTime &&
    ist &&
    pi.instanceStartTime !== '0' &&
    ist !== '0' &&
    pi.instanceStartTime !== ist
  ) {
    return `the database was re-created (instance_start_time ${pi.instanceStartTime} is now ${ist})`;
  }
  const uuid = typeof info.uuid === 'string' ? info.uuid : undefined;
  if (pi.uuid && uuid && pi.uuid !== uuid)
    return `the database was re-created (uuid ${pi.uuid} is now ${uuid})`;
  if (pi.purgeSeq !== undefined && isSeq(info.purge_seq) && !sameSeq(pi.purgeSeq, info.purge_seq)) {
    return 'documents were purged since the previous snapshot (purge_seq changed): purges are not in the changes feed';
  }
  return undefined;
}

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
 * changed ID.
 */
async function* joinPrevious(run: DbRun, feed: ChangesFeed, previous: DbSnapshot): AsyncGenerator<FetchItem> {
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
  const what = `previous listing of ${run.cfg.name}/${run.db}`;
  const prev = inOrder(readListing(run.ctx.reader!, previous.listing, checkDocEntry, what), what)[
    Symbol.asyncIterator
  ]();
  try {
    let l = await prev.next();
    for await (const rec of sorter.sorted()) {
      const id = JSON.parse(rec.slice(0, rec.indexOf('\t'))) as string;
      while (!l.done && compareIds(l.value.id, id) < 0) l = await prev.next();
      const entry = !l.done && l.value.id === id ? l.value : undefined;
      yield { id, revs: recordPayload<string[]>(rec), prev: entry };
    }
  } finally {
    await prev.return(undefined);
  }
}

interface AttemptResult {
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

/** Fetches the items through `_bulk_get` batches, `concurrency` at a time, into the sorter. */
async function fetchAll(
  run: DbRun,
  items: AsyncIterable<FetchItem>,
  out: ExternalSorter,
  gone: Set<string>,
): Promise<void> {
  for await (const res of orderedMap(batches(items, run.cfg.batchSize), run.cfg.concurrency, (b) =>
    fetchBatch(run, b),
  )) {
    for (const rec of res.records) await out.add(rec);
    for (const id of res.gone) gone.add(id);
  }
}

/**
 * One consistent read: rounds of "changes since S, fetch exactly those leaves" until a round sees no change
 * (the snapshot is then the database as of the last sequence), merged with the previous listing when
 * incremental, written as the new complete listing. The counts are checked against the `GET /db` taken
 * just before the quiet round: nothing changed between the two, so they must agree.
 */
async function attempt(
  run: DbRun,
  infoStart: DbInfo,
  previous: DbSnapshot | undefined,
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
    const rows = run.round === 1 && previous ? joinPrevious(run, feed, previous) : listable(run, feed.rows());
    const counted = (async function* () {
      for await (const item of rows) {
        seen++;
        run.stats.changesRead++;
        pending.delete(item.id);
        yield item;
      }
    })();
    await fetchAll(run, counted, fetched, gone);
    // Documents found with a leaf gone that did not come back in this round's changes: read their leaves now.
    const left = [...pending];
    for (let i = 0; i < left.length; i += cfg.batchSize) {
      const current = await currentLeaves(run, left.slice(i, i + cfg.batchSize));
      seen += current.length;
      await fetchAll(run, listable(run, toAsync(current)), fetched, gone);
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

  // The new listing: fetched entries win over the previous listing's; previous _local entries are dropped
  // (they are read whole each run).
  const counts = emptyCounts();
  const expSorter = new ExternalSorter(
    (r) => (JSON.parse(r) as { path: string }).path.replaceAll('/', '\0'),
    {
      tmpDir: ctx.tmpDir,
      memoryBudget: SORT_BUDGET,
    },
  );
  let expCount = 0;
  const fromSorter = async function* (): AsyncGenerator<FetchedRecord> {
    for await (const rec of fetched.sorted()) yield recordPayload<FetchedRecord>(rec);
  };
  const entries = async function* (): AsyncGenerator<DocEntry> {
    const what = `previous listing of ${cfg.name}/${run.db}`;
    const prev = previous
      ? inOrder(readListing(ctx.reader!, previous.listing, checkDocEntry, what), what)
      : undefined;
    const prevIt = prev?.[Symbol.asyncIterator]();
    let l = prevIt ? await prevIt.next() : { done: true as const, value: undefined };
    const take = async (e: DocEntry, x: FetchedRecord['x']) => {
      countEntry(counts, e);
      for (const t of x ?? []) {
        await expSorter.add(JSON.stringify(t));
        expCount++;
      }
    };
    for await (const r of fromSorter()) {
      while (!l.done && compareIds(l.value.id, r.e.id) < 0) {
        if (!l.value.local) {
          await take(l.value, undefined);
          yield l.value;
        }
        l = await prevIt!.next();
      }
      if (!l.done && l.value.id === r.e.id) l = await prevIt!.next();
      await take(r.e, r.x);
      yield r.e;
    }
    while (!l.done) {
      if (!l.value.local) {
        await take(l.value, undefined);
        yield l.value;
      }
      l = await prevIt!.next();
    }
  };
  const listing = await writeStream(ctx.writer, encodeLines(entries()), 'tree');
  const seq = since ?? 0;
  const lastInfo = proof ?? info;

  const mismatch = proof ? countMismatch(proof, counts) : undefined;
  if (mismatch && previous) {
    await drain(expSorter);
    return {
      ok: false,
      reason: `the database was probably deleted and re-created: after merging the changes ${mismatch}`,
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
  let expectationsFile: string | undefined;
  if (expCount > 0) {
    expectationsFile = path.join(ctx.tmpDir, `couchdb-expectations-${randomBytes(8).toString('hex')}.jsonl`);
    const lines = async function* () {
      for await (const line of expSorter.sorted()) yield `${line}\n`;
    };
    await pipeline(Readable.from(lines()), createWriteStream(expectationsFile));
  } else await drain(expSorter);
  return { ok: true, seq, counts, listing, info: lastInfo, startInfo: infoStart, expectationsFile };
}

function countMismatch(info: DbInfo, c: ListingCounts): string | undefined {
  const problems: string[] = [];
  if (typeof info.doc_count === 'number' && info.doc_count !== c.docCount) {
    problems.push(
      `the listing has ${c.docCount} live documents, the server's doc_count is ${info.doc_count}`,
    );
  }
  if (typeof info.doc_del_count === 'number' && info.doc_del_count !== c.deletedCount) {
    problems.push(
      `the listing has ${c.deletedCount} deleted documents, the server's doc_del_count is ${info.doc_del_count}`,
    );
  }
  return problems.length ? problems.join('; ') : undefined;
}

async function drain(s: ExternalSorter): Promise<void> {
  for await (const _ of s.sorted()) {
    // discarded: this only removes the sorter's temporary files
  }
}

async function* toAsync<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

/**
 * Backs up one database (see docs/FORMAT.md, "CouchDB listings"): incremental from `previous` when it can
 * be, else full, with the reason in `fullReason` and an info finding. Throws DbGoneError when the database
 * does not exist (any more), CouchHttpError / SourceError when the server cannot be read.
 */
export async function backupDb(
  cfg: CouchdbSourceConfig,
  db: string,
  ctx: BackupContext,
  previous: DbSnapshot | undefined,
  opts: DbBackupOptions = {},
): Promise<DbOutcome> {
  const run = newRun(cfg, db, ctx, opts);
  const requestsBefore = run.client.requests;
  const info0 = await dbInfo(run);
  const security = await readSecurity(run);
  let fullReason: string | undefined;
  let result: AttemptResult | undefined;
  if (previous) {
    fullReason = incrementalBlocker(run, previous, info0);
    if (!fullReason) {
      try {
        const r = await attempt(run, info0, previous);
        if (r.ok) result = r;
        else fullReason = r.reason;
      } catch (err) {
        if (err instanceof SeqRefusedError) fullReason = err.message;
        else if (err instanceof IntegrityError)
          fullReason = `the previous listing cannot be read (${err.message})`;
        else throw err;
      }
    }
    if (!result) {
      run.findings.add({
        severity: 'info',
        code: 'fallback-full',
        object: db,
        message: `full read instead of an incremental one: ${fullReason}`,
      });
    }
  }
  // After an incremental attempt that was given up, the start of the full read needs a fresh GET /db.
  if (!result) result = await attempt(run, previous ? await dbInfo(run) : info0, undefined);

  const snap: DbSnapshot = {
    name: db,
    seq: result.seq,
    mode: previous && !fullReason ? 'incremental' : 'full',
    ...(previous && fullReason ? { fullReason } : {}),
    docCount: result.counts.docCount,
    deletedCount: result.counts.deletedCount,
    conflictCount: result.counts.conflictCount,
    attachmentCount: result.counts.attachmentCount,
    attachmentBytes: result.counts.attachmentBytes,
    bodyBytes: result.counts.bodyBytes,
    listing: result.listing!,
  };
  if (cfg.includeLocal) snap.localCount = result.counts.localCount;
  if (security) snap.security = security;
  if (info0.props && typeof info0.props === 'object' && !Array.isArray(info0.props)) {
    snap.props = info0.props as Record<string, unknown>;
  }
  // purge_seq as it was when the read started: a purge during the run then shows on the next one.
  const info: NonNullable<DbSnapshot['info']> = {};
  if (isSeq(result.startInfo.purge_seq)) info.purgeSeq = result.startInfo.purge_seq;
  if (typeof result.info.instance_start_time === 'string')
    info.instanceStartTime = result.info.instance_start_time;
  if (typeof result.info.uuid === 'string') info.uuid = result.info.uuid;
  snap.info = info;
  run.stats.requests = run.client.requests - requestsBefore;
  return {
    db: snap,
    expectationsFile: result.expectationsFile,
    findings: run.findings.all(),
    stats: run.stats,
  };
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
 * Backs up one database of a CouchDB source. `previous` is this database's entry in an earlier snapshot
 * (incremental when possible). The result's snapshot is a CouchDB source snapshot with this one database.
 */
export async function backupDatabase(
  cfg: CouchdbSourceConfig,
  db: string,
  ctx: BackupContext,
  previous?: DbSnapshot,
  opts: DbBackupOptions = {},
): Promise<PartResult<CouchSourceSnapshot> & { db: DbSnapshot; stats: DbStats }> {
  const out = await backupDb(cfg, db, ctx, previous, opts);
  const expectations = out.expectationsFile
    ? await storeExpectationsFile(ctx, out.expectationsFile)
    : undefined;
  return {
    snapshot: { kind: 'couchdb', name: cfg.name, url: redactedUrl(cfg.url), databases: [out.db] },
    db: out.db,
    findings: out.findings,
    ...(expectations ? { expectations } : {}),
    stats: { ...out.stats },
  };
}

/** The configured URL without credentials (and without a trailing slash). */
export function redactedUrl(configured: string): string {
  try {
    const u = new URL(configured);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString().replace(/\/+$/, '');
  } catch {
    return '(invalid URL)';
  }
}
