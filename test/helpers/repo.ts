import path from 'node:path';
import { Progress } from '../../src/util/progress.js';
import type { BackupContext } from '../../src/sources/types.js';
import { createLogger } from '../../src/log.js';
import type { BlobIndex } from '../../src/repo/blob-index.js';
import { Fanout } from '../../src/repo/fanout.js';
import { generateKeys, type RestoreIdentity, type WorkerKey } from '../../src/repo/keys.js';
import { BlobReader } from '../../src/repo/reader.js';
import { Repository } from '../../src/repo/repository.js';
import type { SourceSnapshot } from '../../src/repo/snapshot.js';
import { BlobWriter } from '../../src/repo/writer.js';
import { FsStore } from '../../src/store/fs.js';
import type { ObjectStore } from '../../src/store/types.js';
import { removeTmpDir, tmpDir } from '../harness/tmp.js';

export interface TestRepo {
  dir: string;
  keys: { worker: WorkerKey; restore: RestoreIdentity };
  stores: ObjectStore[];
  /** Opened with the worker key. */
  repo: Repository;
  index: BlobIndex;
  fanout: Fanout;
  writer: BlobWriter;
  /** Reads tree blobs (worker key). */
  reader: BlobReader;
  /** A context for a source backup; `previous` is the source's entry of an earlier snapshot. */
  ctx(previous?: SourceSnapshot): BackupContext;
  /** Opens the repository with the restore identity (reads everything). */
  restoreReader(): Promise<BlobReader>;
  /** Flushes the writer and starts a fresh one (a new "run"). */
  nextRun(): Promise<void>;
  close(): Promise<void>;
}

/** A repository on fresh local-filesystem targets, with keys, for tests of sources and restores. */
export async function makeTestRepo(
  opts: { stores?: ObjectStore[]; packSize?: number } = {},
): Promise<TestRepo> {
  const dir = await tmpDir();
  const keys = await generateKeys();
  const stores = opts.stores ?? [new FsStore({ name: 'local', root: path.join(dir, 'target') })];
  await Repository.init(stores, keys.worker, { packSize: opts.packSize ?? 1024 * 1024, compressionLevel: 3 });
  const { repo } = await Repository.open(
    stores,
    { worker: keys.worker },
    { cacheRoot: path.join(dir, 'cache') },
  );
  const log = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const t: TestRepo = {
    dir,
    keys,
    stores,
    repo,
    index: await repo.loadIndex(),
    fanout: new Fanout(repo.targets),
    writer: undefined as unknown as BlobWriter,
    reader: undefined as unknown as BlobReader,
    ctx(previous) {
      return {
        writer: t.writer,
        reader: t.reader,
        previous,
        progress: new Progress(),
        log,
        tmpDir: dir,
        signal: new AbortController().signal,
      };
    },
    async restoreReader() {
      const { repo: r } = await Repository.open(
        stores,
        { restore: keys.restore },
        { cacheRoot: path.join(dir, 'cache-restore') },
      );
      return new BlobReader(r, await r.loadIndex());
    },
    async nextRun() {
      await t.writer.flush();
      await t.writer.close();
      t.writer = new BlobWriter(repo, t.index, t.fanout, { workers: 2 });
    },
    async close() {
      await t.writer.close();
      repo.close();
      await removeTmpDir(dir);
    },
  };
  t.writer = new BlobWriter(repo, t.index, t.fanout, { workers: 2 });
  t.reader = new BlobReader(repo, t.index);
  return t;
}
