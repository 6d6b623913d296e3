import { Worker } from 'node:worker_threads';
import { DestinationError, RegbackupError } from '../src/errors.js';
import type { BlobReader } from '../src/repo/reader.js';
import { chunkIds } from '../src/repo/stream-ref.js';
import { packKey } from '../src/repo/pack.js';
import type { TarballEntry } from '../src/repo/format/tarball-listing.js';
import type { ObjectStore } from '../src/store/types.js';
import type { BlobFetcher } from './fetch.js';
import type { FileJob, Job, JobResult, PackRef } from './file-protocol.js';
import { tempName, type SafeTree } from './safe-path.js';
import type { Outcome } from './tarball-file.js';

/**
 * The fast path of a tarball restore: when the first target is a local directory (an `fs` target, or a copy of
 * a bucket) and the destination is a directory, worker threads read the packs and write the files themselves
 * (file-worker.ts); this thread only plans — listing order, index lookups, pack headers, safe directories —
 * and keeps the results in order for the checkpoint. A file a worker cannot assemble intact from that target
 * goes through `fallback` (the general path, which tries the other targets and records the fallback).
 */

/** The directory of a local target (its store's location is `file://<dir>/`), or undefined. */
export function localRoot(store: ObjectStore): string | undefined {
  const m = /^file:\/\/(\/.*?)\/?$/.exec(store.location);
  return m?.[1];
}

/** Files per job, and bytes: enough to read neighbouring blobs of a pack together, small enough to pipeline. */
const JOB_FILES = 256;
const JOB_BYTES = 1024 * 1024;
const FATAL = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EMFILE', 'ENFILE']);

class FileWorkers {
  private readonly workers: {
    w: Worker;
    busy: number;
    pending: Map<number, (r: JobResult | Error) => void>;
  }[] = [];
  private n = 0;

  constructor(size: number, idKey: Buffer) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./file-worker.js', import.meta.url), {
        workerData: { idKey: new Uint8Array(idKey) },
      });
      w.unref();
      const slot = { w, busy: 0, pending: new Map<number, (r: JobResult | Error) => void>() };
      const settle = (n: number, r: JobResult | Error) => {
        const p = slot.pending.get(n);
        slot.pending.delete(n);
        if (--slot.busy === 0) w.unref();
        p?.(r);
      };
      w.on('message', (m: JobResult & { error?: string }) =>
        settle(m.n, m.error ? new Error(`file worker: ${m.error}`) : m),
      );
      w.on('error', (err) => {
        for (const n of [...slot.pending.keys()]) settle(n, err);
      });
      this.workers.push(slot);
    }
  }

  run(job: Omit<Job, 'n'>): Promise<JobResult> {
    const slot = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const n = this.n++;
    return new Promise<JobResult>((resolve, reject) => {
      slot.pending.set(n, (r) => (r instanceof Error ? reject(r) : resolve(r)));
      if (slot.busy++ === 0) slot.w.ref();
      slot.w.postMessage({ ...job, n });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((s) => s.w.terminate()));
  }
}

interface Planned {
  e: TarballEntry;
  /** Already in place (resumed restore), or to be written by the general path, or sent in the job. */
  kind: 'skip' | 'fallback' | 'job' | 'failed';
  /** How a file in place was found (`skip`). */
  found?: 'skipped' | 'present';
  message?: string;
}

export interface LocalOptions {
  fetcher: BlobFetcher;
  treeReader: BlobReader;
  tree: SafeTree;
  store: ObjectStore;
  root: string;
  workers: number;
  /** A resumed restore: whether the file is already in place on the destination (then it is not written). */
  found?: (e: TarballEntry) => Promise<'skipped' | 'present' | undefined>;
  /** The general path, for a file the workers could not assemble from this target. */
  fallback: (e: TarballEntry) => Promise<Outcome>;
}

export async function* restoreLocal(
  o: LocalOptions,
  src: AsyncIterable<TarballEntry>,
): AsyncGenerator<Outcome> {
  const pool = new FileWorkers(Math.max(1, o.workers), o.fetcher.repo.idKey);
  const destRoot = await o.tree.rootReal();
  const queue: { planned: Planned[]; result?: Promise<JobResult> }[] = [];
  const headers = new Map<string, Promise<PackRef>>();
  const packRef = (pack: { id: string; type: number; size: number }): Promise<PackRef> => {
    let p = headers.get(pack.id);
    if (!p) {
      const key = packKey(pack.type, pack.id);
      p = o.fetcher.packHeader(o.store, key).then((h) => ({
        path: `${o.root}/${key}`,
        key: h.key,
        payloadOffset: h.payloadOffset,
        size: pack.size,
      }));
      headers.set(pack.id, p);
    }
    return p;
  };
  let planned: Planned[] = [];
  let files: FileJob[] = [];
  let packs: PackRef[] = [];
  let packNos = new Map<string, number>();
  let bytes = 0;
  const dispatch = () => {
    const job = { planned, result: files.length ? pool.run({ root: destRoot, packs, files }) : undefined };
    job.result?.catch(() => undefined); // awaited in order below; this only keeps an early failure from being "unhandled"
    queue.push(job);
    planned = [];
    files = [];
    packs = [];
    packNos = new Map();
    bytes = 0;
  };
  async function* drain(job: { planned: Planned[]; result?: Promise<JobResult> }): AsyncGenerator<Outcome> {
    const res = job.result ? await job.result : undefined;
    o.fetcher.bytesRead += res?.bytesRead ?? 0;
    let i = 0;
    for (const p of job.planned) {
      if (p.kind === 'skip') yield { path: p.e.path, ok: true, bytes: p.e.size, how: p.found! };
      else if (p.kind === 'failed')
        yield { path: p.e.path, ok: false, message: p.message!, kind: 'destination-write' };
      else if (p.kind === 'fallback') yield await o.fallback(p.e);
      else {
        const r = res!.results[i++]!;
        if (r.ok) {
          o.tree.noteRenamed(p.e.path);
          yield { path: p.e.path, ok: true, bytes: p.e.size, how: r.how };
        } else if (r.kind === 'source') yield await o.fallback(p.e);
        else if (r.kind === 'dest' && r.code && FATAL.has(r.code)) {
          throw new DestinationError(
            `${destRoot}: writing ${JSON.stringify(p.e.path)} failed: ${r.message}`,
            { object: p.e.path },
          );
        } else {
          const kind = r.kind === 'dest' ? 'destination-write' : 'content-mismatch';
          yield { path: p.e.path, ok: false, message: `${JSON.stringify(p.e.path)}: ${r.message}`, kind };
        }
      }
    }
  }
  try {
    for await (const e of src) {
      const found = await o.found?.(e);
      if (found) {
        planned.push({ e, kind: 'skip', found });
        if (planned.length >= 4 * JOB_FILES) dispatch();
        continue;
      }
      let dir: string;
      try {
        dir = await o.tree.dirOf(e.path);
      } catch (err) {
        if (!(err instanceof DestinationError)) throw err;
        planned.push({ e, kind: 'failed', message: err.message });
        continue;
      }
      const ids: Buffer[] = [];
      for await (const id of chunkIds(o.treeReader, e.data)) ids.push(Buffer.from(id));
      const locs = ids.map((id) => o.fetcher.index.lookup(id));
      if (locs.some((l) => !l)) {
        planned.push({ e, kind: 'fallback' }); // reported by the general path, which names the blob
        continue;
      }
      // A pack missing or unreadable on this target: the general path reads the file from the next one.
      let refs: PackRef[];
      try {
        refs = await Promise.all(locs.map((l) => packRef(l!.pack)));
      } catch (err) {
        if (!(err instanceof RegbackupError)) throw err;
        planned.push({ e, kind: 'fallback' });
        continue;
      }
      const chunks: FileJob['chunks'] = [];
      for (let i = 0; i < ids.length; i++) {
        const loc = locs[i]!;
        let no = packNos.get(loc.pack.id);
        if (no === undefined) {
          no = packs.length;
          packNos.set(loc.pack.id, no);
          packs.push(refs[i]!);
        }
        chunks.push({
          pack: no,
          offset: loc.offset,
          length: loc.length,
          rawLength: loc.rawLength,
          compression: loc.compression,
          type: loc.type,
          id: ids[i]!,
        });
      }
      const base = e.path.slice(e.path.lastIndexOf('/') + 1);
      files.push({
        rel: e.path,
        dir,
        base,
        tmp: tempName(base),
        size: e.size,
        mtime: e.mtime,
        sha1: e.sha1,
        sha512: e.sha512,
        chunks,
      });
      planned.push({ e, kind: 'job' });
      bytes += e.size;
      if (files.length >= JOB_FILES || planned.length >= 4 * JOB_FILES || bytes >= JOB_BYTES) dispatch();
      while (queue.length > 4 * Math.max(1, o.workers)) yield* drain(queue.shift()!);
    }
    if (planned.length) dispatch();
    while (queue.length) yield* drain(queue.shift()!);
  } finally {
    await pool.close();
  }
}
