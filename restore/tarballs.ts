import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Progress } from '../src/util/progress.js';
import { readListing } from '../src/repo/format/listing.js';
import type { TarballSourceSnapshot } from '../src/repo/format/source-snapshots.js';
import {
  DestinationError,
  IntegrityError,
  InterruptedError,
  messageOf,
  RegbackupError,
  systemCodeOf,
} from '../src/errors.js';
import type { BlobReader } from '../src/repo/reader.js';
import { validateRef } from '../src/repo/stream-ref.js';
import { checkEntry, type TarballEntry } from '../src/repo/format/tarball-listing.js';
import { comparePaths } from '../src/repo/format/order.js';
import type { ObjectStore } from '../src/store/types.js';
import { orderedMap } from '../src/util/ordered.js';
import type { BlobFetcher } from './fetch.js';
import { prefetch, StreamBytes } from './prefetch.js';
import { localRoot, restoreLocal } from './tarball-local.js';
import {
  contentProblem,
  DirectoryFiles,
  putObject,
  sizeProblem,
  StoreFiles,
  writeFile,
  type FileDestination,
  type Outcome,
} from './tarball-file.js';
import { SafeTree } from './safe-path.js';
import { showName } from '../src/repo/names.js';
import type { Journal, PartState } from './state.js';
import type { Check, FileFailure, TarballReport } from './types.js';

/** Where a tarball store is restored: a directory tree in the registry layout, or an S3 bucket and prefix. */
export type TarballDestination = { dir: string } | { s3: ObjectStore };

export interface TarballJob {
  source: TarballSourceSnapshot;
  /** Only the tarballs of these packages (`<name>/…`, `@scope/name/…`). */
  packages?: string[];
}

export interface TarballContext {
  fetcher: BlobFetcher;
  treeReader: BlobReader;
  journal?: Journal;
  progress: Progress;
  parallel: number;
  force: boolean;
  /** Worker threads for the local fast path (0: none; files are then written by this thread). */
  workers: number;
  signal?: AbortSignal;
}

export interface TarballPlan {
  job: TarballJob;
  dest: TarballDestination;
  location: string;
  files: number;
  bytes: number;
  exists: boolean;
  nonEmpty: boolean;
  resumable: boolean;
  refusal?: string;
  /** `--package`: files per package. */
  perPackage?: Map<string, number>;
  /** Entries whose names the name rule refuses (src/repo/names.ts): not restored, reported. */
  refused: { count: number; first: string[] };
}

export function describeTarballDestination(dest: TarballDestination): string {
  return 'dir' in dest ? path.resolve(dest.dir) : dest.s3.location;
}

/** A listing entry whose name the name rule refuses: reported, never written. */
interface RefusedFile {
  refused: true;
  /** The name, safely escaped (showName). */
  shown: string;
  reason: string;
}

const MAX_REFUSED_LISTED = 20;

function selected(job: TarballJob, p: string): boolean {
  return !job.packages || job.packages.some((name) => p.startsWith(`${name}/`));
}

async function* entries(ctx: TarballContext, job: TarballJob): AsyncGenerator<TarballEntry | RefusedFile> {
  // A refused name is reported in its place and skips only that entry (the rest restores).
  const refused: RefusedFile[] = [];
  const listing = readListing(
    ctx.treeReader,
    job.source.listing,
    checkEntry,
    `tarball listing of ${job.source.name}`,
    ({ refused: r }) => {
      if (!job.packages || (typeof r.raw === 'string' && selected(job, r.raw)))
        refused.push({ refused: true, shown: showName(r.raw), reason: r.reason });
    },
  );
  for await (const e of listing) {
    yield* refused.splice(0);
    if (selected(job, e.path)) yield e;
  }
  yield* refused.splice(0);
}

/**
 * Reads the listing once (metadata only): counts what will be written, and validates EVERY name before
 * anything is written — an entry whose name the rule refuses (absolute, "..", NUL, control characters, …) is
 * counted and named, and is never written; the others are. Looks at the destination (read only).
 */
export async function planTarballs(
  ctx: TarballContext,
  job: TarballJob,
  dest: TarballDestination,
): Promise<TarballPlan> {
  const location = describeTarballDestination(dest);
  const refused = { count: 0, first: [] as string[] };
  let files = 0;
  let bytes = 0;
  const perPackage = new Map<string, number>();
  for await (const e of entries(ctx, job)) {
    if ('refused' in e) {
      if (refused.count++ < MAX_REFUSED_LISTED) refused.first.push(`${e.shown} (${e.reason})`);
      continue;
    }
    files++;
    bytes += e.size;
    for (const name of job.packages ?? [])
      if (e.path.startsWith(`${name}/`)) perPackage.set(name, (perPackage.get(name) ?? 0) + 1);
  }
  const state = ctx.journal?.tarballs(job.source.name);
  let exists = false;
  let nonEmpty = false;
  if ('dir' in dest) {
    try {
      const names = await readdir(dest.dir);
      exists = true;
      nonEmpty = names.length > 0;
    } catch (err) {
      if (systemCodeOf(err) !== 'ENOENT')
        throw new DestinationError(`cannot read the destination directory ${location}: ${messageOf(err)}`);
    }
  } else {
    for await (const o of dest.s3.list('')) {
      void o;
      nonEmpty = true;
      break;
    }
    exists = true;
  }
  const resumable = Boolean(state?.started);
  let refusal: string | undefined;
  if (nonEmpty && !resumable && !ctx.force) {
    refusal = `the tarball destination ${location} is not empty; refusing to write into it: restore into an empty ${'dir' in dest ? 'directory' : 'prefix'}, or pass --force to write the snapshot's files over what is there`;
  }
  return { job, dest, location, files, bytes, exists, nonEmpty, resumable, refusal, perPackage, refused };
}

export function plannedTarballReport(plan: TarballPlan): TarballReport {
  const note = plan.refusal
    ? `would refuse: ${plan.refusal}`
    : plan.resumable
      ? `would resume the interrupted restore into ${plan.location}`
      : `would write ${plan.files} files into ${plan.nonEmpty ? 'the non-empty ' : ''}${plan.location}`;
  const refused = plan.refused.count
    ? `; would NOT write ${plan.refused.count} file(s) whose names are refused: ${plan.refused.first.join(', ')}`
    : '';
  return { ...emptyReport(plan), status: 'planned', note: note + refused };
}

function emptyReport(plan: TarballPlan): TarballReport {
  return {
    source: plan.job.source.name,
    dest: plan.location,
    status: 'restored',
    created: false,
    planned: { files: plan.files, bytes: plan.bytes },
    files: 0,
    bytes: 0,
    skipped: 0,
    durationMs: 0,
    failures: [],
    failureCount: 0,
    checks: [],
  };
}

export async function restoreTarballs(ctx: TarballContext, plan: TarballPlan): Promise<TarballReport> {
  const t0 = Date.now();
  const { job, dest } = plan;
  if (plan.refusal) throw new DestinationError(plan.refusal);
  const journal = ctx.journal;
  const state = journal?.tarballs(job.source.name) ?? {};
  const report = emptyReport(plan);
  const resume = plan.resumable;
  if (!resume) {
    state.checkpoint = undefined;
    state.done = false;
    state.created = !plan.nonEmpty;
    state.started = true;
    journal?.touch(true);
  } else if (state.checkpoint) report.resumedAfter = state.checkpoint;
  report.created = Boolean(state.created);
  const tree = 'dir' in dest ? new SafeTree(dest.dir) : undefined;
  if (tree) await tree.rootReal();
  const files: FileDestination = tree
    ? new DirectoryFiles(tree)
    : new StoreFiles((dest as { s3: ObjectStore }).s3);
  const how = { sha1: 0, sha512: 0, size: 0, skipped: 0, present: 0 };
  let flagged = 0;
  let refusedNames = 0;
  ctx.progress.phase = job.source.name;
  ctx.progress.bytesTotal += plan.bytes;

  // What the journal of the interrupted restore has as done: a hint of what to skip, checked on the
  // destination first (size and mtime now, content by the final check), never taken as it is.
  const journalDone = resume ? journalDoneFn(state) : () => false;
  const found = resume ? (e: TarballEntry) => foundInPlace(files, tree, e, journalDone(e.path)) : undefined;
  let restoredAgain = 0;

  const writeOne = async (e: TarballEntry, data: StreamBytes): Promise<Outcome> => {
    try {
      if (tree) return await writeFile(tree, e, data);
      return await putObject((dest as { s3: ObjectStore }).s3, e, data);
    } catch (err) {
      if (err instanceof DestinationError)
        return { path: e.path, ok: false, message: err.message, kind: 'destination-write' };
      if (err instanceof IntegrityError)
        return { path: e.path, ok: false, message: err.message, kind: 'content-mismatch' };
      if (err instanceof RegbackupError) throw err;
      throw new DestinationError(
        `${plan.location}: writing ${JSON.stringify(e.path)} failed: ${messageOf(err)}`,
        { object: e.path },
      );
    }
  };
  const keepOrWrite = async (e: TarballEntry, data: StreamBytes): Promise<Outcome> => {
    const f = await found?.(e);
    if (!f) return writeOne(e, data);
    if (!tree) for await (const b of data) void b; // the blobs were asked for; let them go
    return { path: e.path, ok: true, bytes: e.size, how: f };
  };

  const todo = async function* () {
    for await (const e of entries(ctx, job)) {
      if ('refused' in e) {
        refusedNames++; // reported below; never written, and the restore is not done while one is left
        continue;
      }
      if (e.flag === 'checksum-mismatch') flagged++;
      validateRef(e.data);
      yield e;
    }
  };
  let stuck = false;
  let candidate: string | undefined;
  let lastSync = Date.now();
  // The checkpoint only ever names files whose content AND directory entry are on disk: files are synced
  // before their rename, and the directories they were renamed in are synced before the checkpoint moves.
  const durable = async () => {
    lastSync = Date.now();
    const at = candidate;
    if (at === undefined || at === state.checkpoint) return;
    if (tree) await tree.syncTouched();
    state.checkpoint = at;
    journal?.touch(true);
  };
  const local = tree && ctx.workers > 0 ? localRoot(ctx.fetcher.stores[0]!) : undefined;
  const done = local
    ? restoreLocal(
        {
          fetcher: ctx.fetcher,
          treeReader: ctx.treeReader,
          tree: tree!,
          store: ctx.fetcher.stores[0]!,
          root: local,
          workers: ctx.workers,
          found,
          fallback: (e) => writeOne(e, new StreamBytes(e.data, ctx.fetcher)),
        },
        todo(),
      )
    : orderedMap(
        prefetch(todo(), (e) => [e.data], ctx.fetcher),
        ctx.parallel,
        ({ item, streams }) => keepOrWrite(item, streams[0]!),
      );
  for await (const o of done) {
    if (ctx.signal?.aborted) {
      await durable();
      throw interrupted();
    }
    if (o.ok) {
      if (o.how === 'skipped' || o.how === 'present') report.skipped++;
      else {
        if (journalDone(o.path)) restoredAgain++;
        report.files++;
        report.bytes += o.bytes;
        ctx.progress.files++;
        ctx.progress.bytes += o.bytes;
      }
      how[o.how]++;
      if (!stuck) candidate = o.path;
      if (Date.now() - lastSync > 2000) await durable();
    } else {
      stuck = true; // a failed file is written again by the next run: the checkpoint stays before it
      report.failureCount++;
      if (report.failures.length < 1000)
        report.failures.push({ path: o.path, message: o.message, kind: o.kind });
    }
  }
  await durable();
  if (!stuck && !refusedNames) {
    state.done = true;
    journal?.touch(true);
  }

  // The final check: every file of the listing, looked at on the destination.
  ctx.progress.phase = `verify ${job.source.name}`;
  const final = await checkDestination(ctx, job, files, {
    readBack: (e) => journalDone(e.path),
    // Files that failed above are already reported; the others are written again once if they are not right.
    rewrite: stuck ? undefined : (e) => writeOne(e, new StreamBytes(e.data, ctx.fetcher)),
  });
  report.files += final.rewritten;
  report.skipped -= final.rewrittenKept;
  report.bytes += final.rewrittenBytes;
  restoredAgain += final.rewritten;
  report.failureCount += final.failureCount;
  for (const f of final.failures) if (report.failures.length < 1000) report.failures.push(f);
  const checks: Check[] = [
    {
      object: `${job.source.name} -> ${plan.location}`,
      check: `files written and verified (size, and sha1/sha512 where recorded), then found on the destination${tree ? '' : ' (HEAD)'}`,
      ok: report.failureCount === 0 && final.found === plan.files,
      expected: plan.files,
      actual: final.found,
      details: [
        `${how.sha1} by sha1, ${how.sha512} by sha512, ${how.size} by size only (no checksum recorded) as written; ${how.skipped + how.present} already in place`,
        ...(resume
          ? [
              `${final.readBack} files the interrupted restore had written read back from the destination; ${restoredAgain} missing or different there were restored again`,
            ]
          : []),
        ...report.failures.slice(0, 20).map((f) => `${JSON.stringify(f.path)}: ${f.message}`),
        ...final.problems.map((p) => `${JSON.stringify(p.path)}: ${p.message}`),
      ],
    },
  ];
  if (plan.refused.count) {
    checks.push({
      object: job.source.name,
      check: 'files whose names cannot be restored (refused by the name rule; not written)',
      ok: false,
      expected: 0,
      actual: plan.refused.count,
      details: [
        ...plan.refused.first,
        ...(plan.refused.count > plan.refused.first.length
          ? [`… and ${plan.refused.count - plan.refused.first.length} more`]
          : []),
      ],
    });
  }
  if (flagged) {
    checks.push({
      object: job.source.name,
      check: 'files that did not match their packument at backup time (restored as backed up)',
      ok: true,
      actual: flagged,
    });
  }
  report.checks = checks;
  report.status = checks.every((c) => c.ok) ? 'restored' : 'failed';
  report.durationMs = Date.now() - t0;
  return report;
}

function interrupted(): InterruptedError {
  return new InterruptedError('restore interrupted; run the same command again to continue where it stopped');
}

/** Whether the journal has an entry as done: before its checkpoint (listing order), or the whole store. */
function journalDoneFn(state: PartState): (path: string) => boolean {
  const { done, checkpoint } = state;
  return (p) => done === true || (checkpoint !== undefined && comparePaths(p, checkpoint) <= 0);
}

/**
 * A resumed restore: whether the file is already in place, so that it is not written again. One the journal
 * has as done needs its size and mtime (its content is read back by the final check); any other one (written
 * by the interrupted run after its last checkpoint, or by someone else) is read back now. A file that does not
 * pass is written again.
 */
async function foundInPlace(
  files: FileDestination,
  tree: SafeTree | undefined,
  e: TarballEntry,
  journalDone: boolean,
): Promise<'skipped' | 'present' | undefined> {
  try {
    if (tree) await tree.removeStaleTemp(e.path);
    if (journalDone) return (await sizeProblem(files, e, true)) ? undefined : 'present';
    return (await contentProblem(files, e)) ? undefined : 'skipped';
  } catch (err) {
    if (err instanceof DestinationError) return undefined; // written again, which reports the problem
    throw err;
  }
}

interface FinalCheck {
  /** Files on the destination with the listing's size (and content, where read back). */
  found: number;
  /** Of which read back (hashed) by this check. */
  readBack: number;
  /** Written again by this check (missing or different), of which left in place by the write pass, their bytes. */
  rewritten: number;
  rewrittenKept: number;
  rewrittenBytes: number;
  /** Files this check could not write again (the first 1000), and how many. */
  failures: FileFailure[];
  failureCount: number;
  /** The first files that are not right. */
  problems: { path: string; message: string }[];
}

/**
 * Looks at every file of the listing on the destination: there, with the listing's size; files not written or
 * read back by this run (the interrupted one left them) are read back and hashed. A file that is not right is
 * written again once (when `rewrite` is given) and looked at again. The count of the report comes from here.
 */
async function checkDestination(
  ctx: TarballContext,
  job: TarballJob,
  files: FileDestination,
  o: { readBack: (e: TarballEntry) => boolean; rewrite?: (e: TarballEntry) => Promise<Outcome> },
): Promise<FinalCheck> {
  const r: FinalCheck = {
    found: 0,
    readBack: 0,
    rewritten: 0,
    rewrittenKept: 0,
    rewrittenBytes: 0,
    failures: [],
    failureCount: 0,
    problems: [],
  };
  const problemOf = async (e: TarballEntry, readBack: boolean) => {
    try {
      return readBack ? await contentProblem(files, e) : await sizeProblem(files, e, false);
    } catch (err) {
      if (err instanceof RegbackupError && !(err instanceof InterruptedError)) return err.message;
      throw err;
    }
  };
  const one = async (e: TarballEntry) => {
    const readBack = o.readBack(e);
    let problem = await problemOf(e, readBack);
    let rewritten: Outcome | undefined;
    if (problem && o.rewrite) {
      rewritten = await o.rewrite(e);
      problem = rewritten.ok ? await problemOf(e, false) : rewritten.message;
    }
    return { e, readBack, problem, rewritten };
  };
  const listed = async function* () {
    for await (const e of entries(ctx, job)) if (!('refused' in e)) yield e;
  };
  for await (const x of orderedMap(listed(), ctx.parallel, one)) {
    if (ctx.signal?.aborted) throw interrupted();
    if (x.readBack) r.readBack++;
    if (x.rewritten?.ok) {
      r.rewritten++;
      if (x.readBack) r.rewrittenKept++;
      r.rewrittenBytes += x.e.size;
    } else if (x.rewritten) {
      if (r.failureCount++ < 1000)
        r.failures.push({ path: x.e.path, message: x.rewritten.message, kind: x.rewritten.kind });
      continue; // reported as a failure
    }
    if (!x.problem) r.found++;
    else if (r.problems.length < 20) r.problems.push({ path: x.e.path, message: x.problem });
  }
  return r;
}
