import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { IntegrityError } from '../../src/errors.js';
import { loadMarks, sealMark } from '../../src/maintenance/marks.js';
import { loadListedSnapshot } from '../../src/maintenance/references.js';
import { listSnapshots, newManifest, sealSnapshot } from '../../src/repo/snapshot.js';
import { FsStore } from '../../src/store/fs.js';
import type { ByteRange, ObjectInfo, ObjectStore, PutBody, PutOptions } from '../../src/store/types.js';
import { makeTestRepo, type TestRepo } from '../helpers/repo.js';

/**
 * A real filesystem target on which another process deletes some objects just after they are listed:
 * what a reader meets when a prune or forget runs next to it.
 */
class DeletedAfterListing implements ObjectStore {
  readonly vanish = new Set<string>();
  constructor(private readonly inner: ObjectStore) {}
  get name() {
    return this.inner.name;
  }
  get location() {
    return this.inner.location;
  }
  put(key: string, body: PutBody, opts?: PutOptions) {
    return this.inner.put(key, body, opts);
  }
  get(key: string, range?: ByteRange): Promise<Readable> {
    return this.inner.get(key, range);
  }
  getBuffer(key: string, range?: ByteRange) {
    return this.inner.getBuffer(key, range);
  }
  stat(key: string) {
    return this.inner.stat(key);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  close() {
    return this.inner.close();
  }
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const all: ObjectInfo[] = [];
    for await (const o of this.inner.list(prefix)) all.push(o);
    for (const o of all) if (this.vanish.delete(o.key)) await this.inner.delete(o.key);
    yield* all;
  }
}

describe('objects listed, then gone when read', () => {
  let t: TestRepo;
  let store: DeletedAfterListing;

  before(async () => {
    t = await makeTestRepo();
    store = new DeletedAfterListing(new FsStore({ name: 'local', root: path.join(t.dir, 'target') }));
  });
  after(() => t.close());

  test('a mark deleted between listing and reading is left out; the others are read', async () => {
    const acted = await sealMark(t.repo, { kind: 'marked', packs: ['a'.repeat(32)], repack: [] });
    const kept = await sealMark(t.repo, { kind: 'marked', packs: ['b'.repeat(32)], repack: [] });
    for (const m of [acted, kept]) await store.put(m.key, m.bytes);
    store.vanish.add(acted.key);
    const marks = await loadMarks(t.repo, store);
    assert.deepEqual(
      marks.map((m) => m.key),
      [kept.key],
    );
  });

  test('a snapshot gone since listed is skipped when forget recorded it, and is an integrity error when not', async () => {
    const forgotten = await sealSnapshot(t.repo, newManifest(t.repo, []));
    const lost = await sealSnapshot(t.repo, newManifest(t.repo, [], { time: '2020-01-01T00:00:00.000Z' }));
    for (const s of [forgotten, lost]) await store.put(s.key, s.bytes);
    const rec = await sealMark(t.repo, {
      kind: 'forgotten',
      packs: [],
      repack: [],
      snapshots: [forgotten.key],
    });
    await store.put(rec.key, rec.bytes);
    store.vanish.add(forgotten.key);
    store.vanish.add(lost.key);
    const infos = await listSnapshots(store);
    const byKey = (k: string) => infos.find((i) => i.key === k)!;
    assert.equal(await loadListedSnapshot(t.repo, store, byKey(forgotten.key)), undefined);
    await assert.rejects(
      loadListedSnapshot(t.repo, store, byKey(lost.key)),
      (err: Error) =>
        err instanceof IntegrityError &&
        /listed on local but is gone, and no forget recorded/.test(err.message),
    );
  });
});
