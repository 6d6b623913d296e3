import { randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import {
  link,
  lstat,
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  stat,
  unlink,
  type FileHandle,
} from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { TargetError, messageOf, systemCodeOf } from '../errors.js';
import { storeError, type StoreOperation } from './errors.js';
import {
  assertValidRange,
  deferErrors,
  destroyOnAbort,
  emptyStream,
  mapStreamErrors,
  readAll,
} from './streams.js';
import {
  ObjectNotFoundError,
  StoreAbortedError,
  StoreClosedError,
  isLocalFile,
  throwIfAborted,
  type SignalOptions,
  type LocalFile,
  type PutBody,
  assertValidKey,
  assertValidPrefix,
  type ByteRange,
  type ObjectInfo,
  type ObjectStore,
  type PutOptions,
} from './types.js';

export interface FsStoreOptions {
  /** The target's name, for messages. */
  name: string;
  /** The directory that holds the objects (created on the first put). */
  root: string;
}

/** A name that is a valid key segment (the same rule as assertValidKey, for one segment). */
const KEY_SEGMENT = /^[\x21-\x2e\x30-\x5b\x5d-\x7e]+$/;

/**
 * Temporary files contain a space, which no key may contain: a temp file can never shadow an object, and
 * list() can recognize (and skip) those left behind by a crash.
 */
const TEMP_PREFIX = '.tmp ';

/**
 * Objects as files under a root directory; a key's "/" separates directories. Writes are atomic and
 * durable: a temp file in the same directory, fsync, rename, fsync of the directory. Never touches anything
 * outside the root: keys cannot climb out (validated), and a symbolic link inside the root that points
 * elsewhere is refused (its real path is checked) rather than followed. An aborted put removes its temp
 * file; close() holds nothing to release (each operation closes its own file handles).
 */
export class FsStore implements ObjectStore {
  readonly name: string;
  readonly location: string;
  private readonly root: string;
  private realRoot: string | undefined;
  private closed = false;

  constructor(opts: FsStoreOptions) {
    this.name = opts.name;
    this.root = resolve(opts.root);
    this.location = `file://${this.root}/`;
  }

  async put(key: string, body: PutBody, opts: PutOptions = {}): Promise<void> {
    const { signal } = opts;
    this.assertOpen();
    throwIfAborted(signal, this.name, 'put', key);
    if (isLocalFile(body)) {
      // A local file: hard-linked into place when allowed and on the same filesystem (no copy), else copied.
      if (body.link && (await this.linkIn(key, body, signal))) return;
      return this.put(key, createReadStream(body.file), { ...opts, size: body.size });
    }
    const path = this.pathOf(key);
    const dir = dirname(path);
    let tmp: string | undefined;
    let fh: FileHandle | undefined;
    if (!Buffer.isBuffer(body)) {
      deferErrors(body);
      destroyOnAbort(body, signal, () => new StoreAbortedError(this.name, 'put', key, signal?.reason));
    }
    try {
      const firstCreated = await this.makeDirectories(dir, key);
      await this.assertInside(dir);
      tmp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      fh = await open(
        tmp,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o644,
      );
      let written = 0;
      if (Buffer.isBuffer(body)) {
        await fh.writeFile(body, signal ? { signal } : {});
        written = body.length;
      } else {
        for await (const chunk of body) {
          const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
          await fh.write(buf, 0, buf.length);
          written += buf.length;
        }
      }
      if (opts.size !== undefined && !Buffer.isBuffer(body) && written !== opts.size) {
        throw new Error(`the body had ${written} bytes, ${opts.size} were announced`);
      }
      await fh.sync();
      await fh.close();
      fh = undefined;
      // The last moment to stop: after the rename the object is there, whole.
      throwIfAborted(signal, this.name, 'put', key);
      await rename(tmp, path).catch((err: unknown) => {
        throw systemCodeOf(err) === 'EISDIR' ? this.inTheWay(key) : err;
      });
      tmp = undefined;
      await fsyncDir(dir);
      // New directories must reach the disk too: their entries live in their parents.
      if (firstCreated !== undefined) {
        for (let d = dir; d !== dirname(firstCreated) && d.length >= this.root.length; d = dirname(d)) {
          await fsyncDir(dirname(d));
        }
      }
    } catch (err) {
      // Clean-up failures are secondary: the error that matters is `err`.
      await fh?.close().catch(() => undefined);
      if (tmp) await unlink(tmp).catch(() => undefined);
      throw this.fail(err, 'put', key, signal);
    }
  }

  /**
   * Puts a local file by hard link: the file's data is synced, a temporary link made next to the object,
   * renamed onto the key, and the directory synced — the same atomicity and durability as put. False when a
   * link cannot be made (another filesystem): the caller copies instead.
   */
  private async linkIn(key: string, body: LocalFile, signal: AbortSignal | undefined): Promise<boolean> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    let tmp: string | undefined;
    try {
      const src = await open(body.file, constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const st = await src.stat();
        if (st.size !== body.size) throw new Error(`${body.file} is not ${body.size} bytes`);
        // Linked once only: a second target on the same filesystem gets its own copy, so that damage to
        // one target's file never reaches another's.
        if (st.nlink > 1) return false;
        await src.sync();
      } finally {
        await src.close();
      }
      const firstCreated = await this.makeDirectories(dir, key);
      await this.assertInside(dir);
      tmp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
      try {
        await link(body.file, tmp);
      } catch (err) {
        const code = systemCodeOf(err);
        if (code === 'EXDEV' || code === 'EPERM' || code === 'EMLINK' || code === 'ENOTSUP') {
          tmp = undefined;
          return false;
        }
        throw err;
      }
      throwIfAborted(signal, this.name, 'put', key);
      await rename(tmp, path);
      tmp = undefined;
      await fsyncDir(dir);
      if (firstCreated !== undefined) {
        for (let d = dir; d !== dirname(firstCreated) && d.length >= this.root.length; d = dirname(d)) {
          await fsyncDir(dirname(d));
        }
      }
      return true;
    } catch (err) {
      if (tmp) await unlink(tmp).catch(() => undefined);
      throw this.fail(err, 'put', key, signal);
    }
  }

  async get(key: string, range?: ByteRange, opts: SignalOptions = {}): Promise<Readable> {
    const { signal } = opts;
    this.assertOpen();
    const path = this.pathOf(key);
    assertValidRange(range);
    throwIfAborted(signal, this.name, 'get', key);
    let fh: FileHandle | undefined;
    try {
      fh = await this.openObject(path, key);
      throwIfAborted(signal, this.name, 'get', key);
      const { size } = await fh.stat();
      const start = range?.offset ?? 0;
      const end = range ? Math.min(size, range.offset + range.length) : size; // exclusive
      if (end <= start) {
        await fh.close();
        return emptyStream();
      }
      const stream = fh.createReadStream({ start, end: end - 1 });
      fh = undefined; // the stream closes it
      const out = mapStreamErrors(stream, (err) => this.fail(err, 'get', key, signal));
      destroyOnAbort(out, signal, () => new StoreAbortedError(this.name, 'get', key, signal?.reason));
      return out;
    } catch (err) {
      await fh?.close().catch(() => undefined);
      throw this.fail(err, 'get', key, signal);
    }
  }

  async getBuffer(key: string, range?: ByteRange, opts?: SignalOptions): Promise<Buffer> {
    return readAll(await this.get(key, range, opts));
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    this.assertOpen();
    const path = this.pathOf(key);
    try {
      const st = await lstat(path);
      if (!st.isFile()) return undefined;
      await this.assertInside(dirname(path));
      return { key, size: st.size, mtime: st.mtime };
    } catch (err) {
      if (isAbsent(err)) return undefined;
      throw this.fail(err, 'stat', key);
    }
  }

  async *list(prefix: string, opts: SignalOptions = {}): AsyncIterable<ObjectInfo> {
    const { signal } = opts;
    this.assertOpen();
    assertValidPrefix(prefix);
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : '';
    const namePrefix = prefix.slice(slash + 1);
    const dir = dirKey ? join(this.root, ...dirKey.split('/')) : this.root;
    try {
      yield* this.walk(dir, dirKey, namePrefix, () => throwIfAborted(signal, this.name, 'list', prefix));
    } catch (err) {
      throw this.fail(err, 'list', prefix, signal);
    }
  }

  async delete(key: string): Promise<void> {
    this.assertOpen();
    const path = this.pathOf(key);
    try {
      await this.assertInside(dirname(path));
      await unlink(path);
    } catch (err) {
      // Absent, or a directory (not an object): nothing to delete.
      if (isAbsent(err) || systemCodeOf(err) === 'EISDIR') return;
      throw this.fail(err, 'delete', key);
    }
  }

  /** Nothing to release; afterwards every operation rejects with StoreClosedError. */
  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreClosedError(this.name);
  }

  /**
   * Keys in lexicographic order: a directory sorts as its name + "/", which is where its keys belong.
   * `checkAbort` runs before each directory is read and each object is yielded.
   */
  private async *walk(
    dir: string,
    dirKey: string,
    namePrefix: string,
    checkAbort: () => void,
  ): AsyncGenerator<ObjectInfo> {
    let entries;
    checkAbort();
    try {
      await this.assertInside(dir);
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isAbsent(err)) return;
      throw err;
    }
    const items = entries
      .filter(
        (e) => e.name.startsWith(namePrefix) && KEY_SEGMENT.test(e.name) && e.name !== '.' && e.name !== '..',
      )
      .filter((e) => e.isFile() || e.isDirectory())
      .map((e) => ({
        name: e.name,
        isDir: e.isDirectory(),
        sortKey: e.isDirectory() ? `${e.name}/` : e.name,
      }))
      .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
    for (const item of items) {
      const key = dirKey ? `${dirKey}/${item.name}` : item.name;
      const path = join(dir, item.name);
      if (item.isDir) {
        yield* this.walk(path, key, '', checkAbort);
        continue;
      }
      try {
        const st = await lstat(path);
        checkAbort();
        if (st.isFile()) yield { key, size: st.size, mtime: st.mtime };
      } catch (err) {
        if (!isAbsent(err)) throw err; // deleted while listing: not there any more
      }
    }
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    const path = join(this.root, ...key.split('/'));
    const rel = relative(this.root, path);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel))
      throw new Error(`invalid object key ${JSON.stringify(key)}`);
    return path;
  }

  /** Opens an object's file for reading without following a symbolic link; absent → ObjectNotFoundError. */
  private async openObject(path: string, key: string): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      await this.assertInside(dirname(path));
      fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if (isAbsent(err) || systemCodeOf(err) === 'ELOOP') throw new ObjectNotFoundError(this.name, key);
      throw err;
    }
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw new ObjectNotFoundError(this.name, key);
    }
    return fh;
  }

  /** Refuses a directory whose real path (symbolic links resolved) is not inside the root. */
  private async assertInside(dir: string): Promise<void> {
    this.realRoot ??= await realpath(this.root);
    const real = await realpath(dir);
    if (real !== this.realRoot && !real.startsWith(this.realRoot + sep)) {
      throw Object.assign(
        new Error(`${dir} leads outside the target directory (a symbolic link to ${real})`),
        {
          code: 'EPERM',
        },
      );
    }
  }

  /**
   * `mkdir -p` of an object's directory; the first directory it created (undefined: none). Not Node's
   * recursive mkdir, which loops forever when a parent exists but refuses children (ENOENT under /proc):
   * each missing level is created in turn, from the deepest existing one, and any failure is a TargetError
   * naming the directory and the cause.
   */
  private async makeDirectories(dir: string, key: string): Promise<string | undefined> {
    const missing: string[] = [];
    for (let d = dir; ; d = dirname(d)) {
      let st;
      try {
        st = await stat(d);
      } catch (err) {
        // Absent, or below a file (ENOTDIR): look further up, where the file itself is found.
        const absent = systemCodeOf(err) === 'ENOENT' || systemCodeOf(err) === 'ENOTDIR';
        if (!absent || dirname(d) === d) throw this.cannotCreate(d, err, key);
        missing.push(d);
        continue;
      }
      if (!st.isDirectory())
        throw this.cannotCreate(d, Object.assign(new Error('not a directory'), { code: 'ENOTDIR' }), key);
      break;
    }
    for (const d of missing.reverse()) {
      try {
        await mkdir(d);
      } catch (err) {
        // Made by a concurrent put in the meantime: fine, when it is a directory.
        if (systemCodeOf(err) === 'EEXIST' && (await stat(d).catch(() => undefined))?.isDirectory()) continue;
        throw this.cannotCreate(d, err, key);
      }
    }
    return missing[0];
  }

  /** Why the directory `dir` cannot be created (or used) for `key`, naming the path and the real cause. */
  private cannotCreate(dir: string, err: unknown, key: string): TargetError {
    const code = systemCodeOf(err) ?? 'unknown';
    const inTheRoot = dir !== this.root && dir.startsWith(this.root + sep);
    if ((code === 'ENOTDIR' || code === 'EEXIST') && inTheRoot) return this.inTheWay(key);
    const details = {
      target: this.name,
      operation: 'put',
      key,
      path: dir,
      kind: 'local',
      code,
      transient: false,
    };
    if (code === 'ENOTDIR' || code === 'EEXIST') {
      return new TargetError(
        `target ${this.name}: ${dir} is not a directory (${code}): the target path must be a directory, or not exist yet`,
        details,
        { cause: err },
      );
    }
    const why: Record<string, string> = {
      EACCES: 'permission denied',
      EPERM: 'permission denied',
      EROFS: 'the file system is read-only',
      ENOSPC: 'the disk is full',
      EDQUOT: 'the disk quota is used up',
      ENAMETOOLONG: 'the name is too long',
      ELOOP: 'too many symbolic links',
      ENOENT:
        'the file system refuses to create it although its parent exists (a virtual file system such as /proc or /sys?)',
    };
    return new TargetError(
      `target ${this.name}: cannot create the directory ${dir} (${code}): ${why[code] ?? messageOf(err)}`,
      details,
      { cause: err },
    );
  }

  /** A file system cannot hold both `a` and `a/b`: one of them is a file where a directory is needed. */
  private inTheWay(key: string): TargetError {
    return new TargetError(
      `target ${this.name}: cannot put ${key}: a directory and an object would have the same name ` +
        '(a filesystem target cannot hold both a key and keys below it, such as "a" and "a/b")',
      { target: this.name, operation: 'put', key, kind: 'rejected', transient: false },
    );
  }

  private fail(err: unknown, operation: StoreOperation, key: string, signal?: AbortSignal): Error {
    const ctx = { target: this.name, operation, key, endpoint: this.root, container: 'directory' };
    return storeError(err, ctx, signal);
  }
}

function isAbsent(err: unknown): boolean {
  const code = systemCodeOf(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
