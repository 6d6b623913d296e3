import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Progress } from '../src/backup/progress.js';
import { readListing } from '../src/backup/listing.js';
import type { TarballSourceSnapshot } from '../src/backup/types.js';
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
import { checkEntry, type TarballEntry } from '../src/sources/tarballs/source.js';
import { comparePaths } from '../src/sources/tarballs/walk.js';
import type { ObjectStore } from '../src/store/types.js';
import { orderedMap } from '../src/util/ordered.js';
import type { BlobFetcher } from './fetch.js';
import { prefetch, StreamBytes } from './prefetch.js';
import { localRoot, restoreLocal } from './tarball-local.js';
import { putObject, writeFile, type Outcome } from './tarball-file.js';
import { SafeTree } from './safe-path.js';
import { showName } from '../src/repo/names.js';
import type { Journal } from './state.js';
import type { Check, TarballReport } from './types.js';

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
  const how = { sha1: 0, sha512: 0, size: 0, skipped: 0 };
  let flagged = 0;
  let refusedNames = 0;
  ctx.progress.phase = job.source.name;
  ctx.progress.bytesTotal += plan.bytes;

  const writeOne = async (e: TarballEntry, data: StreamBytes): Promise<Outcome> => {
    try {
      if (tree) return await writeFile(tree, e, data, resume);
      return await putObject((dest as { s3: ObjectStore }).s3, e, data, resume);
    } catch (err) {
      if (err instanceof DestinationError || err instanceof IntegrityError)
        return { path: e.path, ok: false, message: err.message };
      if (err instanceof RegbackupError) throw err;
      throw new DestinationError(
        `${plan.location}: writing ${JSON.stringify(e.path)} failed: ${messageOf(err)}`,
        { object: e.path },
      );
    }
  };

  if (!state.done) {
    const checkpoint = state.checkpoint;
    const todo = async function* () {
      for await (const e of entries(ctx, job)) {
        if ('refused' in e) {
          refusedNames++; // reported below; never written, and the restore is not done while one is left
          continue;
        }
        if (checkpoint !== undefined && comparePaths(e.path, checkpoint) <= 0) continue;
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
            resume,
            fallback: (e) => writeOne(e, new StreamBytes(e.data, ctx.fetcher)),
          },
          todo(),
        )
      : orderedMap(
          prefetch(todo(), (e) => [e.data], ctx.fetcher),
          ctx.parallel,
          ({ item, streams }) => writeOne(item, streams[0]!),
        );
    for await (const o of done) {
      if (ctx.signal?.aborted) {
        await durable();
        throw new InterruptedError(
          'restore interrupted; run the same command again to continue where it stopped',
        );
      }
      if (o.ok) {
        if (o.how === 'skipped') report.skipped++;
        else {
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
        if (report.failures.length < 1000) report.failures.push({ path: o.path, message: o.message });
      }
    }
    await durable();
    if (!stuck && !refusedNames) {
      state.done = true;
      journal?.touch(true);
    }
  }
  const written = how.sha1 + how.sha512 + how.size + how.skipped;
  const checks: Check[] = [
    {
      object: `${job.source.name} -> ${plan.location}`,
      check: 'files written and verified (size, and sha1/sha512 where recorded)',
      ok: report.failureCount === 0 && (state.done === true || written === plan.files),
      expected: plan.files,
      actual: state.done && !report.failureCount ? plan.files : written,
      details: [
        `${how.sha1} by sha1, ${how.sha512} by sha512, ${how.size} by size only (no checksum recorded), ${how.skipped} already in place`,
        ...report.failures.slice(0, 20).map((f) => `${JSON.stringify(f.path)}: ${f.message}`),
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
