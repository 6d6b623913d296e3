import assert from 'node:assert/strict';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TargetError } from '../../src/errors.js';
import { FsStore } from '../../src/store/fs.js';
import { openStore } from '../../src/store/index.js';
import type { ObjectStore } from '../../src/store/types.js';
import { tmpDir, tmpDirSync } from '../harness/index.js';
import { storeConformance } from './conformance.js';

let n = 0;
const root = tmpDirSync('regbackup-fsstore-');

/** The store's root of each store the suite opened, to look for temporary files. */
const roots = new WeakMap<ObjectStore, string>();

/** Temporary files left under a store's root (an aborted put must remove its own). */
async function tempFiles(store: ObjectStore): Promise<string[]> {
  const dir = roots.get(store)!;
  const entries = await readdir(dir, { recursive: true }).catch(() => []);
  return entries.filter((e) => e.split('/').at(-1)!.startsWith('.tmp '));
}

storeConformance('fs', {
  async open() {
    const dir = `${root}/store-${++n}`;
    const store = new FsStore({ name: 'local', root: dir });
    roots.set(store, dir);
    return store;
  },
  leftovers: tempFiles,
});

// The stack a command works with: openStore's retry and metrics decorators around the provider.
storeConformance('fs, decorated by openStore', {
  async open() {
    const dir = `${root}/store-${++n}`;
    const store = openStore({ name: 'local', type: 'fs', path: dir, storageClass: 'STANDARD' });
    roots.set(store, dir);
    return store;
  },
  leftovers: tempFiles,
});

describe('FsStore: the target directory', () => {
  async function putError(root: string, key = 'config'): Promise<TargetError> {
    const store = new FsStore({ name: 'local', root });
    return store.put(key, Buffer.from('x')).then(
      () => assert.fail(`put ${key} under ${root} succeeded`),
      (err: unknown) => {
        assert.ok(err instanceof TargetError, `expected a TargetError, got ${String(err)}`);
        return err;
      },
    );
  }

  // Node's recursive mkdir loops for ever there (the parent exists, the child is refused with ENOENT); the
  // timeout only keeps a regression from hanging the suite.
  it(
    'a directory the file system refuses to create (/proc): one clear error',
    { timeout: 60_000 },
    async () => {
      const err = await putError('/proc/self/nonexistent/repo');
      assert.equal(
        err.message,
        'target local: cannot create the directory /proc/self/nonexistent (ENOENT): the file system refuses ' +
          'to create it although its parent exists (a virtual file system such as /proc or /sys?)',
      );
      assert.equal(err.details.path, '/proc/self/nonexistent');
      assert.equal(err.details.transient, false);
    },
  );

  it('a target path that is a regular file: says so, naming it', async (t) => {
    const dir = await tmpDir(t);
    const file = join(dir, 'not-a-dir');
    await writeFile(file, 'x');
    for (const root of [file, join(file, 'below')]) {
      const err = await putError(root);
      assert.equal(
        err.message,
        `target local: ${file} is not a directory (ENOTDIR): the target path must be a directory, or not exist yet`,
      );
      assert.doesNotMatch(err.message, /same name/);
    }
  });

  it('a LocalFile offered for a link is hard-linked once; a second offer is copied', async (t) => {
    const dir = await tmpDir(t);
    const store = new FsStore({ name: 'local', root: join(dir, 'root') });
    const file = join(dir, 'pack');
    await writeFile(file, 'packed');
    await store.put('data/aa/linked', { file, size: 6, link: true });
    await store.put('data/aa/copied', { file, size: 6, link: true });
    await store.put('data/aa/plain', { file, size: 6 });
    const linked = await stat(join(dir, 'root', 'data', 'aa', 'linked'));
    assert.equal(linked.ino, (await stat(file)).ino, 'the first offer is the same file (a hard link)');
    for (const k of ['copied', 'plain']) {
      const st = await stat(join(dir, 'root', 'data', 'aa', k));
      assert.notEqual(st.ino, linked.ino, `${k} is a copy of its own`);
      assert.equal(st.nlink, 1);
    }
    await assert.rejects(
      store.put('data/aa/wrong', { file, size: 7, link: true }),
      /is not 7 bytes/,
      'a size that does not match the file is refused',
    );
    assert.equal(await store.stat('data/aa/wrong'), undefined);
  });

  it('many puts creating the same new directories at once all succeed', async (t) => {
    const dir = await tmpDir(t);
    const store = new FsStore({ name: 'local', root: join(dir, 'new', 'root') });
    const keys = Array.from({ length: 40 }, (_, i) => `data/${(i % 4).toString(16)}0/k${i}`);
    await Promise.all(keys.map((k) => store.put(k, Buffer.from(k))));
    for (const k of keys) assert.equal((await store.getBuffer(k)).toString(), k);
  });
});
