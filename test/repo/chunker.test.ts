import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Chunker, gearTable, type ChunkerParams } from '../../src/repo/chunker.js';
import { blobId, blobIdOf, BlobType } from '../../src/repo/ids.js';

const CDC: ChunkerParams = { kind: 'cdc', min: 8 * 1024, avg: 32 * 1024, max: 128 * 1024 };

function cut(p: ChunkerParams, gear: Int32Array, data: Buffer, step = data.length): number[] {
  const c = new Chunker(p, gear);
  const out: number[] = [];
  for (let off = 0; off < data.length; off += step) out.push(...c.push(data.subarray(off, off + step)));
  const last = c.finish();
  if (last) out.push(last);
  return out;
}

function chunks(lengths: number[], data: Buffer): Buffer[] {
  let off = 0;
  return lengths.map((l) => data.subarray(off, (off += l)));
}

test('CDC boundaries do not depend on how the stream is split, and respect min/max', () => {
  const gear = gearTable(randomBytes(32));
  const data = randomBytes(3_000_000);
  const whole = cut(CDC, gear, data);
  assert.deepEqual(cut(CDC, gear, data, 1000), whole);
  assert.deepEqual(cut(CDC, gear, data, 65_537), whole);
  assert.equal(
    whole.reduce((a, b) => a + b, 0),
    data.length,
  );
  for (const l of whole.slice(0, -1)) assert.ok(l >= 8 * 1024 && l <= 128 * 1024, `chunk of ${l}`);
  const avg = data.length / whole.length;
  assert.ok(avg > 16 * 1024 && avg < 64 * 1024, `average ${avg}`);
});

test('a 100-byte insert into a large stream re-stores only a chunk or two', () => {
  const key = randomBytes(32);
  const gear = gearTable(key);
  const idKey = randomBytes(32);
  const data = randomBytes(8_000_000);
  const edited = Buffer.concat([data.subarray(0, 4_000_000), randomBytes(100), data.subarray(4_000_000)]);
  const before = new Set(
    chunks(cut(CDC, gear, data), data).map((c) => blobId(idKey, BlobType.data, c).toString('hex')),
  );
  const after = chunks(cut(CDC, gear, edited), edited).map((c) =>
    blobId(idKey, BlobType.data, c).toString('hex'),
  );
  const fresh = after.filter((id) => !before.has(id));
  assert.ok(fresh.length >= 1 && fresh.length <= 2, `${fresh.length} new chunks of ${after.length}`);
});

test('boundaries are keyed: another repository secret cuts the same data elsewhere', () => {
  const data = randomBytes(2_000_000);
  assert.notDeepEqual(cut(CDC, gearTable(randomBytes(32)), data), cut(CDC, gearTable(randomBytes(32)), data));
});

test('fixed chunking cuts every size bytes, split-independent', () => {
  const p: ChunkerParams = { kind: 'fixed', size: 4096 };
  const data = randomBytes(10_000);
  assert.deepEqual(cut(p, new Int32Array(256), data), [4096, 4096, 1808]);
  assert.deepEqual(cut(p, new Int32Array(256), data, 333), [4096, 4096, 1808]);
});

test('blob IDs are keyed and typed', () => {
  const d = Buffer.from('left-pad');
  const k = randomBytes(32);
  assert.notDeepEqual(blobId(k, BlobType.data, d), blobId(randomBytes(32), BlobType.data, d));
  assert.notDeepEqual(blobId(k, BlobType.data, d), blobId(k, BlobType.tree, d));
  assert.deepEqual(blobId(k, BlobType.data, d), blobId(k, BlobType.data, Buffer.from('left-pad')));
});

test('a blob ID is keyed BLAKE3 over the type byte and the plaintext (FORMAT §5; BLAKE3 test vectors)', () => {
  // BLAKE3's published vectors (test_vectors.json): key "whats the Elvish word for friend", input bytes
  // i % 251: keyed_hash of [0] and of [0, 1, 2]. A data blob's message starts with the type byte 0.
  const key = Buffer.from('whats the Elvish word for friend');
  const hex = (b: Buffer) => b.toString('hex');
  assert.equal(
    hex(blobId(key, BlobType.data, Buffer.alloc(0))),
    '6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b',
  );
  assert.equal(
    hex(blobId(key, BlobType.data, Buffer.of(1, 2))),
    '39e67b76b5a007d4921969779fe666da67b5213b096084ab674742f0d5ec62b9',
  );
  // In pieces, and after other keys were used (each key has its own hasher, reset between IDs).
  blobId(randomBytes(32), BlobType.tree, randomBytes(100));
  assert.equal(
    hex(blobIdOf(key, BlobType.data, [Buffer.of(1), Buffer.alloc(0), Buffer.of(2)])),
    '39e67b76b5a007d4921969779fe666da67b5213b096084ab674742f0d5ec62b9',
  );
  assert.throws(() => blobId(Buffer.alloc(16), BlobType.data, Buffer.of(1)), /32 bytes/);
});

test('with snap, CDC cuts move to the end of a line: chunks hold whole lines, however the input is split', () => {
  const gear = gearTable(randomBytes(32));
  const p: ChunkerParams = { kind: 'cdc', min: 2048, avg: 8192, max: 32768, snap: 0x0a };
  const lines: string[] = [];
  for (let i = 0; i < 20000; i++)
    lines.push(
      JSON.stringify({
        id: `pkg-${i}`,
        rev: `${i}-${randomBytes(8).toString('hex')}`,
        pad: 'x'.repeat(i % 90),
      }),
    );
  // One line longer than max: it must be cut at max (the only cut not at a line end).
  lines.splice(5000, 0, 'y'.repeat(100_000));
  const data = Buffer.from(lines.join('\n') + '\n');
  const whole = cut(p, gear, data);
  assert.deepEqual(cut(p, gear, data, 999), whole);
  let off = 0;
  let notAtLineEnd = 0;
  for (const len of whole) {
    off += len;
    assert.ok(len <= 32768);
    if (data[off - 1] !== 0x0a) notAtLineEnd++;
  }
  assert.equal(off, data.length);
  // Only the cuts inside the 100 kB line (at max) do not end a line.
  assert.ok(notAtLineEnd >= 3 && notAtLineEnd <= 4, `${notAtLineEnd} cuts inside a line`);
});
