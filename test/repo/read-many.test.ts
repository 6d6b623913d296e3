import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { IntegrityError } from '../../src/errors.js';
import { readListingBytes } from '../../src/repo/format/listing.js';
import { Repository } from '../../src/repo/repository.js';
import { BlobReader } from '../../src/repo/reader.js';
import { chunkIds, readAll, writeBuffer, type StreamRef } from '../../src/repo/stream-ref.js';
import { MemoryStore } from '../../src/store/memory.js';
import { makeTestRepo, type TestRepo } from '../helpers/repo.js';

async function idsOf(reader: BlobReader, ref: StreamRef): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const id of chunkIds(reader, ref)) out.push(Buffer.from(id));
  return out;
}

async function concat(src: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of src) parts.push(b);
  return Buffer.concat(parts);
}

/** Lines like a listing's: JSON with random hex, so that chunks differ and compress a little. */
function listingBytes(n: number): Buffer {
  const lines: string[] = [];
  for (let i = 0; i < n; i++)
    lines.push(
      JSON.stringify({ id: `doc-${String(i).padStart(6, '0')}`, h: randomBytes(48).toString('hex') }),
    );
  return Buffer.from(lines.join('\n') + '\n');
}

describe('BlobReader.readMany: blobs next to each other read with one request', () => {
  const a = new MemoryStore('a');
  const b = new MemoryStore('b');
  let t: TestRepo;
  let tree: StreamRef;
  let json: StreamRef;
  const treeBytes = listingBytes(12_000);
  const jsonBytes = Buffer.from(JSON.stringify({ versions: listingBytes(6000).toString() }));

  before(async () => {
    t = await makeTestRepo({ stores: [a, b], packSize: 8 * 1024 * 1024 });
    tree = await writeBuffer(t.writer, treeBytes, 'tree');
    json = await writeBuffer(t.writer, jsonBytes, 'json');
    await t.writer.flush();
  });
  after(() => t.close());

  async function reader(stores: MemoryStore[]) {
    const { repo } = await Repository.open(
      stores,
      { restore: t.keys.restore },
      { cacheRoot: `${t.dir}/c-${stores.length}` },
    );
    return new BlobReader(repo, await repo.loadIndex(), stores);
  }

  test('gives each blob as read alone, in order, for tree and data packs (ranged reads)', async () => {
    const r = await reader([a, b]);
    for (const ref of [tree, json]) {
      const ids = await idsOf(r, ref);
      assert.ok(ids.length > 4, `several chunks (${ids.length})`);
      // In order, out of order, and with a blob twice: the same as one read each.
      const asked = [...ids, ...ids.slice().reverse(), ids[1]!];
      const many = await r.readMany(asked);
      const one = await Promise.all(asked.map((id) => r.read(id)));
      assert.deepEqual(many, one);
    }
    assert.deepEqual(await concat(readListingBytes(r, tree)), treeBytes);
    assert.deepEqual(await concat(readListingBytes(r, json)), jsonBytes);
    assert.equal(r.fallbacks.length, 0);
  });

  test('a damaged pack: the blobs come from the other target (reported); with none, the bad blob is named', async () => {
    let key: string | undefined;
    for await (const o of a.list('data/')) key ??= o.key;
    const original = await a.getBuffer(key!);
    try {
      const flipped = Buffer.from(original);
      flipped[Math.floor(flipped.length / 2)]! ^= 0x40;
      await a.put(key!, flipped);
      const r = await reader([a, b]);
      assert.deepEqual(await concat(readListingBytes(r, json)), jsonBytes);
      assert.ok(r.fallbacks.length >= 1, 'the fallback is reported');
      assert.ok(r.fallbacks.every((f) => f.from === 'a' && f.to === 'b'));
      const only = await reader([a]);
      await assert.rejects(concat(readListingBytes(only, json)), (err: Error) => {
        return (
          err instanceof IntegrityError &&
          /blob [0-9a-f]{64} \(pack [0-9a-f]+\) cannot be read intact/.test(err.message)
        );
      });
    } finally {
      await a.put(key!, original);
    }
  });

  test('a stream whose chunks add up to another size than its reference says is refused', async () => {
    const r = await reader([a, b]);
    await assert.rejects(
      concat(readListingBytes(r, { ...tree, size: tree.size + 1 })),
      (err: Error) => err instanceof IntegrityError && /reference says/.test(err.message),
    );
    assert.deepEqual(await readAll(r, tree), treeBytes);
  });
});
