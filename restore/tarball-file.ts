import { createHash, type Hash } from 'node:crypto';
import { lstat, open } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { DestinationError, IntegrityError, systemCodeOf } from '../src/errors.js';
import type { TarballEntry } from '../src/sources/tarballs/source.js';
import { assertValidKey, type ObjectStore } from '../src/store/types.js';
import type { StreamBytes } from './prefetch.js';
import type { SafeTree } from './safe-path.js';

/**
 * Writing one tarball of a listing into a destination, verified: size, and sha1 (or sha512) when the listing
 * records it. Used by the general path (tarballs.ts) and as the fallback of the local fast path.
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

export type Outcome =
  | { path: string; ok: true; bytes: number; how: 'sha1' | 'sha512' | 'size' | 'skipped' }
  | { path: string; ok: false; message: string };

/** Restores one tarball store as planned; each file is verified before it appears under its name. */
export async function writeFile(
  tree: SafeTree,
  e: TarballEntry,
  data: StreamBytes,
  resume: boolean,
): Promise<Outcome> {
  if (resume && (await inPlace(tree, e))) {
    await tree.removeStaleTemp(e.path);
    return { path: e.path, ok: true, bytes: e.size, how: 'skipped' };
  }
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

/** A file already at its final name with the listing's size, mtime and checksum (written by the interrupted run). */
export async function inPlace(tree: SafeTree, e: TarballEntry): Promise<boolean> {
  const dir = await tree.dirOf(e.path);
  const file = path.join(dir, e.path.slice(e.path.lastIndexOf('/') + 1));
  const st = await lstat(file).catch((err: unknown) => {
    if (systemCodeOf(err) === 'ENOENT') return undefined;
    throw err;
  });
  if (!st?.isFile() || st.size !== e.size || Math.floor(st.mtimeMs) !== Math.floor(e.mtime)) return false;
  if (!e.sha1 && !e.sha512) return true;
  const h = hashesFor(e);
  const fh = await open(file, 'r');
  try {
    for await (const b of fh.createReadStream({ autoClose: false })) update(h, b as Buffer);
  } finally {
    await fh.close();
  }
  try {
    verify(e, h);
    return true;
  } catch {
    return false; // not the file the snapshot has: written again
  }
}

export async function putObject(
  store: ObjectStore,
  e: TarballEntry,
  data: StreamBytes,
  resume: boolean,
): Promise<Outcome> {
  try {
    assertValidKey(e.path);
  } catch {
    throw new DestinationError(
      `${JSON.stringify(e.path)} cannot be an object key on ${store.location} (printable ASCII without spaces only)`,
      { object: e.path },
    );
  }
  if (resume) {
    const st = await store.stat(e.path);
    if (st && st.size === e.size) {
      for await (const b of data) void b; // the blobs were asked for; let them go
      return { path: e.path, ok: true, bytes: e.size, how: 'skipped' };
    }
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
