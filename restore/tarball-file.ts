import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { DestinationError, IntegrityError, messageOf, systemCodeOf } from '../src/errors.js';
import type { TarballEntry } from '../src/repo/format/tarball-listing.js';
import { assertValidKey, ObjectNotFoundError, type ObjectStore } from '../src/store/types.js';
import type { StreamBytes } from './prefetch.js';
import type { SafeTree } from './safe-path.js';
import type { FileFailureKind } from './types.js';

/**
 * Writing one tarball of a listing into a destination, verified: size, and sha1 (or sha512) when the listing
 * records it. Used by the general path (tarballs.ts) and as the fallback of the local fast path. And looking
 * at what a destination holds (FileDestination): what a resumed restore keeps and the final check count come
 * from there.
 */

/** Files up to this size are verified in memory before they are stored (S3); bigger ones while streaming. */
const WHOLE = 8 * 1024 * 1024;

export interface Hashes {
  sha1?: Hash;
  sha512?: Hash;
  size: number;
}

export function hashesFor(e: TarballEntry): Hashes {
  return {
    sha1: e.sha1 ? createHash('sha1') : undefined,
    sha512: e.sha512 ? createHash('sha512') : undefined,
    size: 0,
  };
}

export function update(h: Hashes, b: Buffer): void {
  h.sha1?.update(b);
  h.sha512?.update(b);
  h.size += b.length;
}

/** Compares what was written with the listing: size, and sha1 (or sha512) when recorded. Throws on a mismatch. */
export function verify(e: TarballEntry, h: Hashes): 'sha1' | 'sha512' | 'size' {
  if (h.size !== e.size)
    throw new IntegrityError(`${e.path}: ${h.size} bytes restored, the snapshot says ${e.size}`, {
      object: e.path,
    });
  if (h.sha1) {
    const got = h.sha1.digest('hex');
    if (got !== e.sha1)
      throw new IntegrityError(`${e.path}: sha1 ${got} does not match the recorded ${e.sha1}`, {
        object: e.path,
      });
    return 'sha1';
  }
  if (h.sha512) {
    const got = h.sha512.digest('base64');
    if (got !== e.sha512)
      throw new IntegrityError(`${e.path}: sha512 does not match the recorded one`, { object: e.path });
    return 'sha512';
  }
  return 'size';
}

/**
 * A file of the listing handled by the write pass: written and verified on the way (sha1, sha512, size), or
 * left as found on a resumed restore — `skipped`: read back and verified now; `present`: its size (and mtime)
 * are the listing's, its content is read back by the final check (the journal had it as done).
 */
export type Outcome =
  | { path: string; ok: true; bytes: number; how: 'sha1' | 'sha512' | 'size' | 'skipped' | 'present' }
  | { path: string; ok: false; message: string; kind: FileFailureKind };

/** Writes one file of the listing into a destination directory; it is verified before it appears under its name. */
export async function writeFile(tree: SafeTree, e: TarballEntry, data: StreamBytes): Promise<Outcome> {
  const { fh, tmp, final } = await tree.openTemp(e.path);
  const h = hashesFor(e);
  let how: 'sha1' | 'sha512' | 'size';
  try {
    for await (const b of data) {
      update(h, b);
      let off = 0;
      while (off < b.length) off += (await fh.write(b, off, b.length - off)).bytesWritten;
    }
    how = verify(e, h);
    await fh.datasync();
    const t = (e.mtime + 0.5) / 1000; // the half millisecond survives the float seconds that utimes takes
    if (Number.isFinite(t) && t > 0) await fh.utimes(t, t);
  } catch (err) {
    await fh.close();
    await tree.commitFailed(tmp);
    throw err;
  }
  await fh.close();
  await tree.commit(e.path, tmp, final);
  return { path: e.path, ok: true, bytes: e.size, how };
}

/**
 * What a tarball restore reads of its destination to know a file is there: a directory tree or an object
 * store. Nothing is taken from the resume journal: every answer comes from the destination itself.
 */
export interface FileDestination {
  /** The file at the entry's name: its size, and its mtime where the destination keeps the snapshot's. */
  stat(e: TarballEntry): Promise<{ size: number; mtimeMs?: number } | undefined>;
  /** Reads the file back: undefined if its size and sha1 (or sha512) are the listing's, else what differs. */
  readBack(e: TarballEntry): Promise<string | undefined>;
}

/** Why the file at the entry's name is not the listing's by size (and mtime, where kept), or undefined. */
export async function sizeProblem(
  d: FileDestination,
  e: TarballEntry,
  withMtime: boolean,
): Promise<string | undefined> {
  const st = await d.stat(e);
  if (!st) return 'missing on the destination';
  if (st.size !== e.size) return `${st.size} bytes on the destination, the snapshot says ${e.size}`;
  if (withMtime && st.mtimeMs !== undefined && Math.floor(st.mtimeMs) !== Math.floor(e.mtime))
    return 'modified on the destination (mtime differs)';
  return undefined;
}

/** Why the file at the entry's name is not the listing's (size, mtime where kept, content), or undefined. */
export async function contentProblem(d: FileDestination, e: TarballEntry): Promise<string | undefined> {
  return (await sizeProblem(d, e, true)) ?? (await d.readBack(e));
}

async function hashProblem(e: TarballEntry, content: AsyncIterable<Buffer>): Promise<string | undefined> {
  const h = hashesFor(e);
  for await (const b of content) update(h, b);
  try {
    verify(e, h);
    return undefined;
  } catch (err) {
    if (err instanceof IntegrityError) return `${err.message} (read back from the destination)`;
    throw err;
  }
}

/** The files of a destination directory, found through the same checked directories the writes use. */
export class DirectoryFiles implements FileDestination {
  constructor(private readonly tree: SafeTree) {}

  private async file(e: TarballEntry): Promise<string> {
    const dir = await this.tree.dirOf(e.path);
    return path.join(dir, e.path.slice(e.path.lastIndexOf('/') + 1));
  }

  async stat(e: TarballEntry): Promise<{ size: number; mtimeMs: number } | undefined> {
    const file = await this.file(e);
    const st = await lstat(file).catch((err: unknown) => {
      if (systemCodeOf(err) === 'ENOENT') return undefined;
      throw new DestinationError(`cannot look at ${file}: ${messageOf(err)}`, { object: e.path });
    });
    return st?.isFile() ? { size: st.size, mtimeMs: st.mtimeMs } : undefined;
  }

  async readBack(e: TarballEntry): Promise<string | undefined> {
    if (!e.sha1 && !e.sha512) return undefined; // the size was compared by stat
    const file = await this.file(e);
    let fh;
    try {
      fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (systemCodeOf(err) === 'ENOENT' || systemCodeOf(err) === 'ELOOP')
        return 'missing on the destination';
      throw new DestinationError(`cannot read ${file}: ${messageOf(err)}`, { object: e.path });
    }
    try {
      return await hashProblem(e, fh.createReadStream({ autoClose: false }) as AsyncIterable<Buffer>);
    } finally {
      await fh.close();
    }
  }
}

/** The objects of an S3 (or other object store) destination: a HEAD for the size, a GET to read back. */
export class StoreFiles implements FileDestination {
  constructor(private readonly store: ObjectStore) {}

  async stat(e: TarballEntry): Promise<{ size: number } | undefined> {
    if (!validKey(e.path)) return undefined; // never written (the write names why)
    const st = await this.store.stat(e.path);
    return st ? { size: st.size } : undefined;
  }

  async readBack(e: TarballEntry): Promise<string | undefined> {
    if (!e.sha1 && !e.sha512) return undefined;
    if (!validKey(e.path)) return 'missing on the destination';
    try {
      return await hashProblem(e, await this.store.get(e.path));
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return 'missing on the destination';
      throw err;
    }
  }
}

function validKey(p: string): boolean {
  try {
    assertValidKey(p);
    return true;
  } catch {
    return false;
  }
}

export async function putObject(store: ObjectStore, e: TarballEntry, data: StreamBytes): Promise<Outcome> {
  try {
    assertValidKey(e.path);
  } catch {
    throw new DestinationError(
      `${JSON.stringify(e.path)} cannot be an object key on ${store.location} (printable ASCII without spaces only)`,
      { object: e.path },
    );
  }
  const h = hashesFor(e);
  if (e.size <= WHOLE) {
    const buf = await data.all();
    update(h, buf);
    const how = verify(e, h);
    await store.put(e.path, buf, { contentType: 'application/octet-stream' });
    return { path: e.path, ok: true, bytes: e.size, how };
  }
  // Streamed: a mismatch found at the end fails the upload, so no object appears under the name.
  let how: 'sha1' | 'sha512' | 'size' = 'size';
  const body = Readable.from(
    (async function* () {
      for await (const b of data) {
        update(h, b);
        yield b;
      }
      how = verify(e, h);
    })(),
  );
  await store.put(e.path, body, { size: e.size, contentType: 'application/octet-stream' });
  return { path: e.path, ok: true, bytes: e.size, how };
}
