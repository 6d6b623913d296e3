import { closeSync, createReadStream, mkdirSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/schema.js';
import { IntegrityError, KeyError, TargetError } from '../errors.js';
import type { Logger } from '../log.js';
import type { BlobIndex, PackInfo } from '../repo/blob-index.js';
import { Fanout } from '../repo/fanout.js';
import { BlobType } from '../repo/ids.js';
import { decodeIndexBody, encodeIndexBody, type IndexedPack } from '../repo/index-object.js';
import { packKey } from '../repo/pack.js';
import { BlobReader } from '../repo/reader.js';
import { META_PREFIX, type Repository } from '../repo/repository.js';
import { listSnapshots, type SnapshotInfo } from '../repo/snapshot.js';
import { catchUp } from '../repo/sync.js';
import { BlobWriter } from '../repo/writer.js';
import { ObjectNotFoundError, type ObjectInfo, type ObjectStore } from '../store/types.js';
import { retentionDaysOf } from '../config/load.js';
import { deletedKeys, loadMarks, sealMark, type Mark } from './marks.js';
import { scanReferences, type ReferenceStats } from './references.js';

/** Minimum storage durations (days) of the cold classes: deleting earlier is charged as if kept. */
export const MINIMUM_DAYS: Record<string, number> = {
  STANDARD: 0,
  INTELLIGENT_TIERING: 0,
  STANDARD_IA: 30,
  ONEZONE_IA: 30,
  GLACIER_IR: 90,
  NEARLINE: 30,
  COLDLINE: 90,
  ARCHIVE: 365,
};

export interface PruneOptions {
  logger: Logger;
  now?: Date;
  dryRun?: boolean;
  /** Overrides the configuration's prune.grace (ms). */
  grace?: number;
  repackThreshold?: number;
}

export interface TargetPruneReport {
  target: string;
  deletedPacks: number;
  freedBytes: number;
  repackedPacks: number;
  rewrittenIndexObjects: number;
  deletedMarks: number;
  /**
   * Packs kept although unneeded: younger than their storage class's minimum duration, or under retention.
   */
  keptYoung: number;
  keptRetention: number;
}

export interface PruneReport {
  dryRun: boolean;
  /**
   * Set when another prune was deleting in the repository at the same time: this run then deleted and
   * marked nothing (exit 0; the next run does the work). The other run's announcement.
   */
  deferred: { mark: string; host: string; since: string } | null;
  references: ReferenceStats;
  packs: { total: number; unneeded: number; sparse: number; orphaned: number; unneededBytes: number };
  /** Packs marked by this run (deleted by a later run, after the grace period). */
  marked: { packs: number; repack: number; bytes: number };
  /** Marks acted on by this run. */
  executed: number;
  targets: TargetPruneReport[];
  durationMs: number;
}

/** A pack of the index, and its stored bytes that a snapshot needs (live) or not (dead). */
export interface PackState {
  info: PackInfo;
  live: number;
  dead: number;
}

/** One prune run: what its steps share. */
interface PruneRun {
  config: Config;
  repo: Repository;
  opts: PruneOptions;
  started: number;
  now: Date;
  grace: number;
  dry: boolean;
  targets: readonly ObjectStore[];
  /** The first target: where the snapshots, the index and the marks are read. */
  store: ObjectStore;
  tmp: string;
  index: BlobIndex;
  reader: BlobReader;
  snapshots: SnapshotInfo[];
  marks: Mark[];
}

/** The packs against what the snapshots need. */
interface PackSurvey {
  references: ReferenceStats;
  states: Map<string, PackState>;
  /** The live blob IDs of each tree pack. */
  liveTree: Map<string, Buffer[]>;
  /** The live data blob records (with the restore identity only: data packs can then be rewritten). */
  liveFile?: string;
  /** The pack objects on the first target, by key. */
  objects: Map<string, ObjectInfo>;
  /** Packs on the first target that no index object names. */
  orphans: string[];
  keyOf: (id: string) => string;
  /** Packs no snapshot needs a blob of (orphans included). */
  unneeded: Set<string>;
  /** Packs mostly unneeded, to be rewritten. */
  sparse: Set<string>;
}

/**
 * `regbackup prune`: deletes data no snapshot needs, safely while backups run elsewhere (marks.ts). One run:
 * catch the targets up; find what every snapshot needs; act on marks older than the grace period (check
 * again, announce, check the snapshots written meanwhile, delete, rewrite index objects); mark what is
 * unneeded now. Tree packs that are mostly unneeded are rewritten; data packs only when every blob in them is
 * unneeded (rewriting content needs the restore identity, which the backup host does not hold).
 */
export async function prune(config: Config, repo: Repository, opts: PruneOptions): Promise<PruneReport> {
  const started = Date.now();
  const now = opts.now ?? new Date();
  const grace = opts.grace ?? config.prune.grace;
  const dry = Boolean(opts.dryRun);
  if (!repo.access.worker)
    throw new KeyError('prune needs the worker key (it writes marks and index objects)');
  if (!dry) await catchUpTargets(config, repo);
  const store = repo.targets[0]!;
  // Snapshots first, then the index: a backup writes its index objects before its snapshot, so every blob a
  // listed snapshot needs is in an index object listed after it.
  const snapshots = await listSnapshots(store);
  mkdirSync(repo.cacheDir, { recursive: true });
  const tmp = await mkdtemp(path.join(repo.cacheDir, 'prune-'));
  // An index of this run's own: a cache shared with another prune running on this host could be rebuilt
  // under it (the cache directory is one per name, not per process).
  const index = await repo.loadIndex(store, path.join(path.basename(tmp), 'index'));
  const reader = new BlobReader(repo, index, repo.targets);
  try {
    const marks = await loadMarks(repo, store);
    const run: PruneRun = {
      ...{ config, repo, opts, started, now, grace, dry, targets: repo.targets, store },
      ...{ tmp, index, reader, snapshots, marks },
    };
    // 1. What every snapshot needs, against what the index holds: live and dead bytes per pack.
    const survey = await surveyPacks(run, opts.repackThreshold ?? config.prune.repackThreshold);
    const report = emptyReport(run, survey);
    // Another prune deleting now: leave it the work (this run's view is out of date), before writing a thing.
    const busy = dry ? undefined : await rivalExecution(repo, store, '', marks, now, grace);
    if (busy) return deferTo(run, report, busy);
    // 2. Act on marks older than the grace period (and not being acted on: an abandoned execution is redone).
    const due = dueMarks(marks, now, grace);
    const acted =
      due.length && !dry ? await executeMarks(run, survey, report, due) : { kept: new Set<string>() };
    if ('rival' in acted) return deferTo(run, report, acted.rival);
    // 3. Mark what is unneeded now (and not yet marked); a later run deletes it.
    await markUnneeded(run, survey, report, due, acted.kept);
    if (!dry) await deleteOldRecords(run, report);
    report.durationMs = Date.now() - started;
    opts.logger.info(
      { deleted: report.targets[0]?.deletedPacks, marked: report.marked.packs, executed: report.executed },
      'prune finished',
    );
    return report;
  } finally {
    index.close();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Brings every target in line with the first; prune refuses to run on targets that differ. */
async function catchUpTargets(config: Config, repo: Repository): Promise<void> {
  const sync = await catchUp(repo, {
    // Read after the targets are listed: a deletion under way meanwhile is recorded before it starts.
    skip: async () => deletedKeys(await loadMarks(repo, repo.targets[0]!)),
    retentionDays: retentionDaysOf(config),
  });
  if (sync.failed.size) {
    const [t, e] = [...sync.failed][0]!;
    throw new IntegrityError(
      `target ${t} cannot be brought in line with the others (${(e as Error).message}); ` +
        'prune refuses to run on targets that differ',
    );
  }
}

/** Live and dead bytes per pack, the pack objects of the first target, which packs are (mostly) unneeded. */
async function surveyPacks(run: PruneRun, threshold: number): Promise<PackSurvey> {
  const { repo, reader, store, snapshots, tmp, index } = run;
  const refs = await scanReferences(repo, reader, store, snapshots, tmp);
  // With the restore identity, data packs can be rewritten too: their live blob IDs go to a file.
  const canRepackData = Boolean(repo.access.restore);
  const liveFile = canRepackData ? path.join(tmp, 'live-data') : undefined;
  const { states, liveTree } = await packStates(index, refs.ids, liveFile);
  const objects = new Map<string, ObjectInfo>();
  for (const prefix of ['data/', 'tree/']) for await (const o of store.list(prefix)) objects.set(o.key, o);
  const indexed = new Set(index.packs().map((p) => packKey(p.type, p.id)));
  const orphanKeys = new Map<string, string>();
  for (const k of objects.keys()) if (!indexed.has(k)) orphanKeys.set(k.slice(k.lastIndexOf('/') + 1), k);
  const orphans = [...orphanKeys.keys()];
  const keyOf = (id: string) => orphanKeys.get(id) ?? keyOfId(id, states);
  const unneeded = new Set([...states.values()].filter((s) => s.live === 0).map((s) => s.info.id));
  for (const o of orphans) unneeded.add(o);
  const sparse = sparsePacks(states.values(), threshold, canRepackData);
  return { references: refs.stats, states, liveTree, liveFile, objects, orphans, keyOf, unneeded, sparse };
}

/**
 * Packs worth rewriting: some blobs live, some dead, and the live share under `threshold`. Data packs only
 * when they can be rewritten (`canRepackData`: the restore identity is at hand).
 */
export function sparsePacks(
  states: Iterable<PackState>,
  threshold: number,
  canRepackData: boolean,
): Set<string> {
  const sparse = new Set<string>();
  for (const s of states) {
    const rewritable = s.info.type === BlobType.tree || canRepackData;
    if (s.live > 0 && s.dead > 0 && rewritable && s.live / (s.live + s.dead) < threshold)
      sparse.add(s.info.id);
  }
  return sparse;
}

function emptyReport(run: PruneRun, survey: PackSurvey): PruneReport {
  const { states, unneeded, objects, keyOf } = survey;
  return {
    dryRun: run.dry,
    deferred: null,
    references: survey.references,
    packs: {
      total: states.size,
      unneeded: unneeded.size,
      sparse: survey.sparse.size,
      orphaned: survey.orphans.length,
      unneededBytes: [...unneeded].reduce(
        (n, id) => n + (states.get(id)?.info.size ?? objects.get(keyOf(id))?.size ?? 0),
        0,
      ),
    },
    marked: { packs: 0, repack: 0, bytes: 0 },
    executed: 0,
    targets: run.targets.map((t) => ({
      target: t.name,
      deletedPacks: 0,
      freedBytes: 0,
      repackedPacks: 0,
      rewrittenIndexObjects: 0,
      deletedMarks: 0,
      keptYoung: 0,
      keptRetention: 0,
    })),
    durationMs: 0,
  };
}

function targetReport(report: PruneReport, name: string): TargetPruneReport {
  return report.targets.find((t) => t.target === name)!;
}

/** Another prune is deleting: this run leaves it the work and reports that. */
function deferTo(run: PruneRun, report: PruneReport, other: Mark): PruneReport {
  report.deferred = { mark: other.key, host: other.body.host, since: other.body.time };
  run.opts.logger.warn(
    { other: other.key, host: other.body.host, since: other.body.time },
    'another prune is deleting in this repository; this run deleted and marked nothing (the next run will)',
  );
  report.durationMs = Date.now() - run.started;
  return report;
}

/** Marks older than the grace period that no execution acts on (an abandoned execution does not count). */
export function dueMarks(marks: readonly Mark[], now: Date, grace: number): Mark[] {
  const executedOf = new Set(
    marks
      .filter((m) => m.body.kind === 'executed' && m.body.of && !abandoned(m, now, grace))
      .map((m) => m.body.of!),
  );
  return marks.filter(
    (m) =>
      m.body.kind === 'marked' && !executedOf.has(m.key) && now.getTime() - Date.parse(m.body.time) >= grace,
  );
}

/**
 * Acts on the due marks: keeps what is not free to delete yet, announces the deletion, keeps what snapshots
 * written since the scan need, rewrites sparse packs and the index objects, deletes. Returns the packs kept
 * marked, or the other prune found deleting (then this run withdrew its announcement and deleted nothing).
 */
async function executeMarks(
  run: PruneRun,
  survey: PackSurvey,
  report: PruneReport,
  due: Mark[],
): Promise<{ kept: Set<string> } | { rival: Mark }> {
  const { repo, targets, store, marks, now, grace, config } = run;
  let del = new Set(due.flatMap((m) => m.body.packs).filter((p) => survey.unneeded.has(p)));
  const rep = new Set(due.flatMap((m) => m.body.repack).filter((p) => survey.sparse.has(p) && !del.has(p)));
  // Cost-aware and retention-aware: a pack is deleted (or rewritten) on a target only when that is free.
  const kept = keptOnTargets(run, survey, report, [...del, ...rep]);
  del = new Set([...del].filter((p) => !kept.has(p)));
  const repack = [...rep].filter((p) => !kept.has(p));

  // Announce before deleting: a backup committing from now on sees it and refuses if it used these packs.
  const intent = await sealMark(
    repo,
    {
      kind: 'executed',
      packs: [...del],
      repack,
      of: due[due.length - 1]!.key,
      deletes: due.map((m) => m.key),
    },
    now,
  );
  await new Fanout(targets).put(intent.key, intent.bytes);
  // Two prunes never delete at once: the one that sees another's announcement withdraws its own.
  const rival = await rivalExecution(repo, store, intent.key, marks, now, grace);
  if (rival) {
    for (const t of targets) await t.delete(intent.key);
    return { rival };
  }
  await keepWhatNewerSnapshotsNeed(run, del, repack);
  // Rewrite the live blobs of sparse packs into new packs first (blob for blob: same IDs).
  if (repack.length) {
    await repackSparse(run, survey, repack);
    for (const t of targets) targetReport(report, t.name).repackedPacks += repack.length;
  }
  const gone = new Set([...del, ...repack]);
  // Index objects that name a pack about to go are rewritten without it (before the packs go).
  await rewriteIndexObjects(
    repo,
    targets,
    gone,
    retentionDaysOf(config),
    intent.key,
    now,
    (t) => targetReport(report, t).rewrittenIndexObjects++,
  );
  for (const t of targets) {
    const tr = targetReport(report, t.name);
    for (const id of gone) {
      const key = survey.keyOf(id);
      const size = survey.objects.get(key)?.size ?? 0;
      await t.delete(key);
      tr.deletedPacks++;
      tr.freedBytes += size;
    }
    for (const m of due) {
      await t.delete(m.key);
      tr.deletedMarks++;
    }
  }
  report.executed = due.length;
  return { kept };
}

/** The minimum storage duration (days) of a target's storage class: deleting earlier costs as if kept. */
function minimumDaysOf(config: Config, target: string): number {
  const storageClass = config.targets.find((c) => c.name === target)?.storageClass ?? 'STANDARD';
  return config.prices[storageClass]?.minimumDays ?? MINIMUM_DAYS[storageClass] ?? 0;
}

/**
 * Why an unneeded pack stays on a target for now: younger than its storage class's minimum duration
 * (`young`), or than the target's retention lock (`retention`); undefined when it can go.
 */
export function keepReason(
  ageDays: number,
  minimumDays: number,
  lockDays: number,
): 'young' | 'retention' | undefined {
  if (ageDays < minimumDays) return 'young';
  if (ageDays < lockDays) return 'retention';
  return undefined;
}

/** The packs of `ids` that some target must keep for now (counted per target in the report). */
function keptOnTargets(run: PruneRun, survey: PackSurvey, report: PruneReport, ids: string[]): Set<string> {
  const kept = new Set<string>();
  const lock = retentionDaysOf(run.config);
  for (const t of run.targets) {
    const minDays = minimumDaysOf(run.config, t.name);
    const lockDays = lock.get(t.name) ?? 0;
    const tr = targetReport(report, t.name);
    for (const id of ids) {
      const o = survey.objects.get(survey.keyOf(id));
      const age = o?.mtime ? (run.now.getTime() - o.mtime.getTime()) / 86_400_000 : Infinity;
      const why = keepReason(age, minDays, lockDays);
      if (why === 'young') tr.keptYoung++;
      else if (why === 'retention') tr.keptRetention++;
      if (why) kept.add(id);
    }
  }
  return kept;
}

/**
 * Snapshots committed since the scan (before the announcement) keep what they need: taken out of `del` and
 * `repack`.
 */
async function keepWhatNewerSnapshotsNeed(run: PruneRun, del: Set<string>, repack: string[]): Promise<void> {
  const { repo, reader, store, index, tmp } = run;
  const seen = new Set(run.snapshots.map((s) => s.id));
  const newer = (await listSnapshots(store)).filter((s) => !seen.has(s.id));
  if (!newer.length) return;
  // Their blobs may be in index objects written since the index was loaded.
  await repo.updateIndex(index, store);
  const more = await scanReferences(repo, reader, store, newer, tmp);
  const { states: needed } = await packStates(index, more.ids);
  for (const [id, s] of needed) {
    if (s.live > 0) {
      del.delete(id);
      const i = repack.indexOf(id);
      if (i >= 0) repack.splice(i, 1);
    }
  }
}

/** Writes the live blobs of the sparse packs into new packs; a target that missed one stops the run. */
async function repackSparse(run: PruneRun, survey: PackSurvey, repack: string[]): Promise<void> {
  const { repo, index, reader, targets } = run;
  // Rewritten packs are new objects: locked as a backup's own, on targets that lock.
  const packFan = new Fanout(targets, retentionDaysOf(run.config));
  const writer = new BlobWriter(repo, index, packFan, { workers: 1, exclude: new Set(repack) });
  try {
    for (const id of repack)
      for (const blob of survey.liveTree.get(id) ?? [])
        await writer.write(await reader.read(blob), 'blob-tree');
    if (survey.liveFile) {
      const wanted = new Set(
        repack
          .map((id) => index.packById(id))
          .filter((p) => p?.type === BlobType.data)
          .map((p) => p!.id),
      );
      for await (const { packId, id } of liveRecords(survey.liveFile, index)) {
        if (wanted.has(packId)) await writer.write(await reader.read(id), 'blob-data');
      }
    }
    await writer.flush();
  } finally {
    await writer.close();
  }
  // A target that missed a rewritten pack must keep the old ones: stop before anything is deleted.
  const behind = [...packFan.failed][0];
  if (behind)
    throw new TargetError(
      `prune: target ${behind[0]} failed while packs were rewritten (${behind[1].message}); ` +
        'nothing was deleted',
    );
}

/**
 * What to mark now: unneeded (and sparse) packs no earlier mark names, without those a due mark names and
 * this run deleted (or rewrote); the packs `kept` by this run's execution are marked again.
 */
export function packsToMark(
  marks: readonly Mark[],
  due: readonly Mark[],
  unneeded: ReadonlySet<string>,
  sparse: ReadonlySet<string>,
  kept: ReadonlySet<string>,
  dry: boolean,
): { packs: string[]; repack: string[] } {
  const pending = new Set(
    marks
      .filter((m) => m.body.kind === 'marked' && !due.includes(m))
      .flatMap((m) => [...m.body.packs, ...m.body.repack]),
  );
  for (const p of kept) pending.delete(p);
  const packs = [...unneeded].filter(
    (p) => !pending.has(p) && (dry || !due.some((m) => m.body.packs.includes(p)) || kept.has(p)),
  );
  const repack = [...sparse].filter(
    (p) =>
      !pending.has(p) &&
      !unneeded.has(p) &&
      (dry || !due.some((m) => m.body.repack.includes(p)) || kept.has(p)),
  );
  return { packs, repack };
}

async function markUnneeded(
  run: PruneRun,
  survey: PackSurvey,
  report: PruneReport,
  due: Mark[],
  kept: Set<string>,
): Promise<void> {
  const { packs, repack } = packsToMark(run.marks, due, survey.unneeded, survey.sparse, kept, run.dry);
  report.marked = {
    packs: packs.length,
    repack: repack.length,
    bytes: packs.reduce((n, id) => n + (survey.objects.get(survey.keyOf(id))?.size ?? 0), 0),
  };
  if (!run.dry && packs.length + repack.length > 0) {
    const m = await sealMark(run.repo, { kind: 'marked', packs, repack }, run.now);
    await new Fanout(run.targets).put(m.key, m.bytes);
  }
}

/**
 * Execution and forget records old enough to go: kept long enough for backups running meanwhile to check
 * against them, and for every target to have done the deletion (a target under retention deletes late).
 */
export function oldRecords(marks: readonly Mark[], now: Date, grace: number): Mark[] {
  return marks.filter(
    (m) =>
      (m.body.kind === 'executed' || m.body.kind === 'forgotten') &&
      now.getTime() - Date.parse(m.body.time) > Math.max(grace * 4, 30 * 86_400_000),
  );
}

async function deleteOldRecords(run: PruneRun, report: PruneReport): Promise<void> {
  for (const m of oldRecords(run.marks, run.now, run.grace)) {
    for (const t of run.targets) {
      await t.delete(m.key);
      targetReport(report, t.name).deletedMarks++;
    }
  }
}

function keyOfId(id: string, states: Map<string, PackState>): string {
  const s = states.get(id);
  // Orphans (not in the index) may be data or tree packs: the object listing holds their real key.
  return s ? packKey(s.info.type, id) : `data/${id.slice(0, 2)}/${id}`;
}

/**
 * Live and dead stored bytes per pack: a merge of the index (in blob-ID order) with the needed IDs; and the
 * live blob IDs of every tree pack (few: listings), for rewriting sparse ones.
 */
async function packStates(
  index: BlobIndex,
  needed: AsyncGenerator<string>,
  liveDataFile?: string,
): Promise<{ states: Map<string, PackState>; liveTree: Map<string, Buffer[]> }> {
  const states = new Map<string, PackState>();
  const liveTree = new Map<string, Buffer[]>();
  for (const p of index.packs()) states.set(p.id, { info: p, live: 0, dead: 0 });
  const fd = liveDataFile ? openSync(liveDataFile, 'w') : undefined;
  const rec = Buffer.alloc(36);
  try {
    let next = await needed.next();
    for (const { id, loc } of index.records()) {
      const hex = id.toString('hex');
      while (!next.done && next.value < hex) next = await needed.next();
      const s = states.get(loc.pack.id)!;
      if (!next.done && next.value === hex) {
        s.live += loc.length;
        if (loc.type === BlobType.tree)
          (liveTree.get(loc.pack.id) ?? liveTree.set(loc.pack.id, []).get(loc.pack.id)!).push(
            Buffer.from(id),
          );
        else if (fd !== undefined) {
          rec.writeUInt32LE(loc.packNo, 0);
          id.copy(rec, 4);
          writeSync(fd, rec);
        }
      } else s.dead += loc.length;
    }
    // Drain (and close) the sorted stream.
    while (!next.done) next = await needed.next();
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return { states, liveTree };
}

/** The live data blobs written by packStates: (pack, blob ID) records. */
async function* liveRecords(file: string, index: BlobIndex): AsyncGenerator<{ packId: string; id: Buffer }> {
  const packs = index.packs();
  let carry = Buffer.alloc(0);
  for await (const piece of createReadStream(file, { highWaterMark: 36 * 8192 })) {
    const buf = carry.length ? Buffer.concat([carry, piece as Buffer]) : (piece as Buffer);
    const whole = buf.length - (buf.length % 36);
    for (let at = 0; at < whole; at += 36)
      yield { packId: packs[buf.readUInt32LE(at)]!.id, id: Buffer.from(buf.subarray(at + 4, at + 36)) };
    carry = Buffer.from(buf.subarray(whole));
  }
}

/**
 * Another prune's deletion that this run must not overlap (docs/FORMAT.md §14): an execution record other
 * than `mine` that appeared since this run read the marks (its view of the packs may be out of date), or
 * one still under way — the mark it acts on is still there — and younger than the time after which an
 * unfinished execution counts as abandoned. Both runs write their announcement before they look, so of two
 * prunes at once at least one sees the other.
 */
async function rivalExecution(
  repo: Repository,
  store: ObjectStore,
  mine: string,
  seen: readonly Mark[],
  now: Date,
  grace: number,
): Promise<Mark | undefined> {
  const before = new Set(seen.map((m) => m.key));
  const marks = await loadMarks(repo, store);
  const marked = new Set(marks.filter((m) => m.body.kind === 'marked').map((m) => m.key));
  return marks.find(
    (m) =>
      m.key !== mine &&
      m.body.kind === 'executed' &&
      (!before.has(m.key) || (m.body.of !== undefined && marked.has(m.body.of) && !abandoned(m, now, grace))),
  );
}

/** An execution record old enough that, if its mark is still there, the run that wrote it stopped. */
function abandoned(m: Mark, now: Date, grace: number): boolean {
  return now.getTime() - Date.parse(m.body.time) >= Math.max(grace, ABANDONED_EXECUTION_MS);
}

/** An execution whose mark is still there after this long (at least the grace period) was abandoned. */
const ABANDONED_EXECUTION_MS = 6 * 3_600_000;

/** How many times the index objects are listed again while they keep changing under a rewrite. */
const INDEX_LISTINGS = 10;

/**
 * Rewrites the index objects that name a pack in `gone`: what they say about the other packs goes into new
 * index objects (consolidated: one per 20,000 packs, not one per rewritten object), then the old ones are
 * deleted, on every target — after a record of their deletion (so that catching a target up never copies
 * them back). A backup may add index objects meanwhile, and an index object listed may be gone when read
 * (deleted by a prune that finished just before this one announced itself): the listing is read again until
 * no index object names a pack in `gone`.
 */
async function rewriteIndexObjects(
  repo: Repository,
  targets: readonly ObjectStore[],
  gone: Set<string>,
  retentionDays: ReadonlyMap<string, number>,
  intent: string,
  now: Date,
  onRewrite: (target: string) => void,
): Promise<void> {
  if (gone.size === 0) return;
  const store = targets[0]!;
  const clean = new Set<string>();
  for (let attempt = 1; ; attempt++) {
    const keys: string[] = [];
    for await (const o of store.list(META_PREFIX.index)) if (!clean.has(o.key)) keys.push(o.key);
    const fan = new Fanout(targets, retentionDays);
    const affected: string[] = [];
    let vanished = 0;
    let keep: IndexedPack[] = [];
    const flush = async () => {
      if (keep.length === 0) return;
      const sealed = await repo.sealMeta('index', encodeIndexBody(keep));
      await fan.put(sealed.key, sealed.bytes);
      clean.add(sealed.key);
      keep = [];
    };
    for (const key of keys) {
      let body: Buffer;
      try {
        body = await repo.readMeta('index', key, store);
      } catch (err) {
        if (!(err instanceof ObjectNotFoundError)) throw err;
        vanished++;
        continue;
      }
      const packs = decodeIndexBody(body, key);
      if (!packs.some((p) => gone.has(p.info.id))) {
        clean.add(key);
        continue;
      }
      affected.push(key);
      keep.push(...packs.filter((p) => !gone.has(p.info.id)));
      if (keep.length >= 20_000) await flush();
    }
    await flush();
    const behind = [...fan.failed][0];
    if (behind)
      throw new TargetError(
        `prune: target ${behind[0]} failed while index objects were rewritten (${behind[1].message}); ` +
          'nothing was deleted',
      );
    if (affected.length) {
      const record = await sealMark(
        repo,
        { kind: 'executed', packs: [], repack: [], of: intent, deletes: affected },
        now,
      );
      await new Fanout(targets).put(record.key, record.bytes);
      // The new index objects are on every target before an old one goes: a reader never misses a pack.
      for (const key of affected) {
        for (const t of targets) {
          await t.delete(key);
          onRewrite(t.name);
        }
      }
    }
    if (affected.length === 0 && vanished === 0) return;
    if (attempt >= INDEX_LISTINGS)
      throw new TargetError(
        `prune: the index objects on ${store.name} kept changing while they were rewritten ` +
          `(${vanished} listed but gone); no pack was deleted — run prune again`,
      );
  }
}

export type { SnapshotInfo, Mark };
