import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { TarballSourceConfig } from '../../config/schema.js';
import { readListing } from '../../repo/format/listing.js';
import type { BackupContext, Finding, PartResult } from '../types.js';
import type { TarballExpectation, TarballSourceSnapshot } from '../../repo/format/source-snapshots.js';
import { IntegrityError, InterruptedError, messageOf, SourceError, systemCodeOf } from '../../errors.js';
import type { BlobReader } from '../../repo/reader.js';
import { chunkIds, readStream, refFromChunks, writeStream, type StreamRef } from '../../repo/stream-ref.js';
import { openTarballStore, type TarballStore } from './store.js';
import { showName } from '../../repo/names.js';
import { inShard, type Shard, type WalkEntry } from './walk.js';
import { comparePaths } from '../../repo/format/order.js';
import {
  entryOf,
  readListingLines,
  type EntryHead,
  type ListingLine,
  type TarballEntry,
} from '../../repo/format/tarball-listing.js';
import { FILE_CHANGED, JobError } from '../../repo/writer.js';

function checkExpectation(v: unknown): TarballExpectation {
  const e = v as TarballExpectation;
  if (!e || typeof e.path !== 'string' || typeof e.doc !== 'string') throw new Error('bad expectation');
  return e;
}

/** Merges several sorted expectation streams into one (k-way, streaming). */
async function* mergeExpectations(
  streams: AsyncIterable<TarballExpectation>[],
): AsyncGenerator<TarballExpectation> {
  const its = streams.map((s) => s[Symbol.asyncIterator]());
  const heads = await Promise.all(its.map((i) => i.next()));
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      if (heads[i]!.done) continue;
      if (best < 0 || comparePaths(heads[i]!.value.path, heads[best]!.value.path) < 0) best = i;
    }
    if (best < 0) return;
    yield heads[best]!.value as TarballExpectation;
    heads[best] = await its[best]!.next();
  }
}

/** Collapses equal paths (a tarball referenced twice, e.g. by two databases) into the first. */
async function* uniquePaths(src: AsyncIterable<TarballExpectation>): AsyncGenerator<TarballExpectation> {
  let last: string | undefined;
  for await (const e of src) {
    if (e.path === last) continue;
    last = e.path;
    yield e;
  }
}

const MAX_LISTED_FINDINGS = 1000;
/**
 * Files being stored at once. Small files are latency-bound (each is a round trip to a writer thread and back
 * to decide which chunks are new): many in flight let the writer batch them into few messages. Bytes in flight
 * stay bounded by the writer's own budget (room()).
 */
const FILES_IN_FLIGHT = 256;
const MAX_LOGGED_FINDINGS = 100;

type Counters = {
  missing: number;
  mismatch: number;
  verified: number;
  unverified: number;
  read: number;
  reused: number;
  problems: number;
  refused: number;
};

/** A file of the walk, as listed (an S3 store adds its ETag). */
type StoreFile = WalkEntry & { kind: 'file'; etag?: string };

/**
 * One file to back up: the walk's entry, the previous snapshot's line (passed on as it is when the file is
 * unchanged; parsed whole only when it is not), and what a packument of the run expects.
 */
type Job = { file: StoreFile; prev?: ListingLine; exp?: TarballExpectation };

/**
 * Entries flow through the backup in batches (of the walk, of the stored listing): a store holds millions of
 * small files, and one await per file per stage made an incremental run cost several times its walk.
 */
const BATCH = 1024;
/** Listing lines waiting behind a file still being stored, at most (memory stays bounded). */
const MAX_WAITING_LINES = 16 * 1024;
/** The listing is handed to the writer in pieces of about this many characters. */
const PIECE = 256 * 1024;

/** The findings and counters of one tarball source's backup. */
class Findings {
  readonly list: Finding[] = [];
  readonly counters: Counters = {
    missing: 0,
    mismatch: 0,
    verified: 0,
    unverified: 0,
    read: 0,
    reused: 0,
    problems: 0,
    refused: 0,
  };
  constructor(
    private readonly source: string,
    private readonly ctx: BackupContext,
  ) {}

  report(f: Omit<Finding, 'source'>, counter?: keyof Counters): void {
    const { counters, ctx, source } = this;
    if (counter) counters[counter]++;
    const n = counter ? counters[counter] : 0;
    if (!counter || n <= MAX_LISTED_FINDINGS) this.list.push({ source, ...f });
    if (f.severity === 'info') return;
    // A store that lacks tens of thousands of tarballs must not flood the log: the first of each kind are
    // logged, the rest counted (the run's summary and --json give the count).
    if (!counter || n <= MAX_LOGGED_FINDINGS)
      ctx.log.warn({ source, object: f.object, code: f.code }, f.message);
    else if (n === MAX_LOGGED_FINDINGS + 1)
      ctx.log.warn(
        { source, code: f.code },
        `more than ${MAX_LOGGED_FINDINGS} findings of this kind (${f.code}): the rest are counted, not logged`,
      );
  }
}

/** What a backup of a tarball source is to do: its inputs, joined into jobs in listing order. */
interface TarballPlan {
  cfg: TarballSourceConfig;
  ctx: BackupContext;
  store: TarballStore;
  findings: Findings;
  /** The jobs in listing order, in batches. */
  jobs: AsyncIterable<Job[]>;
  /** Files stored or reused, and their bytes (a file kept at its previous version after a failed read is not counted). */
  totals: { files: number; bytes: number };
}

/**
 * Backs up a tarball store: walks it in listing order, reuses the previous snapshot's entry for every file
 * whose size and modification time (or ETag) are unchanged, reads and stores the others, and checks each file
 * against the dist.shasum / dist.integrity of the packuments read in the same run. Tarballs those packuments
 * refer to that are not in the store are reported.
 */
export async function backupTarballSource(
  cfg: TarballSourceConfig,
  ctx: BackupContext,
  expectations: StreamRef[] = [],
  store: TarballStore = openTarballStore(cfg),
  shard?: Shard,
): Promise<PartResult<TarballSourceSnapshot>> {
  const plan = await planTarballBackup(cfg, ctx, expectations, store, shard);
  const listing = await writeStream(ctx.writer, listingPieces(plan), 'tree');
  return reportTarballBackup(plan, listing);
}

/** A line of the new listing: known (an unchanged file's line), or once its file is stored. */
type Slot = { done: boolean; line?: string; wait?: Promise<void> };

/**
 * The new listing, in pieces: each job's line in listing order. An unchanged file's line is the previous
 * listing's line as stored (no parse-and-encode round trip); the other files are stored, up to
 * FILES_IN_FLIGHT at once, and their lines wait in order.
 */
async function* listingPieces(plan: TarballPlan): AsyncGenerator<Buffer> {
  const { cfg, ctx, findings, totals } = plan;
  const slots: Slot[] = [];
  let head = 0;
  let storing = 0;
  let parts: string[] = [];
  let size = 0;
  // An interruption (SIGTERM, a job's grace period over) stops the wait for files in flight at once: every
  // file may already have been handed to the writer, so no later per-file check would see it.
  const interrupted = () => new InterruptedError(`backup of ${cfg.name} interrupted`);
  let onAbort = () => {};
  const abort = new Promise<never>((_, reject) => {
    onAbort = () => reject(interrupted());
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener('abort', onAbort, { once: true });
  });
  abort.catch(() => undefined); // raced below; this only keeps it from being "unhandled" when unused
  /** Moves the lines known at the head into the piece; with `wait`, waits while too much is pending. */
  const settle = async (wait: 'bounded' | 'all') => {
    while (head < slots.length) {
      const slot = slots[head]!;
      if (!slot.done) {
        const tooMany = storing >= FILES_IN_FLIGHT || slots.length - head >= MAX_WAITING_LINES;
        if (wait === 'bounded' && !tooMany) break;
        await Promise.race([slot.wait, abort]);
      }
      slots[head++] = undefined as unknown as Slot;
      if (slot.line !== undefined) {
        parts.push(slot.line);
        size += slot.line.length;
      }
    }
    if (head > 4096 && head * 2 > slots.length) {
      slots.splice(0, head);
      head = 0;
    }
  };
  const piece = () => {
    const b = Buffer.from(parts.join('\n') + '\n');
    parts = [];
    size = 0;
    return b;
  };
  try {
    for await (const jobs of plan.jobs) {
      if (ctx.signal.aborted) throw interrupted();
      for (const job of jobs) {
        if (ctx.signal.aborted) throw interrupted();
        const { file, prev: p, exp } = job;
        if (p && !exp && unchanged(file, p.head)) {
          findings.counters.reused++;
          totals.files++;
          totals.bytes += p.head.size;
          ctx.progress.files++;
          slots.push({ done: true, line: p.line });
          continue;
        }
        const slot: Slot = { done: false };
        storing++;
        slot.wait = backUpFile(plan, job).then((e) => {
          slot.line = e && JSON.stringify(e);
          slot.done = true;
          storing--;
        });
        slot.wait.catch(() => undefined); // awaited in order by settle; this only keeps an early failure from being "unhandled"
        slots.push(slot);
        if (storing >= FILES_IN_FLIGHT) await settle('bounded');
      }
      await settle('bounded');
      if (size >= PIECE) yield piece();
    }
    await settle('all');
    if (parts.length) yield piece();
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    // On a failure, an interruption or a consumer that stopped: the files still being stored finish (or
    // fail) before the part returns, so nothing writes into the writer after the part is over.
    await Promise.allSettled(slots.slice(head).flatMap((x) => (x && !x.done && x.wait ? [x.wait] : [])));
  }
}

/** Reused only when size and modification time (an S3 store: size and ETag) are exactly as listed before. */
function unchanged<T extends EntryHead>(file: StoreFile, p: T | undefined): p is T {
  return Boolean(
    p && p.size === file.size && (file.etag !== undefined ? p.etag === file.etag : p.mtime === file.mtimeMs),
  );
}

/** Plans the backup: the previous listing (when it can be read), the expectations, the walk, joined. */
async function planTarballBackup(
  cfg: TarballSourceConfig,
  ctx: BackupContext,
  expectations: StreamRef[],
  store: TarballStore,
  shard: Shard | undefined,
): Promise<TarballPlan> {
  const findings = new Findings(cfg.name, ctx);
  const only = async function* <T extends { path: string }>(src: AsyncIterable<T>): AsyncGenerator<T> {
    for await (const e of src) if (inShard(e.path, shard)) yield e;
  };
  const prevEntries = await previousEntries(cfg, ctx, findings, shard);
  const expected: AsyncIterable<TarballExpectation[]> =
    expectations.length && ctx.reader
      ? inBatches(
          only(
            uniquePaths(
              mergeExpectations(
                expectations.map((r) =>
                  readListing(ctx.reader!, r, checkExpectation, 'tarball expectations'),
                ),
              ),
            ),
          ),
        )
      : (async function* () {})();
  const files = walkedFiles(cfg, store, ctx, findings, shard);
  const jobs = joinJobs(files, prevEntries, expected, findings);
  return { cfg, ctx, store, findings, jobs, totals: { files: 0, bytes: 0 } };
}

/**
 * The previous snapshot's entries, in listing order; none when there is no previous snapshot or its listing
 * names blobs no readable index object names (one bad on every target): every file is then read afresh,
 * said as with a database (`fallback-full`).
 */
async function previousEntries(
  cfg: TarballSourceConfig,
  ctx: BackupContext,
  findings: Findings,
  shard: Shard | undefined,
): Promise<AsyncIterable<ListingLine[]>> {
  let prev = ctx.previous as TarballSourceSnapshot | undefined;
  if (prev?.listing && ctx.reader) {
    const missing = await unindexedChunk(ctx.reader, prev.listing);
    if (missing) {
      findings.report({
        severity: 'info',
        code: 'fallback-full',
        object: cfg.name,
        message: `full read instead of an incremental one: the previous listing cannot be read (${missing})`,
      });
      prev = undefined;
    }
  }
  // The ETA of the tarball phase: about as many files as last time (a part of a sharded run counts its own).
  if (prev && !shard) ctx.progress.filesTotal += prev.files;
  if (!prev?.listing || !ctx.reader) return (async function* () {})();
  const batches = readListingLines(readStream(ctx.reader, prev.listing), previousWhat(cfg), (r) => {
    // Written by an older version: not carried over (a file of that name still in the store is refused by the
    // walk, and reported there).
    if (typeof r.refused.raw === 'string' && !inShard(r.refused.raw, shard)) return;
    findings.report(
      {
        severity: 'warning',
        code: 'tarball-name-refused',
        object: showName(r.refused.raw),
        message: `the previous snapshot lists ${showName(r.refused.raw)}, a name a snapshot cannot hold (it ${r.refused.reason}); not carried over`,
      },
      'refused',
    );
  });
  if (!shard) return batches;
  return (async function* () {
    for await (const b of batches) yield b.filter((e) => inShard(e.head.path, shard));
  })();
}

const previousWhat = (cfg: TarballSourceConfig) => `previous listing of ${cfg.name}`;

/** Groups a stream into arrays (for a store that lists one entry at a time). */
async function* inBatches<T>(src: AsyncIterable<T>): AsyncGenerator<T[]> {
  let batch: T[] = [];
  for await (const e of src) {
    batch.push(e);
    if (batch.length >= BATCH) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

/** Reads a stream of batches one item at a time, without an await per item (only one per batch). */
class Cursor<T> {
  private batch: T[] = [];
  private at = 0;
  private ended = false;
  private readonly it: AsyncIterator<T[]>;
  constructor(src: AsyncIterable<T[]>) {
    this.it = src[Symbol.asyncIterator]();
  }

  /** The current item when its batch is read (else undefined: see `ended` and fill()). */
  peek(): T | undefined {
    return this.batch[this.at];
  }

  /** Whether the source is read to its end. */
  get done(): boolean {
    return this.ended;
  }

  /** Reads the next batch; the current item, or undefined at the end. */
  async fill(): Promise<T | undefined> {
    while (this.at >= this.batch.length) {
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        this.batch = [];
        this.at = 0;
        return undefined;
      }
      this.batch = r.value;
      this.at = 0;
    }
    return this.batch[this.at];
  }

  next(): void {
    this.at++;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/** The store's files in listing order, in batches; the walk's problems are reported as they come. */
async function* walkedFiles(
  cfg: TarballSourceConfig,
  store: TarballStore,
  ctx: BackupContext,
  findings: Findings,
  shard: Shard | undefined,
): AsyncGenerator<StoreFile[]> {
  let walked: AsyncIterable<(WalkEntry & { etag?: string })[]>;
  try {
    walked = store.batches ? store.batches(ctx.tmpDir, shard) : inBatches(store.entries(ctx.tmpDir, shard));
  } catch (err) {
    throw new SourceError(`tarball source ${cfg.name}: cannot list ${store.location}: ${messageOf(err)}`, {
      source: cfg.name,
    });
  }
  try {
    for await (const batch of walked) {
      const files: StoreFile[] = [];
      for (const e of batch) {
        if (e.kind === 'problem') {
          findings.report(
            {
              severity: e.severity,
              code: e.refused ? 'tarball-name-refused' : 'tarball-unreadable',
              object: e.path,
              message: `${e.path} ${e.problem}`,
            },
            e.refused ? 'refused' : 'problems',
          );
          continue;
        }
        files.push(e);
      }
      if (files.length) yield files;
    }
  } catch (err) {
    const code = systemCodeOf(err);
    throw new SourceError(
      `tarball source ${cfg.name}: cannot read ${store.location}${code === 'ENOENT' ? ' (no such directory)' : ''}: ${messageOf(err)}`,
      { source: cfg.name },
    );
  }
}

/**
 * Joins the walk with the previous entries and the expectations (all in listing order), a batch of the walk
 * at a time; expected files not in the store are reported.
 */
async function* joinJobs(
  files: AsyncIterable<StoreFile[]>,
  prevEntries: AsyncIterable<ListingLine[]>,
  expected: AsyncIterable<TarballExpectation[]>,
  findings: Findings,
): AsyncGenerator<Job[]> {
  const prev = new Cursor(prevEntries);
  const exps = new Cursor(expected);
  const walk = files[Symbol.asyncIterator]();
  // Every input is closed when the join ends early (the consumer stopped, or failed): a generator left
  // suspended keeps what it holds (a walker's worker thread, an open listing) alive.
  try {
    for (;;) {
      const r = await walk.next();
      if (r.done) break;
      const jobs: Job[] = [];
      for (const file of r.value) {
        // Previous entries before this file: files deleted since.
        let p = prev.peek() ?? (prev.done ? undefined : await prev.fill());
        while (p && p.head.path !== file.path && comparePaths(p.head.path, file.path) < 0) {
          prev.next();
          p = prev.peek() ?? (prev.done ? undefined : await prev.fill());
        }
        let e = exps.peek() ?? (exps.done ? undefined : await exps.fill());
        while (e && e.path !== file.path && comparePaths(e.path, file.path) < 0) {
          reportMissing(findings, e);
          exps.next();
          e = exps.peek() ?? (exps.done ? undefined : await exps.fill());
        }
        const job: Job = { file };
        if (p && p.head.path === file.path) {
          job.prev = p;
          prev.next();
        }
        if (e && e.path === file.path) {
          job.exp = e;
          exps.next();
        }
        jobs.push(job);
      }
      if (jobs.length) yield jobs;
    }
    for (
      let e = exps.peek() ?? (exps.done ? undefined : await exps.fill());
      e;
      e = exps.peek() ?? (exps.done ? undefined : await exps.fill())
    ) {
      reportMissing(findings, e);
      exps.next();
    }
  } finally {
    await Promise.allSettled([walk.return?.(), prev.close(), exps.close()]);
  }
}

function reportMissing(findings: Findings, exp: TarballExpectation): void {
  findings.report(
    {
      severity: 'warning',
      code: 'tarball-missing',
      object: exp.path,
      message: `${exp.path} is referenced by ${exp.db}/${exp.doc} but missing from the store`,
    },
    'missing',
  );
}

/**
 * One file: its previous entry when unchanged, else read and stored. A file that cannot be read (or kept
 * changing while read) is reported and keeps its previous version, if any: nothing stored is lost.
 */
async function backUpFile(plan: TarballPlan, job: Job): Promise<TarballEntry | undefined> {
  const { cfg, ctx, store, findings } = plan;
  if (ctx.signal.aborted) throw new InterruptedError(`backup of ${cfg.name} interrupted`);
  const { file, exp } = job;
  const p = job.prev && entryOf(job.prev, previousWhat(cfg));
  let entry: TarballEntry;
  if (unchanged(file, p)) {
    entry = p;
    findings.counters.reused++;
  } else {
    try {
      entry = await readAndStore(store, file, ctx, exp);
    } catch (err) {
      if (err instanceof SourceError) throw err;
      findings.report(...unreadable(file, p, err));
      return p;
    }
    findings.counters.read++;
    ctx.progress.bytes += file.size;
  }
  if (exp) verify(findings, entry, exp);
  plan.totals.files++;
  plan.totals.bytes += entry.size;
  ctx.progress.files++;
  return entry;
}

/** The finding for a file that could not be stored. */
function unreadable(
  file: StoreFile,
  p: TarballEntry | undefined,
  err: unknown,
): [Omit<Finding, 'source'>, keyof Counters] {
  if (err instanceof JobError && err.code === FILE_CHANGED) {
    const message = `${file.path} ${err.message}: not stored${p ? ' (the previous version is kept)' : ''}`;
    return [{ severity: 'error', code: 'tarball-inconsistent', object: file.path, message }, 'problems'];
  }
  const gone = systemCodeOf(err) === 'ENOENT' || (err instanceof JobError && err.code === 'ENOENT');
  return [
    {
      severity: gone ? 'warning' : 'error',
      code: gone ? 'tarball-gone' : 'tarball-unreadable',
      object: file.path,
      message: `${file.path}: ${gone ? 'removed while the backup ran' : `cannot be read: ${messageOf(err)}`}`,
    },
    'problems',
  ];
}

/** Checks a file against its packument's dist.shasum (or dist.integrity); a mismatch is flagged, not refused. */
function verify(findings: Findings, entry: TarballEntry, exp: TarballExpectation): void {
  const { counters } = findings;
  let ok: boolean | undefined;
  if (exp.shasum && /^[0-9a-f]{40}$/i.test(exp.shasum) && entry.sha1)
    ok = entry.sha1 === exp.shasum.toLowerCase();
  else if (entry.flag === undefined && entry.sha512 && exp.integrity) {
    ok = integrityMatches(exp.integrity, entry.sha512);
  }
  if (ok === undefined) {
    counters.unverified++;
    return;
  }
  if (ok) {
    counters.verified++;
    if (entry.flag === 'checksum-mismatch') delete entry.flag;
    return;
  }
  entry.flag = 'checksum-mismatch';
  findings.report(
    {
      severity: 'error',
      code: 'tarball-checksum-mismatch',
      object: entry.path,
      message: `${entry.path} does not match dist.shasum of ${exp.db}/${exp.doc} (stored anyway, flagged)`,
    },
    'mismatch',
  );
}

/** The part's result: its snapshot entry, findings (said when truncated) and counters. */
function reportTarballBackup(plan: TarballPlan, listing: StreamRef): PartResult<TarballSourceSnapshot> {
  const { cfg, store, findings, totals } = plan;
  const c = findings.counters;
  if (
    c.missing > MAX_LISTED_FINDINGS ||
    c.mismatch > MAX_LISTED_FINDINGS ||
    c.problems > MAX_LISTED_FINDINGS ||
    c.refused > MAX_LISTED_FINDINGS
  ) {
    findings.report({
      severity: 'warning',
      code: 'findings-truncated',
      message: `only the first ${MAX_LISTED_FINDINGS} findings of each kind are listed (missing ${c.missing}, mismatches ${c.mismatch}, unreadable ${c.problems}, names refused ${c.refused})`,
    });
  }
  return {
    snapshot: {
      kind: 'tarballs',
      name: cfg.name,
      location: store.location,
      files: totals.files,
      bytes: totals.bytes,
      listing,
      missing: c.missing,
      mismatches: c.mismatch,
    },
    findings: findings.list,
    stats: { ...c, ...totals },
  };
}

function integrityMatches(integrity: string, sha512b64: string): boolean {
  return integrity.split(/\s+/).some((i) => i.startsWith('sha512-') && i.slice(7) === sha512b64);
}

async function readAndStore(
  store: TarballStore,
  file: StoreFile,
  ctx: BackupContext,
  exp: TarballExpectation | undefined,
): Promise<TarballEntry> {
  // Checksums only for files a packument of this run refers to: sha1 (dist.shasum), and sha512 only when
  // the packument has no shasum to compare with (npm always records one).
  const wantSha1 = Boolean(exp?.shasum);
  const wantSha512 = Boolean(exp && !exp.shasum && exp.integrity);
  let data: StreamRef;
  let sha1: string | undefined;
  let sha512: string | undefined;
  // The version stored: a file that changed since the walk is read as it is now.
  let mtime = file.mtimeMs;
  if (store.localPath) {
    // A directory: a writer thread reads, hashes, chunks and packs the file; its bytes never come here.
    const r = await ctx.writer.writeFile(store.localPath(file.path), 'bulk', file, {
      sha1: wantSha1,
      sha512: wantSha512,
    });
    data = await refFromChunks(ctx.writer, r);
    sha1 = r.sha1;
    sha512 = r.sha512;
    mtime = r.mtimeMs ?? mtime;
  } else {
    const body = await store.read(file.path, file.size);
    const h1 = wantSha1 ? createHash('sha1') : undefined;
    const h512 = wantSha512 ? createHash('sha512') : undefined;
    const hashed = async function* (src: Buffer | Readable) {
      for await (const piece of Buffer.isBuffer(src) ? [src] : src) {
        const b = piece as Buffer;
        h1?.update(b);
        h512?.update(b);
        yield b;
      }
    };
    data = await writeStream(ctx.writer, hashed(body), 'bulk');
    sha1 = h1?.digest('hex');
    sha512 = h512?.digest('base64');
  }
  const entry: TarballEntry = { path: file.path, size: data.size, mtime, data };
  if (sha1) entry.sha1 = sha1;
  if (file.etag !== undefined) entry.etag = file.etag;
  if (sha512) entry.sha512 = sha512;
  return entry;
}

/** Why a listing cannot be read from the index (a chunk no index object names), or undefined. */
async function unindexedChunk(reader: BlobReader, ref: StreamRef): Promise<string | undefined> {
  try {
    for await (const id of chunkIds(reader, ref)) reader.locate(Buffer.from(id));
    return undefined;
  } catch (err) {
    if (!(err instanceof IntegrityError)) throw err;
    return err.message;
  }
}
