import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import pLimit from 'p-limit';
import { log } from '../log.js';
import type { BlobIndex, PackInfo } from './blob-index.js';
import type { Fanout } from './fanout.js';
import { encodeIndexBody, type IndexedPack } from './index-object.js';
import { decodeEntry, ENTRY_SIZE, packKey, type PackEntry } from './pack.js';
import {
  PIECE_SIZE,
  type Event,
  type FromWorker,
  type JobEnd,
  type JobKind,
  type ManyKind,
  type Op,
  type PackWorkerInit,
  type ToWorker,
  type WirePack,
} from './pack-protocol.js';
import type { Repository } from './repository.js';
import { processAlive } from '../util/process.js';

/**
 * What kind of bytes are being written, which decides the chunker, the blob type and compression:
 * - json: document bodies (packuments): CDC chunks, zstd, data blobs;
 * - bulk: tarballs and attachments: fixed-size chunks, stored raw when already compressed, data blobs;
 * - tree: listings and other metadata the worker may read back: CDC chunks, zstd, tree blobs.
 */
export type BlobKind = JobKind;
/** Kinds writeMany takes: documents and listings (no per-buffer test for compressed bytes). */
export type { ManyKind } from './pack-protocol.js';

/** The chunks a stream was cut into, in order. */
export interface Chunks {
  size: number;
  ids: Buffer[];
}

export interface FileResult extends Chunks {
  /** SHA-1 of the file, hex, when asked for. */
  sha1?: string;
  /** SHA-512 of the file, base64, when asked for. */
  sha512?: string;
  /** The modification time (whole ms) of the version read. */
  mtimeMs?: number;
}

/** A file as a walk listed it: the version its read expects to find. */
export interface ListedFile {
  size: number;
  /** Modification time, whole milliseconds since the epoch. */
  mtimeMs: number;
}

export interface WriterStats {
  /** Bytes given to the writer. */
  bytesIn: number;
  /** Bytes of chunks not stored before (before compression). */
  newBytes: number;
  /** Bytes of chunks already in the repository (deduplicated). */
  dedupBytes: number;
  /** Bytes of new chunks after compression. */
  storedBytes: number;
  newBlobs: number;
  dedupBlobs: number;
  packs: number;
  /** Bytes of pack objects written (to each target). */
  packBytes: number;
  indexObjects: number;
  /** The most bytes counted in flight at once (handed to the workers, not yet packed): bounded by maxInflight. */
  peakInflight: number;
}

export interface WriterOptions {
  /** Worker threads reading, chunking, compressing, encrypting and packing (default: the number of cores). */
  workers?: number;
  /** Write an index object after this many packs (and at every flush). */
  indexEvery?: number;
  /**
   * Write an index object once the packs not yet in one hold this many blobs (default 32768): their entries
   * wait in memory until then, and packs of small documents hold thousands of blobs each.
   */
  indexEveryBlobs?: number;
  /** Bytes handed to workers and not yet consumed, at most. */
  maxInflight?: number;
  /** Sealed packs waiting for upload, at most (beyond: new work waits). */
  maxQueuedPacks?: number;
  /** Packs uploading at once. */
  uploadConcurrency?: number;
  /** Packs not to deduplicate against (marked by a prune): their blobs are stored again. */
  exclude?: ReadonlySet<string>;
  /**
   * Test hook: called for each batch of chunks a worker reports for a file, with the file's path and which
   * read of it this is (1, then 2… after it changed while read). For every batch but the last, the worker
   * waits for this thread's answer before it reads on: a change made here lands in the middle of the read.
   */
  beforeFileBatch?: (path: string, read: number) => void;
}

/** Largest piece of a stream sent in one message. */
const STREAM_PIECE = 1024 * 1024;

/** writeMany: a batch holds up to this many bytes or buffers; a bigger buffer is streamed on its own. */
const MANY_BYTES = STREAM_PIECE;
const MANY_COUNT = 1024;
const MANY_BODY_MAX = 256 * 1024;

function* slices(buf: Uint8Array): Generator<Uint8Array> {
  for (let at = 0; at < buf.length; at += STREAM_PIECE) yield buf.subarray(at, at + STREAM_PIECE);
}

interface JobState {
  slot: Slot;
  ids: Buffer[];
  /** 'many' jobs: how many of `ids` belong to each buffer, in order. */
  counts?: Uint32Array;
  size: number;
  /** Bytes sent and not yet consumed (data jobs), or the one piece a worker holds at a time (file jobs). */
  inflight: number;
  file: boolean;
  /** Files: the path, and how many times the worker has started reading it. */
  path?: string;
  reads: number;
  ended: boolean;
  batchesOpen: number;
  end?: JobEnd;
  resolve(r: JobResult): void;
  reject(e: Error): void;
  waiters: (() => void)[];
}

interface JobResult extends FileResult {
  counts?: Uint32Array;
}

interface Slot {
  worker: Worker;
  ops: Op[];
  transfer: ArrayBuffer[];
  opBytes: number;
  scheduled: boolean;
  inflight: number;
}

export { FILE_CHANGED } from './pack-protocol.js';

/** A failure of one job (a file that could not be read), as opposed to a failure of the writer. */
export class JobError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'JobError';
  }
}

/**
 * Writes blobs into packs on every target. Worker threads read files (or receive data), chunk and name the
 * chunks; the main thread, which owns the index, decides which chunks are new; the workers compress, encrypt
 * and pack those; packs are uploaded once to every target; index objects record them. Memory is bounded:
 * bytes in flight to workers and sealed packs waiting for upload are both capped.
 */
export class BlobWriter {
  readonly stats: WriterStats = {
    bytesIn: 0,
    newBytes: 0,
    dedupBytes: 0,
    storedBytes: 0,
    newBlobs: 0,
    dedupBlobs: 0,
    packs: 0,
    packBytes: 0,
    indexObjects: 0,
    peakInflight: 0,
  };
  /** Chunks handed to workers whose pack is not yet in an index object: dedup must see them too. */
  private readonly pending = new Set<string>();
  private readonly slots: Slot[];
  private readonly jobs = new Map<number, JobState>();
  private nextJob = 1;
  private seq = 0;
  private inflight = 0;
  private queuedPacks = 0;
  private readonly maxInflight: number;
  private readonly maxQueuedPacks: number;
  /** Jobs waiting for room, in order, with the bytes each reserves when let in. */
  private readonly roomWaiters: { bytes: number; go: () => void }[] = [];
  private readonly flushWaiters = new Map<number, () => void>();
  private readonly uploads = new Set<Promise<void>>();
  private readonly uploadLimit: ReturnType<typeof pLimit>;
  private unindexed: IndexedPack[] = [];
  private unindexedBlobs = 0;
  private readonly indexEvery: number;
  private readonly indexEveryBlobs: number;
  private failure?: Error;
  private closed = false;
  /** Keys of index objects written by this writer. */
  readonly indexKeys: string[] = [];
  /** Packs (IDs) this writer deduplicated against or wrote: a prune must not have deleted them before the commit. */
  readonly usedPacks = new Set<string>();
  private readonly exclude: ReadonlySet<string>;
  /** This writer's spool directory: sealed packs wait here for upload. */
  private readonly spoolDir: string;
  private readonly maxChunk: number;
  private readonly streamWindow: number;
  private readonly beforeFileBatch?: (path: string, read: number) => void;

  constructor(
    private readonly repo: Repository,
    private readonly index: BlobIndex,
    private readonly fanout: Fanout,
    opts: WriterOptions = {},
  ) {
    const n = Math.max(1, opts.workers ?? Math.min(4, os.availableParallelism()));
    this.spoolDir = makeSpoolDir(path.join(repo.cacheDir, 'spool'));
    this.exclude = opts.exclude ?? new Set();
    this.maxInflight = opts.maxInflight ?? 12 * 1024 * 1024;
    this.maxQueuedPacks = opts.maxQueuedPacks ?? 2;
    this.indexEvery = opts.indexEvery ?? 64;
    this.indexEveryBlobs = opts.indexEveryBlobs ?? 32768;
    this.uploadLimit = pLimit(opts.uploadConcurrency ?? 2);
    this.beforeFileBatch = opts.beforeFileBatch;
    const c = repo.config;
    // A worker holds at most one chunk of a job beyond what it has been sent: the largest chunk sets the
    // per-job windows.
    this.maxChunk = Math.max(
      ...[c.chunkers.json, c.chunkers.bulk, c.chunkers.tree].map((p) =>
        p.kind === 'fixed' ? p.size : p.max,
      ),
    );
    this.streamWindow = this.maxChunk + 2 * STREAM_PIECE;
    const init: PackWorkerInit = {
      recipients: { data: c.recipients, tree: [...c.recipients, c.metadataRecipient] },
      packSize: c.packSize,
      compressionLevel: c.compressionLevel,
      idKey: repo.idKey,
      gear: repo.gear,
      chunkers: { json: c.chunkers.json, tree: c.chunkers.tree, bulk: c.chunkers.bulk },
      spoolDir: this.spoolDir,
    };
    this.slots = Array.from({ length: n }, () => this.spawn(init));
  }

  private spawn(init: PackWorkerInit): Slot {
    // A small young generation: the workers allocate few, short-lived objects; a big one only costs memory.
    const worker = new Worker(new URL('./pack-worker.js', import.meta.url), {
      workerData: init,
      // Small heaps: the workers hold few objects; a big heap only lets garbage pile up (memory is a budget).
      resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 },
    });
    const slot: Slot = { worker, ops: [], transfer: [], opBytes: 0, scheduled: false, inflight: 0 };
    worker.on('message', (msg: FromWorker) => {
      for (const ev of msg.events) this.onEvent(slot, ev);
      this.flushOps();
    });
    worker.on('error', (err) => this.abort(err));
    worker.on('exit', (code) => {
      if (!this.closed) this.abort(new Error(`pack worker exited unexpectedly (code ${code})`));
    });
    return slot;
  }

  private send(slot: Slot, op: Op, transfer?: ArrayBuffer, bytes = 0): void {
    slot.ops.push(op);
    if (transfer) slot.transfer.push(transfer);
    slot.opBytes += bytes;
    if (slot.opBytes >= STREAM_PIECE) this.post(slot);
    else if (!slot.scheduled) {
      slot.scheduled = true;
      setImmediate(() => this.post(slot));
    }
  }

  private post(slot: Slot): void {
    slot.scheduled = false;
    if (slot.ops.length === 0) return;
    const msg: ToWorker = { ops: slot.ops };
    const t = slot.transfer;
    slot.ops = [];
    slot.transfer = [];
    slot.opBytes = 0;
    slot.worker.postMessage(msg, t);
  }

  private flushOps(): void {
    for (const s of this.slots) this.post(s);
  }

  private onEvent(slot: Slot, ev: Event): void {
    switch (ev.ev) {
      case 'chunks':
        this.decide(slot, ev.job, ev.batch, ev.ids, ev.sizes, ev.end, ev.counts);
        break;
      case 'consumed': {
        const job = this.jobs.get(ev.job);
        if (job && !job.file) this.release(job, ev.bytes);
        if (job) {
          job.batchesOpen--;
          for (const w of job.waiters.splice(0)) w();
          this.settle(ev.job, job);
        }
        this.wake();
        break;
      }
      case 'restart': {
        // The file changed while it was read: its chunks so far are not the file's (they stay in their
        // packs, unreferenced); the worker reads it again from the start.
        const job = this.jobs.get(ev.job);
        if (job) {
          job.ids = [];
          job.reads++;
        }
        break;
      }
      case 'pack':
        this.upload(ev.pack);
        break;
      case 'flushed':
        this.flushWaiters.get(ev.seq)?.();
        this.flushWaiters.delete(ev.seq);
        break;
      case 'failed': {
        const job = this.jobs.get(ev.job);
        if (job) {
          this.jobs.delete(ev.job);
          this.release(job, job.inflight);
          job.reject(new JobError(ev.message, ev.code));
          this.wake();
        }
        break;
      }
      case 'error':
        this.abort(new Error(`pack worker: ${ev.message}`));
        break;
    }
  }

  /** Decides which chunks of a batch are new, and tells the worker. */
  private decide(
    slot: Slot,
    jobId: number,
    batch: number,
    ids: Uint8Array,
    sizes: Uint32Array,
    end?: JobEnd,
    counts?: Uint32Array,
  ): void {
    const job = this.jobs.get(jobId);
    if (job?.path !== undefined) this.beforeFileBatch?.(job.path, job.reads);
    const store = new Uint8Array(sizes.length);
    const buf = Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
    for (let i = 0; i < sizes.length; i++) {
      const id = Buffer.from(buf.subarray(i * 32, i * 32 + 32));
      const len = sizes[i]!;
      this.stats.bytesIn += len;
      const hex = id.toString('hex');
      const loc = this.pending.has(hex) ? undefined : this.index.lookup(id);
      if (loc && !this.exclude.has(loc.pack.id)) this.usedPacks.add(loc.pack.id);
      if (this.pending.has(hex) || (loc && !this.exclude.has(loc.pack.id))) {
        this.stats.dedupBytes += len;
        this.stats.dedupBlobs++;
      } else {
        this.pending.add(hex);
        this.stats.newBytes += len;
        this.stats.newBlobs++;
        store[i] = 1;
      }
      job?.ids.push(id);
    }
    if (job) {
      job.batchesOpen++;
      if (counts) job.counts = counts;
      if (end) {
        job.ended = true;
        job.end = end;
      }
    }
    this.send(slot, { op: 'decide', job: jobId, batch, store }, store.buffer as ArrayBuffer);
  }

  private settle(jobId: number, job: JobState): void {
    if (!job.ended || job.batchesOpen > 0) return;
    this.jobs.delete(jobId);
    if (job.file) this.release(job, job.inflight);
    const { size, sha1, sha512, mtimeMs } = job.end!;
    job.resolve({ size, ids: job.ids, sha1, sha512, mtimeMs, counts: job.counts });
  }

  private abort(err: Error): void {
    this.failure ??= err;
    for (const [id, job] of this.jobs) {
      this.jobs.delete(id);
      job.reject(err);
    }
    this.wake();
    for (const w of this.flushWaiters.values()) w();
  }

  /**
   * Lets waiting jobs in, in order, while there is room. A job's reservation is counted as it is let in (not
   * when it resumes): otherwise every waiter saw the same room and all came in at once (a backup of small
   * files had ~140 file jobs and 31 MB of pieces in one worker against a budget of 12 MiB).
   */
  private wake(): void {
    while (this.roomWaiters.length && (this.hasRoom() || this.failure)) {
      const w = this.roomWaiters.shift()!;
      if (!this.failure) this.reserve(w.bytes);
      w.go();
    }
  }

  private hasRoom(): boolean {
    return this.inflight < this.maxInflight && this.queuedPacks < this.maxQueuedPacks;
  }

  /**
   * Waits for room in the budget, then reserves `bytes` of it (the caller moves them to its job with
   * account(job, bytes, true)). Jobs are let in in the order they asked.
   */
  private async room(bytes = 0): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.roomWaiters.length === 0 && this.hasRoom()) this.reserve(bytes);
    else await new Promise<void>((go) => this.roomWaiters.push({ bytes, go }));
    if (this.failure) throw this.failure;
  }

  /** The worker with the least in flight. */
  private pick(): Slot {
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.inflight < best.inflight) best = s;
    return best;
  }

  private startJob(): { id: number; job: JobState; done: Promise<JobResult> } {
    const slot = this.pick();
    const id = this.nextJob++;
    let resolve!: (r: JobResult) => void;
    let reject!: (e: Error) => void;
    const done = new Promise<JobResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const job: JobState = {
      slot,
      ids: [],
      size: 0,
      inflight: 0,
      file: false,
      reads: 0,
      ended: false,
      batchesOpen: 0,
      resolve,
      reject,
      waiters: [],
    };
    this.jobs.set(id, job);
    return { id, job, done };
  }

  /** Counts `bytes` as in flight for `job` (`reserved`: already counted in the budget by room()). */
  private account(job: JobState, bytes: number, reserved = false): void {
    job.inflight += bytes;
    job.slot.inflight += bytes;
    if (!reserved) this.reserve(bytes);
  }

  private reserve(bytes: number): void {
    this.inflight += bytes;
    if (this.inflight > this.stats.peakInflight) this.stats.peakInflight = this.inflight;
  }

  private release(job: JobState, bytes: number): void {
    job.inflight -= bytes;
    job.slot.inflight -= bytes;
    this.inflight -= bytes;
    this.wake();
  }

  /**
   * Stores a file, read by a worker thread (the bytes never pass through this thread). Resolves with its
   * chunks (and SHA-1 / SHA-512 when asked): those of one version of the file, read whole while it did not
   * change (see readNextPiece in pack-worker.ts). A file that cannot be read rejects with a JobError; one that
   * kept changing while it was read, with a JobError of code FILE_CHANGED.
   */
  async writeFile(
    path: string,
    kind: BlobKind,
    listed: ListedFile,
    opts: { sha1?: boolean; sha512?: boolean } = {},
  ): Promise<FileResult> {
    // The worker holds one piece of a file at a time (and at most one chunk across pieces).
    const holds = Math.min(listed.size, Math.max(PIECE_SIZE, this.maxChunk));
    await this.room(holds);
    const { id, job, done } = this.startJob();
    job.file = true;
    job.path = path;
    job.reads = 1;
    this.account(job, holds, true);
    this.send(job.slot, {
      op: 'file',
      job: id,
      path,
      kind,
      size: listed.size,
      mtimeMs: listed.mtimeMs,
      sha1: Boolean(opts.sha1),
      sha512: Boolean(opts.sha512),
    });
    return done;
  }

  /** Stores a buffer (a document, a listing piece). */
  async write(data: Buffer, kind: BlobKind): Promise<Chunks> {
    return this.writeStream([data], kind);
  }

  /**
   * Stores many buffers (documents), each as `write` would (the same chunks, the same IDs), in the order given.
   * Small ones travel together: one job, one message each way and one decision per batch of up to
   * MANY_BYTES / MANY_COUNT of them, instead of one job and two round trips to a pack worker per buffer. A
   * buffer over MANY_BODY_MAX is streamed on its own (its stream window bounds what is in flight). A batch
   * waits for room like any job: the bytes in flight stay within `maxInflight` (plus one batch).
   */
  async writeMany(bufs: readonly Uint8Array[], kind: ManyKind): Promise<Chunks[]> {
    const out: Promise<Chunks>[] = [];
    let group: Uint8Array[] = [];
    let groupBytes = 0;
    let groupAt = 0;
    const ship = async () => {
      // Waits for room like any job; the batch is then handed over at once, and the next one gathered while
      // the pack workers chunk and store this one.
      await this.room();
      const done = this.startBatch(group, kind);
      group.forEach((_, k) => {
        const p = done.then((all) => all[k]!);
        p.catch(() => undefined); // awaited below, in order (the first failure ends the wait)
        out[groupAt + k] = p;
      });
      group = [];
      groupBytes = 0;
    };
    try {
      for (let i = 0; i < bufs.length; i++) {
        const b = bufs[i]!;
        if (b.length > MANY_BODY_MAX) {
          if (group.length) await ship();
          const p = this.writeStream(slices(b), kind);
          p.catch(() => undefined); // awaited below, in order
          out[i] = p;
          continue;
        }
        if (group.length === 0) groupAt = i;
        group.push(b);
        groupBytes += b.length;
        if (groupBytes >= MANY_BYTES || group.length >= MANY_COUNT) await ship();
      }
      if (group.length) await ship();
    } catch (err) {
      // The writer failed while a batch waited for room: what was handed over fails with it.
      await Promise.allSettled(out);
      throw err;
    }
    const res: Chunks[] = [];
    for (const p of out) res.push(await p);
    return res;
  }

  /** One 'many' job: the buffers copied into one message, their chunks decided as one batch. */
  private startBatch(bufs: Uint8Array[], kind: ManyKind): Promise<Chunks[]> {
    const { id, job, done } = this.startJob();
    const lengths = new Uint32Array(bufs.length);
    let total = 0;
    for (let i = 0; i < bufs.length; i++) total += lengths[i] = bufs[i]!.length;
    const data = new Uint8Array(total);
    let at = 0;
    for (const b of bufs) {
      data.set(b, at);
      at += b.length;
    }
    this.account(job, total);
    this.send(job.slot, { op: 'many', job: id, kind, data: data.buffer, lengths }, data.buffer, total);
    return done.then((r) => {
      const counts = r.counts ?? new Uint32Array(0);
      if (counts.length !== bufs.length)
        throw new Error(`pack worker: a batch of ${bufs.length} buffers answered for ${counts.length}`);
      const res: Chunks[] = [];
      let from = 0;
      for (let i = 0; i < bufs.length; i++) {
        const n = counts[i]!;
        res.push({ size: lengths[i]!, ids: r.ids.slice(from, from + n) });
        from += n;
      }
      if (from !== r.ids.length) throw new Error('pack worker: a batch answered with chunks of no buffer');
      return res;
    });
  }

  /** Stores a stream of any length; memory stays bounded by the stream window. */
  async writeStream(
    src: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>,
    kind: BlobKind,
  ): Promise<Chunks> {
    await this.room();
    const { id, job, done } = this.startJob();
    done.catch(() => undefined); // observed below
    let pending: Buffer[] = [];
    let pendingLen = 0;
    const ship = async (end: boolean) => {
      while (job.inflight > this.streamWindow && !this.failure && this.jobs.has(id))
        await new Promise<void>((r) => job.waiters.push(r));
      if (this.failure) throw this.failure;
      const data = new Uint8Array(pendingLen);
      let at = 0;
      for (const p of pending) {
        data.set(p, at);
        at += p.length;
      }
      pending = [];
      pendingLen = 0;
      this.account(job, data.length);
      this.send(job.slot, { op: 'data', job: id, kind, data: data.buffer, end }, data.buffer, data.length);
    };
    try {
      for await (const piece of src) {
        if (piece.length === 0) continue;
        pending.push(
          Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength),
        );
        pendingLen += piece.length;
        if (pendingLen >= STREAM_PIECE) await ship(false);
      }
      await ship(true);
    } catch (err) {
      // The source failed (a dropped connection): the job is abandoned; its chunks already stored are
      // harmless (unreferenced until a snapshot names them).
      this.jobs.delete(id);
      this.release(job, job.inflight);
      throw err;
    }
    const r = await done;
    return { size: r.size, ids: r.ids };
  }

  private upload(p: WirePack): void {
    const eb = Buffer.from(p.entries.buffer, p.entries.byteOffset, p.entries.byteLength);
    const entries: PackEntry[] = [];
    for (let at = 0; at < eb.length; at += ENTRY_SIZE) entries.push(decodeEntry(eb, at));
    const info: PackInfo = { id: p.id, type: p.type, size: p.size, sha256: p.sha256 };
    this.queuedPacks++;
    const job = this.uploadLimit(async () => {
      if (this.failure) return;
      // The spool file itself: a filesystem target hard-links it, the others stream it (and can retry).
      await this.fanout.put(packKey(p.type, p.id), { file: p.path, size: p.size }, { size: p.size });
      this.stats.packs++;
      this.stats.packBytes += p.size;
      // Its own packs count as used too: a prune must not have taken one before this run's index names it.
      this.usedPacks.add(p.id);
      this.stats.storedBytes += p.storedBytes;
      this.unindexed.push({ info, entries });
      this.unindexedBlobs += entries.length;
      if (this.unindexed.length >= this.indexEvery || this.unindexedBlobs >= this.indexEveryBlobs)
        await this.writeIndex();
    })
      .catch((err: unknown) => this.abort(err as Error))
      .finally(() => {
        this.queuedPacks--;
        rmSync(p.path, { force: true });
        this.wake();
      });
    this.uploads.add(job);
    void job.finally(() => this.uploads.delete(job));
  }

  /** Writes an index object for the packs uploaded since the last one. */
  private async writeIndex(): Promise<void> {
    const packs = this.unindexed;
    if (packs.length === 0) return;
    this.unindexed = [];
    this.unindexedBlobs = 0;
    const { key, bytes } = await this.repo.sealMeta('index', encodeIndexBody(packs));
    await this.fanout.put(key, bytes);
    for (const p of packs) {
      this.index.addPack(p.info, p.entries);
      for (const e of p.entries) this.pending.delete(e.id.toString('hex'));
    }
    this.index.markIndexObject(key);
    this.indexKeys.push(key);
    this.stats.indexObjects++;
  }

  /**
   * Seals every open pack, waits for every upload, and writes an index object for them: afterwards every
   * blob written so far is stored on every active target and findable through the index.
   */
  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    await Promise.all(
      this.slots.map((slot) => {
        const seq = ++this.seq;
        const p = new Promise<void>((resolve) => this.flushWaiters.set(seq, resolve));
        this.send(slot, { op: 'flush', seq });
        this.post(slot);
        return p;
      }),
    );
    if (this.failure) throw this.failure;
    while (this.uploads.size) await Promise.all([...this.uploads]);
    if (this.failure) throw this.failure;
    await this.writeIndex();
    this.index.persist();
    if (this.pending.size) log().warn({ pending: this.pending.size }, 'blobs still pending after flush');
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    // Uploads still reading spooled packs (an interrupted run) settle before the spool goes: removing a file an
    // upload is about to open fails that upload's stream with ENOENT, outside any handler.
    while (this.uploads.size) await Promise.allSettled([...this.uploads]);
    rmSync(this.spoolDir, { recursive: true, force: true });
  }
}

/**
 * A spool directory of this process under `root` (`<pid>-<random>`); directories of processes that are gone
 * (a killed backup) are removed on the way.
 */
function makeSpoolDir(root: string): string {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  for (const d of readdirSync(root)) {
    const pid = Number(d.split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    if (!processAlive(pid)) rmSync(path.join(root, d), { recursive: true, force: true });
  }
  const dir = path.join(root, `${process.pid}-${Math.random().toString(16).slice(2, 10)}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}
