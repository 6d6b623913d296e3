import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TargetError } from '../../src/errors.js';
import { FsStore } from '../../src/store/fs.js';
import { tmpDir, tmpDirSync } from '../harness/index.js';
import { storeConformance } from './conformance.js';

let n = 0;
const root = tmpDirSync('regbackup-fsstore-');

storeConformance('fs', {
  async open() {
    return new FsStore({ name: 'local', root: `${root}/store-${++n}` });
  },
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

  it('many puts creating the same new directories at once all succeed', async (t) => {
    const dir = await tmpDir(t);
    const store = new FsStore({ name: 'local', root: join(dir, 'new', 'root') });
    const keys = Array.from({ length: 40 }, (_, i) => `data/${(i % 4).toString(16)}0/k${i}`);
    await Promise.all(keys.map((k) => store.put(k, Buffer.from(k))));
    for (const k of keys) assert.equal((await store.getBuffer(k)).toString(), k);
  });
});
