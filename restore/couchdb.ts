import { isDeepStrictEqual } from 'node:util';
import type { Progress } from '../src/util/progress.js';
import { readListing } from '../src/repo/format/listing.js';
import type { DbSnapshot } from '../src/repo/format/source-snapshots.js';
import { DestinationError, IntegrityError, InterruptedError, messageOf } from '../src/errors.js';
import { log } from '../src/log.js';
import type { BlobReader } from '../src/repo/reader.js';
import type { StreamRef } from '../src/repo/stream-ref.js';
import { dbPath, docPath } from '../src/couchdb/client.js';
import { checkDocEntry, compareIds, type DocEntry } from '../src/repo/format/couchdb-listing.js';
import { bodyMembers } from './couch-body.js';
import { reasonOf, type CouchDestination } from './couch-http.js';
import { verifyDatabase } from './couch-verify.js';
import { DocWriter, type AttachmentMode } from './couch-write.js';
import type { BlobFetcher } from './fetch.js';
import { prefetch, StreamBytes } from './prefetch.js';
import type { Journal, PartState } from './state.js';
import type { Check, DbPlanCounts, DbReport } from './types.js';

/** One database of the snapshot to restore. */
export interface DbJob {
  /** The CouchDB source (its name in the snapshot). */
  source: string;
  db: DbSnapshot;
  /** The database to write. */
  dest: string;
  /** Only these document IDs (`--package`). */
  packages?: Set<string>;
}

export interface DbPlan {
  job: DbJob;
  exists: boolean;
  nonEmpty: boolean;
  /** What the destination database holds now (for messages). */
  holds?: string;
  /** Created by the interrupted restore this one resumes. */
  resumable: boolean;
  mode: 'exact' | 'revert';
  /** Why the restore would refuse to write this database. */
  refusal?: string;
  counts: DbPlanCounts;
  /** `--package`: the selected documents, found by reading the listing. */
  entries?: DocEntry[];
}

export interface CouchContext {
  dest: CouchDestination;
  fetcher: BlobFetcher;
  treeReader: BlobReader;
  journal?: Journal;
  progress: Progress;
  parallel: number;
  force: boolean;
  attachments?: AttachmentMode;
  batchBytes?: number;
  signal?: AbortSignal;
}

function listing(ctx: CouchContext, job: DbJob): AsyncGenerator<DocEntry> {
  return readListing(ctx.treeReader, job.db.listing, checkDocEntry, `listing of database ${job.db.name}`);
}

/** The references read to write a document: per leaf, its body then its attachments. */
function refsOf(e: DocEntry): StreamRef[] {
  return e.leaves.flatMap((l) => [l.body, ...(l.atts ?? []).map((a) => a.data)]);
}

function countsOf(entries: DocEntry[]): DbPlanCounts {
  const c: DbPlanCounts = { docs: 0, deleted: 0, attachments: 0, bytes: 0 };
  for (const e of entries) {
    if (e.local) continue;
    if (e.deleted) c.deleted++;
    else c.docs++;
    for (const l of e.leaves) {
      c.bytes += l.body.size;
      for (const a of l.atts ?? []) {
        c.attachments++;
        c.bytes += a.length;
      }
    }
  }
  return c;
}

/** Looks at the destination database (read only) and decides what the restore will do there. */
export async function planDatabase(ctx: CouchContext, job: DbJob): Promise<DbPlan> {
  const path = dbPath(job.dest);
  const state = ctx.journal?.db(job.dest);
  const { status, body } = await ctx.dest.json<{ doc_count?: number; doc_del_count?: number }>('GET', path, {
    db: job.dest,
    notFound: 'return',
  });
  const exists = status !== 404;
  let nonEmpty = false;
  let holds: string | undefined;
  if (exists) {
    nonEmpty = (body.doc_count ?? 0) > 0 || (body.doc_del_count ?? 0) > 0;
    if (!nonEmpty && body.doc_del_count === undefined) {
      // A server that does not count deleted documents: any change at all means it is not empty.
      const ch = await ctx.dest.json<{ results?: unknown[] }>('GET', `${path}/_changes?limit=1`, {
        db: job.dest,
      });
      nonEmpty = (ch.body.results?.length ?? 0) > 0;
    }
    holds = `${body.doc_count ?? 0} documents${body.doc_del_count !== undefined ? `, ${body.doc_del_count} deleted` : ''}`;
  }
  const resumable = Boolean(state?.started && exists);
  let entries: DocEntry[] | undefined;
  let counts: DbPlanCounts;
  if (job.packages) {
    entries = [];
    for await (const e of listing(ctx, job)) if (job.packages.has(e.id)) entries.push(e);
    counts = countsOf(entries);
  } else {
    const d = job.db;
    counts = {
      docs: d.docCount,
      deleted: d.deletedCount,
      attachments: d.attachmentCount,
      bytes: d.bodyBytes + d.attachmentBytes,
    };
  }
  let mode: DbPlan['mode'] = 'exact';
  let refusal: string | undefined;
  if (nonEmpty && !resumable) {
    if (!ctx.force) {
      refusal = `database ${job.dest} on ${ctx.dest.baseUrl} is not empty (${holds}); refusing to write into it: restore into a new database, or pass --force to ${job.packages ? 'put the packages back into it as new revisions' : "merge the snapshot's revisions into it"}`;
    } else if (job.packages) mode = 'revert';
  }
  return { job, exists, nonEmpty, holds, resumable, mode, refusal, counts, entries };
}

/** What a dry run reports for a database. */
export function plannedReport(plan: DbPlan): DbReport {
  const { job } = plan;
  const note = plan.refusal
    ? `would refuse: ${plan.refusal}`
    : !plan.exists
      ? `would create ${job.dest}`
      : plan.resumable
        ? `would resume the interrupted restore of ${job.dest}`
        : plan.nonEmpty
          ? plan.mode === 'revert'
            ? `would put the packages back into ${job.dest} (${plan.holds}) as new revisions`
            : `would merge into ${job.dest} (${plan.holds})`
          : `would write into the existing empty database ${job.dest}`;
  return { ...emptyReport(plan), status: 'planned', note };
}

function emptyReport(plan: DbPlan): DbReport {
  return {
    source: plan.job.source,
    name: plan.job.db.name,
    dest: plan.job.dest,
    status: 'restored',
    mode: plan.mode,
    created: false,
    planned: plan.counts,
    docs: 0,
    revisions: 0,
    attachments: 0,
    bytes: 0,
    durationMs: 0,
    failures: [],
    failureCount: 0,
    checks: [],
  };
}

/** Restores one database as planned, then verifies it against the snapshot. */
export async function restoreDatabase(ctx: CouchContext, plan: DbPlan): Promise<DbReport> {
  const t0 = Date.now();
  const { job } = plan;
  if (plan.refusal) throw new DestinationError(plan.refusal, { db: job.dest });
  const path = dbPath(job.dest);
  const journal = ctx.journal;
  const state = journal?.db(job.dest) ?? {};
  const report = emptyReport(plan);
  if (!plan.resumable) {
    state.checkpoint = undefined;
    state.done = false;
  } else if (state.checkpoint) report.resumedAfter = state.checkpoint;

  if (!plan.exists) {
    const q = job.db.props?.partitioned === true ? '?partitioned=true' : '';
    const r = await ctx.dest.json('PUT', `${path}${q}`, { db: job.dest, pass: [412] });
    if (r.status === 412)
      throw new DestinationError(
        `database ${job.dest} appeared on ${ctx.dest.baseUrl} while the restore was starting; refusing to write into it`,
      );
    state.created = true;
  } else if (!plan.resumable) state.created = false;
  state.started = true;
  journal?.touch(true);
  report.created = Boolean(state.created);

  // _security first: the data is never readable by more people than the snapshot allowed.
  let security: unknown;
  if (job.db.security && !(job.packages && plan.mode === 'revert')) {
    const bytes = await ctx.fetcher.readAll(job.db.security, 16 * 1024 * 1024);
    try {
      security = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new IntegrityError(`the _security object of ${job.db.name} in the snapshot is not JSON`);
    }
    const r = await ctx.dest.raw(
      'PUT',
      `${path}/_security`,
      'application/json',
      bytes,
      bytes.length,
      job.dest,
    );
    if (r.status !== 200 && r.status !== 201)
      throw new DestinationError(
        `${ctx.dest.where(job.dest)}: writing _security failed with HTTP ${r.status}: ${reasonOf(r.body)}`,
      );
  }

  // The source's _revs_limit before any document: a lower one on the destination would stem longer histories.
  // Only on a database this restore created (never changed on a live one); a server without _revs_limit (the
  // temporary PouchDB standby) keeps its own, and the history check then says whether any history was cut.
  const revsLimit = job.db.revsLimit;
  if (state.created && Number.isSafeInteger(revsLimit) && (revsLimit as number) > 0) {
    const bytes = Buffer.from(String(revsLimit));
    const r = await ctx.dest.raw(
      'PUT',
      `${path}/_revs_limit`,
      'application/json',
      bytes,
      bytes.length,
      job.dest,
    );
    if (r.status === 400 || r.status === 404 || r.status === 405)
      log().warn(
        { db: job.dest, revsLimit, status: r.status },
        'the destination does not take _revs_limit; it keeps its own',
      );
    else if (r.status !== 200 && r.status !== 201)
      throw new DestinationError(
        `${ctx.dest.where(job.dest)}: setting _revs_limit to ${String(revsLimit)} failed with HTTP ${r.status}: ${reasonOf(r.body)}`,
      );
  }

  ctx.progress.phase = job.dest;
  ctx.progress.docsTotal += plan.counts.docs + plan.counts.deleted;
  // What the journal of an interrupted restore has as written is checked on the database FIRST, before anything
  // else is written: if the database lost (or never kept) any of it, every document is written again in the
  // order of a new restore — design documents (validate_doc_update) last, never ahead of the documents they
  // would judge. (Checking it only after the rest, design documents included, had been written let the rewrite
  // run under those functions.)
  const journalHad = plan.resumable && (state.done === true || state.checkpoint !== undefined);
  let lost: string[] | undefined;
  /** The check of a journal that had the whole database as done, when it passed: the final check. */
  let verified: Check[] | undefined;
  if (plan.mode !== 'revert' && journalHad) {
    const had = await verifyWritten(ctx, plan, security, state.done ? undefined : state.checkpoint);
    if (had.every((c) => c.ok)) {
      if (state.done) verified = had;
    } else {
      lost = had
        .filter((c) => !c.ok)
        .flatMap((c) => [
          `${c.check}: expected ${String(c.expected ?? '-')}, found ${String(c.actual ?? '-')}`,
          ...(c.details ?? []).slice(0, 5),
        ]);
      log().warn(
        { db: job.dest },
        'the database does not hold what the resume journal has as written; writing every document again',
      );
      state.checkpoint = undefined;
      state.done = false;
      report.resumedAfter = undefined; // written again from the start
      journal?.touch(true);
    }
  }
  if (plan.mode === 'revert') {
    report.reverted = [];
    const writer = newWriter(ctx, plan, state);
    await revertPackages(ctx, plan, writer, report);
    addWriter(report, writer);
  } else if (!state.done) addWriter(report, await writeDocuments(ctx, plan, state, report));

  ctx.progress.phase = `verify ${job.dest}`;
  log().debug(
    { ms: Date.now() - t0, db: job.dest, docs: report.docs },
    'restore: documents written; verifying',
  );
  if (plan.mode === 'revert') report.checks.push(...(await verifyReverted(ctx, plan)));
  else {
    const checks = verified ?? (await verifyWritten(ctx, plan, security));
    if (lost)
      checks.unshift({
        object: job.dest,
        check:
          'documents the interrupted restore had written, checked on the database: missing or different ones written again',
        ok: true,
        details: lost.slice(0, 20),
      });
    report.checks.push(...checks);
  }
  if (report.failureCount) {
    report.checks.push({
      object: job.dest,
      check: 'documents accepted by the destination',
      ok: false,
      expected: report.failureCount + report.docs,
      actual: report.docs,
      details: report.failures
        .slice(0, 20)
        .map((f) => `${JSON.stringify(f.id)}${f.rev ? ` ${f.rev}` : ''}: ${f.message}`),
    });
  }
  report.status = report.checks.every((c) => c.ok) ? 'restored' : 'failed';
  report.durationMs = Date.now() - t0;
  return report;
}

function newWriter(ctx: CouchContext, plan: DbPlan, state: PartState): DocWriter {
  return new DocWriter(ctx.dest, plan.job.dest, ctx.fetcher, {
    parallel: ctx.parallel,
    attachments: ctx.attachments,
    progress: ctx.progress,
    batchBytes: ctx.batchBytes,
    onCheckpoint: (id) => {
      // The checkpoint is a position in the listing's order of the documents written first; design documents
      // are written after all of them (whatever their IDs sort as), so they never move it: a resume then
      // checks every document before it and writes only what is after it (the design documents included).
      if (id.startsWith('_design/')) return;
      state.checkpoint = id;
      ctx.journal?.touch();
    },
  });
}

function addWriter(report: DbReport, writer: DocWriter): void {
  report.docs += writer.docs;
  report.revisions += writer.revisions;
  report.attachments += writer.attachments;
  report.bytes += writer.bytes;
  const room = Math.max(0, 1000 - report.failures.length);
  const refused = writer.failures.slice(0, room).map((f) => ({ ...f, kind: 'document-refused' as const }));
  report.failures.push(...refused);
  report.failureCount += writer.failureCount;
}

/** Writes the documents of the listing after the journal's checkpoint (all of them without one). */
async function writeDocuments(
  ctx: CouchContext,
  plan: DbPlan,
  state: PartState,
  report: DbReport,
): Promise<DocWriter> {
  const { job } = plan;
  const writer = newWriter(ctx, plan, state);
  // Design documents last (a validate_doc_update function must not judge the restore), _local ones too.
  const later: DocEntry[] = [];
  const checkpoint = state.checkpoint;
  const src = plan.entries
    ? (async function* () {
        yield* plan.entries!;
      })()
    : listing(ctx, job);
  const main = async function* () {
    for await (const e of src) {
      if (e.local || e.id.startsWith('_design/')) later.push(e);
      else if (checkpoint === undefined || compareIds(e.id, checkpoint) > 0) yield e;
    }
  };
  for await (const { item, streams } of prefetch(main(), refsOf, ctx.fetcher, {
    aheadBytes: 16 * 1024 * 1024,
    batchBytes: 4 * 1024 * 1024,
  })) {
    if (ctx.signal?.aborted) {
      // What is in flight completes (or not): the checkpoint says which.
      await writer.finish().catch((err: unknown) => log().debug({ err: messageOf(err) }, 'while stopping'));
      ctx.journal?.flush(true);
      throw new InterruptedError(
        'restore interrupted; run the same command again to continue where it stopped',
      );
    }
    await writer.add(item, streams);
  }
  await writer.finish();
  for (const e of later) {
    if (e.local) await writeLocal(ctx, job.dest, e, report);
    else
      await writer.add(
        e,
        refsOf(e).map((r) => new StreamBytes(r, ctx.fetcher)),
      );
  }
  await writer.finish();
  if (writer.failureCount === 0 && report.failureCount === 0) {
    state.done = true;
    ctx.journal?.touch(true);
  }
  return writer;
}

/**
 * Verifies the database on the destination against the snapshot (never against the journal). With `upTo`,
 * only what an interrupted restore had written when its journal said `upTo`: the documents up to that ID in
 * the listing's order, neither design nor `_local` ones (written last), and no counts (the rest is not there).
 */
async function verifyWritten(
  ctx: CouchContext,
  plan: DbPlan,
  security: unknown,
  upTo?: string,
): Promise<Check[]> {
  const { job } = plan;
  const all = plan.entries
    ? (async function* () {
        yield* plan.entries!;
      })()
    : listing(ctx, job);
  const entries =
    upTo === undefined
      ? all
      : (async function* () {
          for await (const e of all)
            if (!e.local && !e.id.startsWith('_design/') && compareIds(e.id, upTo) <= 0) yield e;
        })();
  const onlyOurs = upTo === undefined && (!plan.nonEmpty || plan.resumable);
  const counts = job.packages
    ? { docCount: plan.counts.docs, deletedCount: plan.counts.deleted }
    : { docCount: job.db.docCount, deletedCount: job.db.deletedCount };
  return verifyDatabase(
    ctx.dest,
    job.dest,
    entries,
    { counts: onlyOurs ? counts : undefined, security },
    ctx.parallel,
  );
}

/** A `_local` document (replication checkpoint): written as is, without revision semantics. */
async function writeLocal(ctx: CouchContext, db: string, e: DocEntry, report: DbReport): Promise<void> {
  const body = JSON.parse((await ctx.fetcher.readAll(e.leaves[0]!.body)).toString('utf8')) as Record<
    string,
    unknown
  >;
  delete body._rev;
  delete body._revisions;
  const p = `${dbPath(db)}/${docPath(e.id)}`;
  const r = await ctx.dest.json<{ _rev?: string }>('PUT', p, { db, body, pass: [409] });
  if (r.status === 409) {
    // Written by the interrupted run this one resumes (or there before, with --force): replaced.
    const cur = await ctx.dest.json<{ _rev?: string }>('GET', p, { db });
    await ctx.dest.json('PUT', p, { db, body: { ...body, _rev: cur.body._rev } });
  }
  report.docs++;
}

/**
 * `--package` into a live database: each package document is put back as a NEW revision with the snapshot's
 * content on top of what the database holds now (so that it wins, and replicates to every follower); a
 * package the database never had is written exactly as backed up.
 */
async function revertPackages(
  ctx: CouchContext,
  plan: DbPlan,
  writer: DocWriter,
  report: DbReport,
): Promise<void> {
  const db = plan.job.dest;
  for (const e of plan.entries ?? []) {
    const { body } = await ctx.dest.json<{
      rows?: { error?: string; value?: { rev: string; deleted?: boolean } }[];
    }>('POST', `${dbPath(db)}/_all_docs`, { db, body: { keys: [e.id] } });
    const row = body.rows?.[0];
    if (!row?.value) {
      await writer.add(
        e,
        refsOf(e).map((r) => new StreamBytes(r, ctx.fetcher)),
      );
      await writer.finish();
      continue;
    }
    if (row.value.rev === e.rev && Boolean(row.value.deleted) === e.deleted) continue; // already as in the snapshot
    if (e.deleted) {
      report.failureCount++;
      report.failures.push({
        id: e.id,
        kind: 'document-deleted',
        message: `deleted in the snapshot (it did not exist then); not restored: pick an earlier snapshot`,
      });
      continue;
    }
    const winner = e.leaves[0]!;
    const bodyBytes = await ctx.fetcher.readAll(winner.body);
    const atts = (winner.atts ?? []).map((a) => new StreamBytes(a.data, ctx.fetcher));
    try {
      const to = await writer.putNewEdit(e, winner, bodyBytes, atts, row.value.rev);
      report.reverted!.push({
        id: e.id,
        from: `${row.value.rev}${row.value.deleted ? ' (deleted)' : ''}`,
        to,
        snapshotRev: e.rev,
      });
      report.docs++;
      report.revisions++;
      report.bytes += winner.body.size + (winner.atts ?? []).reduce((n, a) => n + a.length, 0);
    } catch (err) {
      report.failureCount++;
      report.failures.push({ id: e.id, message: messageOf(err), kind: 'document-refused' });
    }
  }
}

/** A package put back as a new revision: its content (all but the revision fields) equals the snapshot's. */
async function verifyReverted(ctx: CouchContext, plan: DbPlan): Promise<Check[]> {
  const db = plan.job.dest;
  const checks: Check[] = [];
  const strip = (j: Record<string, unknown>) => {
    const { _rev, _revisions, _attachments, ...rest } = j;
    void _rev;
    void _revisions;
    const atts = Object.fromEntries(
      Object.entries((_attachments as Record<string, { length?: number; content_type?: string }>) ?? {}).map(
        ([k, v]) => [k, [v.length, v.content_type]],
      ),
    );
    return { rest, atts };
  };
  for (const e of plan.entries ?? []) {
    if (e.deleted) continue;
    const want = JSON.parse(
      `{${bodyMembers(await ctx.fetcher.readAll(e.leaves[0]!.body), {}, e.id).join(',')}}`,
    ) as Record<string, unknown>;
    const wantAtts = Object.fromEntries(
      (e.leaves[0]!.atts ?? []).map((a) => [a.name, [a.length, a.type ?? 'application/octet-stream']]),
    );
    const { status, body } = await ctx.dest.json<Record<string, unknown>>(
      'GET',
      `${dbPath(db)}/${docPath(e.id)}`,
      { db, notFound: 'return' },
    );
    const got = status === 200 ? strip(body) : undefined;
    const ok =
      got !== undefined &&
      isDeepStrictEqual(got.rest, strip(want).rest) &&
      isDeepStrictEqual(got.atts, wantAtts);
    checks.push({
      object: `${db}/${e.id}`,
      check: 'content equals the snapshot',
      ok,
      expected: e.rev,
      actual: status === 200 ? String(body._rev) : `HTTP ${status}`,
    });
  }
  return checks;
}
