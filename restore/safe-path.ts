import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readlink, realpath, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { DestinationError, systemCodeOf } from '../src/errors.js';
import { nameProblem } from '../src/repo/names.js';

/**
 * Writing files named by a snapshot into a destination directory without ever leaving it: every name is
 * validated before anything is written (the name rule of src/repo/names.ts: relative, "/"-separated, valid
 * UTF-8, no empty, "." or ".." segment, no NUL or control character), each directory on the way is checked
 * with lstat (a symbolic link is refused, never followed), files are created with O_EXCL|O_NOFOLLOW under a
 * temporary name in their final directory, and the opened file is checked (via /proc) to really lie under
 * the destination before a byte is written. The file appears under its final name only by rename(2), after
 * it was written, verified and synced.
 */

/**
 * Why `p` is not a safe relative path, or undefined when it is: exactly the name rule of the snapshots
 * (src/repo/names.ts), so that every name a backup stores is one a restore writes, and no other.
 */
export function pathProblem(p: unknown): string | undefined {
  return nameProblem(p);
}

/** The temporary name of a file being written (deterministic, so that a resumed restore finds and replaces it). */
export function tempName(base: string): string {
  const t = `.${base}.rbtmp`;
  return Buffer.byteLength(t) <= 250 ? t : `.rbtmp-${createHash('sha1').update(base).digest('hex')}`;
}

export class SafeTree {
  private readonly dirs = new Set<string>();
  /** Directories that received a file since the last syncTouched(). */
  private touched = new Set<string>();
  private real?: string;
  private readonly proc: boolean = process.platform === 'linux';

  constructor(readonly root: string) {}

  /** The destination's real path (the root itself may be a symbolic link chosen by the operator). */
  async rootReal(): Promise<string> {
    if (!this.real) {
      await mkdir(this.root, { recursive: true });
      this.real = await realpath(this.root);
    }
    return this.real;
  }

  /** Creates (or checks) the directories of `rel` (a validated relative path of a FILE); returns its directory. */
  async dirOf(rel: string): Promise<string> {
    const root = await this.rootReal();
    const segs = rel.split('/');
    segs.pop();
    let cur = '';
    for (const seg of segs) {
      cur = cur ? `${cur}/${seg}` : seg;
      if (this.dirs.has(cur)) continue;
      const abs = path.join(root, cur);
      let st = await lstat(abs).catch((err: unknown) => {
        if (systemCodeOf(err) === 'ENOENT') return undefined;
        throw err;
      });
      if (!st) {
        await mkdir(abs, { mode: 0o755 }).catch((err: unknown) => {
          if (systemCodeOf(err) !== 'EEXIST') throw err;
        });
        st = await lstat(abs);
      }
      if (st.isSymbolicLink()) {
        throw new DestinationError(
          `${JSON.stringify(rel)}: ${cur} in the destination is a symbolic link; refusing to follow it out of ${root}`,
          { object: rel },
        );
      }
      if (!st.isDirectory())
        throw new DestinationError(`${JSON.stringify(rel)}: ${cur} in the destination is not a directory`, {
          object: rel,
        });
      this.dirs.add(cur);
    }
    return path.join(root, ...segs);
  }

  /** Opens the temporary file of `rel` for writing (replacing a stale one left by an interrupted run). */
  async openTemp(rel: string): Promise<{ fh: FileHandle; tmp: string; final: string }> {
    const dir = await this.dirOf(rel);
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    const tmp = path.join(dir, tempName(base));
    const final = path.join(dir, base);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    let fh: FileHandle;
    try {
      fh = await open(tmp, flags, 0o644);
    } catch (err) {
      if (systemCodeOf(err) !== 'EEXIST') throw err;
      await unlink(tmp); // a stale temporary file (or something planted there): removed, never followed
      fh = await open(tmp, flags, 0o644);
    }
    if (this.proc) {
      // The file really opened: under the destination, whatever happened to the directories meanwhile.
      const where = await readlink(`/proc/self/fd/${fh.fd}`).catch(() => undefined);
      const root = await this.rootReal();
      if (where !== undefined && !where.startsWith(root + path.sep)) {
        await fh.close();
        throw new DestinationError(
          `${JSON.stringify(rel)}: the file opened outside the destination (${where}); a directory was replaced while restoring`,
          { object: rel },
        );
      }
    }
    return { fh, tmp, final };
  }

  /** Moves a written temporary file to its final name. */
  async commit(rel: string, tmp: string, final: string): Promise<void> {
    try {
      await rename(tmp, final);
      this.touched.add(path.dirname(final));
    } catch (err) {
      await this.commitFailed(tmp);
      const code = systemCodeOf(err);
      if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new DestinationError(
          `${JSON.stringify(rel)}: a directory of that name is in the way in the destination`,
          { object: rel },
        );
      }
      throw err;
    }
  }

  /** Notes that a file of `rel` was renamed into place by someone else (a worker thread). */
  noteRenamed(rel: string): void {
    const segs = rel.split('/');
    segs.pop();
    this.touched.add(path.join(this.real ?? this.root, ...segs));
  }

  /** Makes the renames so far durable: fsync of every directory that received a file. */
  async syncTouched(): Promise<void> {
    const dirs = [...this.touched];
    this.touched = new Set();
    for (let i = 0; i < dirs.length; i += 32) {
      await Promise.all(
        dirs.slice(i, i + 32).map(async (d) => {
          const fh = await open(d, constants.O_RDONLY | constants.O_DIRECTORY);
          try {
            await fh.sync();
          } finally {
            await fh.close();
          }
        }),
      );
    }
  }

  /** Removes the temporary file of a write that failed (a file that failed verification never appears). */
  async commitFailed(tmp: string): Promise<void> {
    await unlink(tmp).catch((err: unknown) => {
      if (systemCodeOf(err) !== 'ENOENT') throw err;
    });
  }

  /** Removes a stale temporary file of `rel`, if there is one (resumed restores). */
  async removeStaleTemp(rel: string): Promise<void> {
    const dir = await this.dirOf(rel);
    const base = rel.slice(rel.lastIndexOf('/') + 1);
    await unlink(path.join(dir, tempName(base))).catch((err: unknown) => {
      if (systemCodeOf(err) !== 'ENOENT') throw err;
    });
  }
}
