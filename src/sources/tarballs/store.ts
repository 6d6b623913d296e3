import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { TarballSourceConfig } from '../../config/schema.js';
import { lazyS3 } from '../../store/lazy.js';
import type { ObjectStore } from '../../store/types.js';
import { ExternalSorter } from '../../util/external-sort.js';
import { nameProblem, showName } from '../../repo/names.js';
import { inShard, walkTree, walkTreeBatches, type Shard, type WalkEntry } from './walk.js';

/**
 * A tarball store to back up: a directory tree in the registry layout, or an S3 bucket and prefix. Both list
 * their files in listing order (comparePaths) and read them.
 */
export interface TarballStore {
  /** Where it is, without credentials (a directory or s3://bucket/prefix). */
  readonly location: string;
  /** Files in listing order (only those of `shard`, when given). */
  entries(tmpDir: string, shard?: Shard): AsyncIterable<WalkEntry & { etag?: string }>;
  /** entries in batches, when the store lists that way (a directory's walk does): one await per batch. */
  batches?(tmpDir: string, shard?: Shard): AsyncIterable<(WalkEntry & { etag?: string })[]>;
  /** The whole file when small (one read), else a stream. */
  read(p: string, size: number): Promise<Buffer | Readable>;
  /** A local file's path, when the store is a directory: the writer's workers then read it themselves. */
  localPath?(p: string): string;
}

/** Files up to this size are read in one go; bigger ones are streamed. */
export const WHOLE_FILE_MAX = 4 * 1024 * 1024;

export function openTarballStore(cfg: TarballSourceConfig): TarballStore {
  return 'path' in cfg ? new DirTarballStore(cfg.path) : new S3TarballStore(cfg);
}

export class DirTarballStore implements TarballStore {
  readonly location: string;
  constructor(private readonly root: string) {
    this.location = path.resolve(root);
  }

  entries(tmpDir: string, shard?: Shard): AsyncIterable<WalkEntry> {
    return walkTree(this.root, tmpDir, shard);
  }

  batches(tmpDir: string, shard?: Shard): AsyncIterable<WalkEntry[]> {
    return walkTreeBatches(this.root, tmpDir, shard);
  }

  localPath(p: string): string {
    return path.join(this.root, p);
  }

  async read(p: string, size: number): Promise<Buffer | Readable> {
    const full = path.join(this.root, p);
    if (size > WHOLE_FILE_MAX) return createReadStream(full, { highWaterMark: WHOLE_FILE_MAX });
    // O_NOFOLLOW: the walker saw a regular file; a symlink swapped in since then is not followed.
    const fh = await open(full, 'r', undefined);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error('not a regular file');
      const buf = Buffer.allocUnsafe(st.size);
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      return off === buf.length ? buf : buf.subarray(0, off);
    } finally {
      await fh.close();
    }
  }
}

export class S3TarballStore implements TarballStore {
  readonly location: string;
  private readonly store: ObjectStore;
  constructor(cfg: Extract<TarballSourceConfig, { s3: unknown }>) {
    const s = cfg.s3;
    this.store = lazyS3({
      name: cfg.name,
      bucket: s.bucket,
      prefix: s.prefix,
      region: s.region,
      endpoint: s.endpoint,
      forcePathStyle: s.forcePathStyle,
      credentials: s.credentials,
      sourceKeys: true,
    });
    this.location = `s3://${s.bucket}/${s.prefix}`;
  }

  async *entries(tmpDir: string, shard?: Shard): AsyncIterable<WalkEntry & { etag?: string }> {
    // S3 lists in byte order, where "/" is an ordinary character: re-sort into listing order.
    const sorter = new ExternalSorter((r) => (JSON.parse(r) as { k: string }).k, { tmpDir });
    for await (const o of this.store.list('')) {
      if (!inShard(o.key, shard)) continue;
      await sorter.add(
        JSON.stringify({
          k: o.key.replaceAll('/', '\0'),
          p: o.key,
          s: o.size,
          m: o.mtime?.getTime() ?? 0,
          e: o.etag,
        }),
      );
    }
    for await (const r of sorter.sorted()) {
      const o = JSON.parse(r) as { p: string; s: number; m: number; e?: string };
      // The name rule (src/repo/names.ts): a key a snapshot cannot hold is reported, never stored.
      const refused = nameProblem(o.p);
      if (refused) {
        yield {
          kind: 'problem',
          path: showName(o.p),
          refused: true,
          problem: `${refused}: a name a snapshot cannot hold; skipped`,
          severity: 'error',
        };
        continue;
      }
      yield { kind: 'file', path: o.p, size: o.s, mtimeMs: o.m, etag: o.e };
    }
  }

  async read(p: string, size: number): Promise<Buffer | Readable> {
    return size > WHOLE_FILE_MAX ? this.store.get(p) : this.store.getBuffer(p);
  }
}
