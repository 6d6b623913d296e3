import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { BlobIndex, RECORD, sortRecords, type PackInfo } from '../../src/repo/blob-index.js';
import { BlobType } from '../../src/repo/ids.js';
import type { PackEntry } from '../../src/repo/pack.js';
import { tmpDir } from '../harness/index.js';

function pack(n: number): { info: PackInfo; entries: PackEntry[] } {
  const info: PackInfo = {
    id: randomBytes(16).toString('hex'),
    type: BlobType.data,
    size: n * 100 + 1000,
    sha256: randomBytes(32).toString('hex'),
  };
  const entries = Array.from({ length: n }, (_, i) => ({
    id: randomBytes(32),
    type: BlobType.data,
    compression: i % 2,
    offset: i * 100,
    length: 100,
    rawLength: 150 + i,
  }));
  return { info, entries };
}

test('lookups through the memtable, spilled runs and a compacted run, within a memory budget', async (t) => {
  const dir = await tmpDir(t);
  // A budget this small forces many spills and at least one compaction.
  const idx = BlobIndex.open(dir, { memoryBudget: 64 * 1024 });
  const all: { info: PackInfo; entries: PackEntry[] }[] = [];
  for (let i = 0; i < 40; i++) {
    const p = pack(500);
    all.push(p);
    idx.addPack(p.info, p.entries);
  }
  idx.persist();
  assert.ok(readdirSync(dir).filter((f) => f.startsWith('run-')).length <= 9);
  const check = (ix: BlobIndex) => {
    for (const p of all) {
      for (const e of [p.entries[0]!, p.entries[250]!, p.entries[499]!]) {
        const loc = ix.lookup(e.id);
        assert.ok(loc, 'blob found');
        assert.equal(loc.pack.id, p.info.id);
        assert.equal(loc.offset, e.offset);
        assert.equal(loc.rawLength, e.rawLength);
        assert.equal(loc.compression, e.compression);
      }
    }
    for (let i = 0; i < 1000; i++) assert.equal(ix.lookup(randomBytes(32)), undefined);
  };
  check(idx);
  idx.markIndexObject('index/abc');
  idx.persist();
  idx.close();
  const again = BlobIndex.open(dir, { memoryBudget: 64 * 1024 });
  check(again);
  assert.deepEqual(again.indexObjects, ['index/abc']);
  assert.equal(again.blobCount, 40 * 500);
});

test('a damaged cache is discarded, not trusted', async (t) => {
  const dir = await tmpDir(t);
  const idx = BlobIndex.open(dir);
  const p = pack(10);
  idx.addPack(p.info, p.entries);
  idx.persist();
  idx.close();
  const { writeFileSync } = await import('node:fs');
  writeFileSync(`${dir}/state.json`, '{"version": 1, "runs": ["../../etc/passwd"], "indexObjects": []}');
  const again = BlobIndex.open(dir);
  assert.equal(again.blobCount, 0);
  assert.equal(again.lookup(p.entries[0]!.id), undefined);
});

test('records() and sortRecords give every record once, in blob-ID order', async (t) => {
  const dir = await tmpDir(t);
  const idx = BlobIndex.open(dir, { memoryBudget: 64 * 1024 });
  const ids: Buffer[] = [];
  for (let i = 0; i < 7; i++) {
    const p = pack(300);
    idx.addPack(p.info, p.entries);
    ids.push(...p.entries.map((e) => e.id));
  }
  // Some in spilled runs, some still in the memtable.
  const seen = [...idx.records()].map((r) => Buffer.from(r.id));
  const sorted = [...ids].sort(Buffer.compare);
  assert.deepEqual(seen, sorted);
  const buf = Buffer.concat(ids.map((id, i) => Buffer.concat([id, Buffer.alloc(RECORD - 32, i % 251)])));
  sortRecords(buf);
  for (let i = 0; i < ids.length; i++)
    assert.ok(buf.subarray(i * RECORD, i * RECORD + 32).equals(sorted[i]!));
  idx.close();
});
