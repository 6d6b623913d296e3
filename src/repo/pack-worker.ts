/**
 * Worker thread of the blob writer (protocol in pack-protocol.ts): reads files or receives data, chunks and
 * names it, and — once the main thread has said which chunks are new — compresses, encrypts and packs them.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { Chunker, MAX_CHUNK, type ChunkerParams } from './chunker.js';
import { BlobCompressor, looksCompressed } from './compress.js';
import { blobId, BlobType } from './ids.js';
import { encodeEntry, ENTRY_SIZE, PackBuilder } from './pack.js';
import { releaseNow } from '../util/release.js';
import {
  FILE_CHANGED,
  MAX_FILE_READS,
  PIECE_SIZE,
  type Event,
  type FromWorker,
  type JobKind,
  type ManyKind,
  type Op,
  type PackWorkerInit,
  type ToWorker,
} from './pack-protocol.js';

const init = workerData as PackWorkerInit;
const port = parentPort!;
// The ID key's bytes; ids.ts keeps one keyed hasher for them (a new hasher per ID costs more than hashing a
// small file's chunk).
const idKey = Buffer.from(init.idKey);
const compressor = new BlobCompressor(init.compressionLevel);
const open: { [BlobType.data]?: PackBuilder; [BlobType.tree]?: PackBuilder } = {};
const sizes = { [BlobType.data]: { raw: 0, stored: 0 }, [BlobType.tree]: { raw: 0, stored: 0 } };

interface Job {
  kind: JobKind;
  type: BlobType.data | BlobType.tree;
  chunker: Chunker;
  carry: Buffer[];
  carryLen: number;
  raw?: boolean;
  batch: number;
  held: Map<number, { chunks: Buffer[]; ids: Buffer[]; piece?: Buffer }>;
  size: number;
  ended: boolean;
  // files
  fd?: number;
  path?: string;
  /** Bytes to read: the size of the version expected. */
  fileSize?: number;
  offset?: number;
  sha1?: Hash;
  sha512?: Hash;
  /** The version this read expects to find, and how many reads have been started. */
  expect?: FileVersion;
  reads?: number;
  /** The modification time (whole ms) of the version read, once read whole and unchanged. */
  mtimeMs?: number;
}

/**
 * What a file is expected to be while it is read: first as the walk listed it (size, modification time in
 * whole ms), then, on a read again, as the previous read found it at its end (times to the full precision
 * the system gives, change time included: a rewrite that put the modification time back still shows).
 */
interface FileVersion {
  size: number;
  mtimeMs: number;
  ctimeMs?: number;
}

function sameVersion(v: FileVersion, st: Stats): boolean {
  if (st.size !== v.size) return false;
  if (v.ctimeMs === undefined) return Math.floor(st.mtimeMs) === v.mtimeMs;
  return st.mtimeMs === v.mtimeMs && st.ctimeMs === v.ctimeMs;
}

function versionOf(st: Stats): FileVersion {
  return { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs };
}

const jobs = new Map<number, Job>();
/**
 * A buffer for the next piece of a file, of exactly the size read (never a slice of Node's shared pool), handed
 * back with releaseNow() once its batch is decided: the allocator then reuses the same warm blocks. (A pool of
 * power-of-two buffers held up to twice the bytes the writer budgets: 35 MB in one worker with 142 small files
 * in flight; fresh buffers left to the GC piled up to V8's external-memory limit and cost a page fault per 4 KiB.)
 */
function pieceBuffer(want: number): Buffer {
  return Buffer.allocUnsafeSlow(want);
}

let out: Event[] = [];
let transfer: ArrayBuffer[] = [];

const WHOLE: ChunkerParams = { kind: 'fixed', size: MAX_CHUNK };

function chunkerFor(kind: JobKind): Chunker {
  return new Chunker(kind === 'blob-tree' || kind === 'blob-data' ? WHOLE : init.chunkers[kind], init.gear);
}

function newJob(kind: JobKind): Job {
  return {
    kind,
    type: kind === 'tree' || kind === 'blob-tree' ? BlobType.tree : BlobType.data,
    chunker: chunkerFor(kind),
    carry: [],
    carryLen: 0,
    batch: 0,
    held: new Map(),
    size: 0,
    ended: false,
  };
}

/**
 * Cuts `piece` (the next bytes of the job) into chunks and reports the complete ones. `owned`: the piece's
 * buffer, released once its batch is decided (pieceBuffer), so nothing may keep a reference to it.
 */
function feed(id: number, job: Job, piece: Buffer, end: boolean, owned?: Buffer): void {
  if (job.raw === undefined && piece.length) job.raw = job.kind === 'bulk' && looksCompressed(piece);
  job.size += piece.length;
  const chunks: Buffer[] = [];
  let off = 0;
  for (const len of job.chunker.push(piece)) {
    const need = len - job.carryLen;
    job.carry.push(piece.subarray(off, off + need));
    chunks.push(job.carry.length === 1 ? job.carry[0]! : Buffer.concat(job.carry, len));
    job.carry = [];
    job.carryLen = 0;
    off += need;
  }
  if (off < piece.length) {
    // An owned piece is released when this batch is decided: bytes carried into the next batch are
    // copied out, unless this is the last piece (then they become this batch's last chunk).
    job.carry.push(owned && !end ? Buffer.from(piece.subarray(off)) : piece.subarray(off));
    job.carryLen += piece.length - off;
  }
  if (end) {
    const last = job.chunker.finish();
    if (last > 0) chunks.push(job.carry.length === 1 ? job.carry[0]! : Buffer.concat(job.carry, last));
    job.carry = [];
    job.carryLen = 0;
    job.ended = true;
  }
  if (chunks.length === 0 && !end) {
    if (owned) releaseNow([owned]);
    return;
  }
  const idBufs = chunks.map((c) => blobId(idKey, job.type, c));
  const ids = new Uint8Array(chunks.length * 32);
  const lens = new Uint32Array(chunks.length);
  chunks.forEach((c, i) => {
    ids.set(idBufs[i]!, i * 32);
    lens[i] = c.length;
  });
  const batch = job.batch++;
  job.held.set(batch, { chunks, ids: idBufs, piece: owned });
  const ev: Event = { ev: 'chunks', job: id, batch, ids, sizes: lens };
  if (end) {
    ev.end = { size: job.size };
    if (job.sha1) ev.end.sha1 = job.sha1.digest('hex');
    if (job.sha512) ev.end.sha512 = job.sha512.digest('base64');
    if (job.mtimeMs !== undefined) ev.end.mtimeMs = job.mtimeMs;
  }
  out.push(ev);
  transfer.push(ids.buffer as ArrayBuffer, lens.buffer as ArrayBuffer);
}

/**
 * A 'many' job: each buffer of `data` (sizes in `lengths`) is cut by a chunker of its own, as if it were a job
 * of its own (the same chunks, the same IDs); all their chunks go out in one 'chunks' event, with how many
 * belong to each buffer, and are decided as one batch. The chunks are views of `data`, which this thread owns
 * (released once the batch is decided).
 */
function feedMany(id: number, kind: ManyKind, data: Buffer, lengths: Uint32Array): void {
  const job = newJob(kind);
  jobs.set(id, job);
  const chunks: Buffer[] = [];
  const counts = new Uint32Array(lengths.length);
  let at = 0;
  for (let b = 0; b < lengths.length; b++) {
    const body = data.subarray(at, at + lengths[b]!);
    at += body.length;
    const before = chunks.length;
    const chunker = b === 0 ? job.chunker : chunkerFor(kind);
    let off = 0;
    for (const len of chunker.push(body)) {
      chunks.push(body.subarray(off, off + len));
      off += len;
    }
    const last = chunker.finish();
    if (last > 0) chunks.push(body.subarray(off, off + last));
    counts[b] = chunks.length - before;
  }
  if (at !== data.length) throw new Error(`a batch of ${data.length} bytes whose lengths add up to ${at}`);
  job.size = at;
  job.ended = true;
  const idBufs: Buffer[] = [];
  const ids = new Uint8Array(chunks.length * 32);
  const lens = new Uint32Array(chunks.length);
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    const cid = blobId(idKey, job.type, c);
    idBufs.push(cid);
    ids.set(cid, i * 32);
    lens[i] = c.length;
  }
  const batch = job.batch++;
  job.held.set(batch, { chunks, ids: idBufs, piece: data });
  out.push({ ev: 'chunks', job: id, batch, ids, sizes: lens, counts, end: { size: at } });
  transfer.push(ids.buffer as ArrayBuffer, lens.buffer as ArrayBuffer, counts.buffer as ArrayBuffer);
}

/**
 * Reads the next piece of a file and feeds it. After the last byte, one fstat checks that the file is still
 * the version the read started from (same size, every byte of it read, same times): a file that changed
 * meanwhile (grew, shrank, was rewritten) is read again from the start, at most MAX_FILE_READS times in all;
 * one that keeps changing fails the job with FILE_CHANGED. Only a read that found the file unchanged ends the
 * job, so the chunks the job reports are those of one version of the file, whole.
 */
function readNextPiece(id: number, job: Job): void {
  for (;;) {
    const want = Math.max(0, Math.min(PIECE_SIZE, job.fileSize! - job.offset!));
    const buf = pieceBuffer(want);
    let got = 0;
    while (got < want) {
      const n = readSync(job.fd!, buf, got, want - got, job.offset! + got);
      if (n === 0) break;
      got += n;
    }
    job.offset! += got;
    const end = got < want || job.offset! >= job.fileSize!;
    if (end) {
      const st = fstatSync(job.fd!);
      if (got < want || !sameVersion(job.expect!, st)) {
        releaseNow([buf]);
        if (job.reads! >= MAX_FILE_READS) {
          failJob(id, changedError(job, st, got < want));
          return;
        }
        readAgain(id, job, st);
        continue;
      }
      closeSync(job.fd!);
      job.fd = undefined;
      job.mtimeMs = Math.floor(st.mtimeMs);
    }
    const piece = got === buf.length ? buf : buf.subarray(0, got);
    job.sha1?.update(piece);
    job.sha512?.update(piece);
    feed(id, job, piece, end, buf);
    return;
  }
}

/** Starts a file's read over, expecting the version `st` (every batch of the job is decided by now). */
function readAgain(id: number, job: Job, st: Stats): void {
  job.reads!++;
  job.expect = versionOf(st);
  job.fileSize = st.size;
  job.offset = 0;
  job.chunker = chunkerFor(job.kind);
  job.carry = [];
  job.carryLen = 0;
  job.size = 0;
  job.raw = undefined;
  if (job.sha1) job.sha1 = createHash('sha1');
  if (job.sha512) job.sha512 = createHash('sha512');
  out.push({ ev: 'restart', job: id });
}

function changedError(job: Job, st: Stats, short: boolean): NodeJS.ErrnoException {
  const how = short
    ? `ended at byte ${job.offset} of ${job.fileSize}`
    : st.size !== job.expect!.size
      ? `size went from ${job.expect!.size} to ${st.size} bytes`
      : 'modified';
  const err: NodeJS.ErrnoException = new Error(
    `changed while being read, ${job.reads} reads in a row (the last: ${how})`,
  );
  err.code = FILE_CHANGED;
  return err;
}

async function builder(type: BlobType.data | BlobType.tree): Promise<PackBuilder> {
  let b = open[type];
  if (!b) {
    b = await PackBuilder.create(
      type,
      type === BlobType.tree ? init.recipients.tree : init.recipients.data,
      init.spoolDir,
    );
    open[type] = b;
  }
  return b;
}

function seal(type: BlobType.data | BlobType.tree): void {
  const b = open[type];
  if (!b || b.count === 0) return;
  open[type] = undefined;
  const p = b.finish();
  const entries = new Uint8Array(p.entries.length * ENTRY_SIZE);
  const eb = Buffer.from(entries.buffer);
  p.entries.forEach((e, i) => encodeEntry(e, eb, i * ENTRY_SIZE));
  out.push({
    ev: 'pack',
    pack: {
      id: p.id,
      type,
      path: p.path,
      size: p.size,
      sha256: p.sha256.toString('hex'),
      entries,
      rawBytes: sizes[type].raw,
      storedBytes: sizes[type].stored,
    },
  });
  transfer.push(entries.buffer as ArrayBuffer);
  sizes[type] = { raw: 0, stored: 0 };
}

async function decide(id: number, batch: number, store: Uint8Array): Promise<void> {
  const job = jobs.get(id);
  if (!job) return;
  const held = job.held.get(batch);
  if (!held) return;
  job.held.delete(batch);
  const { chunks, ids, piece } = held;
  let bytes = 0;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    bytes += c.length;
    if (!store[i]) continue;
    const { bytes: stored, compression } = compressor.compress(c, job.raw ? 'raw' : 'try');
    const b = await builder(job.type);
    b.add(ids[i]!, compression, c.length, stored);
    sizes[job.type].raw += c.length;
    sizes[job.type].stored += stored.length;
    if (stored !== c) releaseNow([stored]); // a compressed copy, encrypted by now
    if (b.size >= init.packSize) seal(job.type);
  }
  if (piece) releaseNow([piece]);
  out.push({ ev: 'consumed', job: id, bytes });
  if (job.fd !== undefined && job.held.size === 0) readNextPiece(id, job);
  if (job.ended && job.held.size === 0) jobs.delete(id);
}

function failJob(id: number, err: unknown): void {
  const job = jobs.get(id);
  if (job?.fd !== undefined) closeSync(job.fd);
  jobs.delete(id);
  const e = err as NodeJS.ErrnoException;
  out.push({ ev: 'failed', job: id, message: e?.message ?? String(err), code: e?.code });
}

async function handle(op: Op): Promise<void> {
  switch (op.op) {
    case 'file': {
      const job = newJob(op.kind);
      job.path = op.path;
      job.fileSize = op.size;
      job.offset = 0;
      job.expect = { size: op.size, mtimeMs: op.mtimeMs };
      job.reads = 1;
      if (op.sha1) job.sha1 = createHash('sha1');
      if (op.sha512) job.sha512 = createHash('sha512');
      jobs.set(op.job, job);
      try {
        // Never follow a symbolic link swapped in after the walk.
        job.fd = openSync(op.path, constants.O_RDONLY | constants.O_NOFOLLOW);
        readNextPiece(op.job, job);
      } catch (err) {
        failJob(op.job, err);
      }
      return;
    }
    case 'data': {
      let job = jobs.get(op.job);
      if (!job) {
        job = newJob(op.kind);
        jobs.set(op.job, job);
      }
      // The piece is this thread's (transferred): released once its batch is decided, like a file's.
      const piece = Buffer.from(op.data);
      feed(op.job, job, piece, op.end, piece);
      return;
    }
    case 'many':
      feedMany(op.job, op.kind, Buffer.from(op.data), op.lengths);
      return;
    case 'decide':
      try {
        await decide(op.job, op.batch, op.store);
      } catch (err) {
        if (jobs.get(op.job)?.fd !== undefined) failJob(op.job, err);
        else throw err;
      }
      return;
    case 'flush':
      seal(BlobType.data);
      seal(BlobType.tree);
      out.push({ ev: 'flushed', seq: op.seq });
      return;
  }
}

let chain = Promise.resolve();
port.on('message', (msg: ToWorker) => {
  chain = chain
    .then(async () => {
      for (const op of msg.ops) await handle(op);
    })
    .catch((err: unknown) => {
      out.push({ ev: 'error', message: err instanceof Error ? err.message : String(err) });
    })
    .finally(() => {
      if (out.length === 0) return;
      const m: FromWorker = { events: out };
      const t = transfer;
      out = [];
      transfer = [];
      port.postMessage(m, t);
    });
});
