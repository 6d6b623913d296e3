import os from 'node:os';
import { Worker } from 'node:worker_threads';
import pLimit from 'p-limit';
import { log } from '../log.js';
import type { BlobIndex, PackInfo } from './blob-index.js';
import { Chunker, type ChunkerParams } from './chunker.js';
import { looksCompressed } from './compress.js';
import type { Fanout } from './fanout.js';
import { blobId, BlobType, ID_SIZE } from './ids.js';
import { encodeIndexBody, type IndexedPack } from './index-object.js';
import { decodeEntry, ENTRY_SIZE, packKey, type PackEntry } from './pack.js';
import { HINT_RAW, HINT_TRY, type PackWorkerIn, type PackWorkerInit, type PackWorkerOut, type WirePack } from './pack-protocol.js';
import type { Repository } from './repository.js';

/**
 * What kind of bytes are being written, which decides the chunker, the blob type and compression:
 * - json: document bodies (packuments): CDC chunks, zstd, data blobs;
 * - bulk: tarballs and attachments: fixed-size chunks, stored raw when already compressed, data blobs;
 * - tree: listings and other metadata the worker may read back: CDC chunks, zstd, tree blobs.
 */
export type BlobKind = 'json' | 'bulk' | 'tree';

/** The chunks a stream was cut into, in order. */
export interface Chunks {
  size: number;
  ids: Buffer[];
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
  /** Bytes of pack objects written (per target, see Fanout.written). */
  packBytes: number;
  indexObjects: number;
}

export interface WriterOptions {
  /** Worker threads compressing, encrypting and packing (default: the number of cores). */
  workers?: number;
  /** Write an index object after this many packs (and at every flush). */
  indexEvery?: number;
  /** Bytes handed to workers and not yet packed, at most. */
  maxInflight?: number;
  /** Packs uploading at once. */
  uploadConcurrency?: number;
}

const BATCH_BYTES = 1024 * 1024;

interface WorkerSlot {
  worker: Worker;
  batch: { data: Buffer[]; ids: Buffer[]; meta: number[]; bytes: number };
  inflight: number;
  flushWaiters: Map<number, () => void>;
}

/**
 * Writes blobs into packs on every target: the main thread chunks, names (keyed HMAC) and deduplicates; worker
 * threads compress, encrypt and pack; packs are uploaded to every target once; index objects record them.
 * Memory is bounded: bytes in flight to workers and packs waiting for upload are both capped.
 */
export class BlobWriter {
  readonly stats: WriterStats = { bytesIn: 0, newBytes: 0, dedupBytes: 0, storedBytes: 0, newBlobs: 0, dedupBlobs: 0, packs: 0, packBytes: 0, indexObjects: 0 };
  /** Blobs handed to workers whose pack is not yet in an index object: dedup must see them too. */
  private readonly pending = new Set<string>();
  private readonly slots: WorkerSlot[];
  private next = 0;
  private seq = 0;
  private inflight = 0;
  private readonly maxInflight: number;
  private readonly roomWaiters: (() => void)[] = [];
  private readonly uploads = new Set<Promise<void>>();
  private readonly uploadLimit: ReturnType<typeof pLimit>;
  private unindexed: IndexedPack[] = [];
  private readonly indexEvery: number;
  private failure?: Error;
  private readonly chunkers: Record<BlobKind, ChunkerParams>;
  private closed = false;
  /** Keys of index objects written by this writer. */
  readonly indexKeys: string[] = [];

  constructor(
    private readonly repo: Repository,
    private readonly index: BlobIndex,
    private readonly fanout: Fanout,
    opts: WriterOptions = {},
  ) {
    const n = Math.max(1, opts.workers ?? Math.min(4, os.availableParallelism()));
    this.maxInflight = opts.maxInflight ?? 32 * 1024 * 1024;
    this.indexEvery = opts.indexEvery ?? 64;
    this.uploadLimit = pLimit(opts.uploadConcurrency ?? 2);
    const c = repo.config;
    this.chunkers = { json: c.chunkers.json, tree: c.chunkers.json, bulk: c.chunkers.bulk };
    const init: PackWorkerInit = {
      recipients: { data: c.recipients, tree: [...c.recipients, c.metadataRecipient] },
      packSize: c.packSize,
      compressionLevel: c.compressionLevel,
    };
    this.slots = Array.from({ length: n }, () => this.spawn(init));
  }

  private spawn(init: PackWorkerInit): WorkerSlot {
    const worker = new Worker(new URL('./pack-worker.js', import.meta.url), { workerData: init });
    const slot: WorkerSlot = { worker, batch: { data: [], ids: [], meta: [], bytes: 0 }, inflight: 0, flushWaiters: new Map() };
    worker.on('message', (msg: PackWorkerOut) => this.onMessage(slot, msg));
    worker.on('error', (err) => this.abort(err));
    worker.on('exit', (code) => {
      if (!this.closed) this.abort(new Error(`pack worker exited unexpectedly (code ${code})`));
    });
    return slot;
  }

  private onMessage(slot: WorkerSlot, msg: PackWorkerOut): void {
    switch (msg.t) {
      case 'ack':
        slot.inflight -= msg.bytes;
        this.inflight -= msg.bytes;
        this.wake();
        break;
      case 'pack':
        this.upload(msg.pack);
        break;
      case 'flushed':
        slot.flushWaiters.get(msg.seq)?.();
        slot.flushWaiters.delete(msg.seq);
        break;
      case 'error':
        this.abort(new Error(`pack worker: ${msg.message}`));
        break;
    }
  }

  private abort(err: Error): void {
    this.failure ??= err;
    this.wake();
    for (const s of this.slots) for (const w of s.flushWaiters.values()) w();
  }

  private wake(): void {
    while (this.roomWaiters.length && (this.inflight < this.maxInflight || this.failure)) this.roomWaiters.shift()!();
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  /** Writes a buffer (a document, a small file); resolves once its chunks are named and queued. */
  async write(data: Buffer, kind: BlobKind): Promise<Chunks> {
    const chunker = new Chunker(this.chunkers[kind], this.repo.gear);
    const ids: Buffer[] = [];
    const hint = kind === 'bulk' && looksCompressed(data) ? HINT_RAW : HINT_TRY;
    let off = 0;
    const cuts = chunker.push(data);
    const last = chunker.finish();
    if (last > 0 || data.length === 0) cuts.push(last);
    for (const len of cuts) {
      ids.push(await this.chunk(data.subarray(off, off + len), kind, hint));
      off += len;
    }
    return { size: data.length, ids };
  }

  /** Writes a stream of any length; memory stays at one chunk plus the writer's bounded queues. */
  async writeStream(src: AsyncIterable<Buffer | Uint8Array>, kind: BlobKind): Promise<Chunks> {
    const chunker = new Chunker(this.chunkers[kind], this.repo.gear);
    const ids: Buffer[] = [];
    let carry: Buffer[] = [];
    let carryLen = 0;
    let size = 0;
    let hint: number | undefined;
    for await (const piece of src) {
      const buf = Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
      if (buf.length === 0) continue;
      hint ??= kind === 'bulk' && looksCompressed(buf) ? HINT_RAW : HINT_TRY;
      size += buf.length;
      let off = 0;
      for (const len of chunker.push(buf)) {
        const need = len - carryLen;
        carry.push(buf.subarray(off, off + need));
        const chunk = carry.length === 1 ? carry[0]! : Buffer.concat(carry, len);
        ids.push(await this.chunk(chunk, kind, hint));
        off += need;
        carry = [];
        carryLen = 0;
      }
      if (off < buf.length) {
        // Copy: the caller may reuse its buffer.
        carry.push(Buffer.from(buf.subarray(off)));
        carryLen += buf.length - off;
      }
    }
    const last = chunker.finish();
    if (last > 0 || size === 0) {
      const chunk = carry.length === 1 ? carry[0]! : Buffer.concat(carry, carryLen);
      ids.push(await this.chunk(chunk, kind, hint ?? HINT_TRY));
    }
    return { size, ids };
  }

  private async chunk(data: Buffer, kind: BlobKind, hint: number): Promise<Buffer> {
    this.check();
    const type = kind === 'tree' ? BlobType.tree : BlobType.data;
    const id = blobId(this.repo.idKey, type, data);
    this.stats.bytesIn += data.length;
    const hex = id.toString('hex');
    if (this.pending.has(hex) || this.index.has(id)) {
      this.stats.dedupBytes += data.length;
      this.stats.dedupBlobs++;
      return id;
    }
    this.pending.add(hex);
    this.stats.newBytes += data.length;
    this.stats.newBlobs++;
    while (this.inflight >= this.maxInflight && !this.failure) await new Promise<void>((r) => this.roomWaiters.push(r));
    this.check();
    const slot = this.slots[this.next]!;
    const b = slot.batch;
    b.meta.push(type, hint, b.bytes, data.length);
    b.data.push(data);
    b.ids.push(id);
    b.bytes += data.length;
    slot.inflight += data.length;
    this.inflight += data.length;
    if (b.bytes >= BATCH_BYTES) {
      this.send(slot);
    } else if (b.data.length === 1) {
      // Do not let a lone small blob wait for company forever.
      setImmediate(() => {
        if (slot.batch === b && b.data.length) this.send(slot);
      });
    }
    return id;
  }

  private send(slot: WorkerSlot): void {
    const b = slot.batch;
    if (b.data.length === 0) return;
    slot.batch = { data: [], ids: [], meta: [], bytes: 0 };
    // The next blobs go to the next worker: both cores stay busy.
    if (this.slots[this.next] === slot) this.next = (this.next + 1) % this.slots.length;
    const data = new Uint8Array(b.bytes);
    let at = 0;
    for (const d of b.data) {
      data.set(d, at);
      at += d.length;
    }
    const ids = new Uint8Array(b.ids.length * ID_SIZE);
    b.ids.forEach((id, i) => ids.set(id, i * ID_SIZE));
    const meta = Uint32Array.from(b.meta);
    const msg: PackWorkerIn = { t: 'blobs', seq: ++this.seq, data: data.buffer, ids, meta };
    slot.worker.postMessage(msg, [data.buffer, ids.buffer, meta.buffer]);
  }

  private upload(p: WirePack): void {
    const bytes = Buffer.from(p.bytes);
    const eb = Buffer.from(p.entries.buffer, p.entries.byteOffset, p.entries.byteLength);
    const entries: PackEntry[] = [];
    for (let at = 0; at < eb.length; at += ENTRY_SIZE) entries.push(decodeEntry(eb, at));
    const info: PackInfo = { id: p.id, type: p.type, size: bytes.length, sha256: p.sha256 };
    const job = this.uploadLimit(async () => {
      if (this.failure) return;
      await this.fanout.put(packKey(p.type, p.id), bytes, { size: bytes.length });
      this.stats.packs++;
      this.stats.packBytes += bytes.length;
      this.stats.storedBytes += p.storedBytes;
      this.unindexed.push({ info, entries });
      if (this.unindexed.length >= this.indexEvery) await this.writeIndex();
    }).catch((err: unknown) => this.abort(err as Error));
    this.uploads.add(job);
    void job.finally(() => this.uploads.delete(job));
  }

  /** Writes an index object for the packs uploaded since the last one. */
  private async writeIndex(): Promise<void> {
    const packs = this.unindexed;
    if (packs.length === 0) return;
    this.unindexed = [];
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
    this.check();
    await Promise.all(
      this.slots.map((slot) => {
        this.send(slot);
        const seq = ++this.seq;
        return new Promise<void>((resolve) => {
          slot.flushWaiters.set(seq, resolve);
          slot.worker.postMessage({ t: 'flush', seq } satisfies PackWorkerIn);
        });
      }),
    );
    this.check();
    while (this.uploads.size) await Promise.all([...this.uploads]);
    this.check();
    await this.writeIndex();
    this.index.persist();
    if (this.pending.size) log().warn({ pending: this.pending.size }, 'blobs still pending after flush');
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
