import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareCodePoints, ExternalSorter, splitLines } from '../../src/util/external-sort.js';
import { comparePaths } from '../../src/repo/format/order.js';
import { tmpDir } from '../harness/index.js';

test('sorts beyond its memory budget through run files, stable, with unique keeping the last', async (t) => {
  const dir = await tmpDir(t);
  const s = new ExternalSorter((r) => r.split(' ')[0]!, { memoryBudget: 4096, tmpDir: dir, unique: true });
  const keys: string[] = [];
  for (let i = 0; i < 5000; i++) {
    const k = `k${(i * 7919) % 1000}`;
    keys.push(k);
    await s.add(`${k} ${i}`);
  }
  const out: string[] = [];
  for await (const r of s.sorted()) out.push(r);
  const expectKeys = [...new Set(keys)].sort(compareCodePoints);
  assert.deepEqual(
    out.map((r) => r.split(' ')[0]),
    expectKeys,
  );
  // unique keeps the last occurrence in input order
  for (const r of out) {
    const [k, i] = r.split(' ');
    const last = keys.lastIndexOf(k!);
    assert.equal(Number(i), last);
  }
});

test('code point order puts astral characters after the BMP, like UTF-8 byte order', () => {
  const a = 'a\u{1F600}';
  const b = 'a\uFFFD';
  assert.equal(compareCodePoints(a, b) > 0, Buffer.compare(Buffer.from(a), Buffer.from(b)) > 0);
});

test('listing order treats "/" as the lowest character', () => {
  const paths = ['a-b/x', 'a/x', 'a/-/a-1.tgz', '@s/x/-/x-1.tgz', '@s-t/y/-/y-1.tgz', 'a'];
  const sorted = [...paths].sort(comparePaths);
  assert.deepEqual(sorted, ['@s/x/-/x-1.tgz', '@s-t/y/-/y-1.tgz', 'a', 'a/-/a-1.tgz', 'a/x', 'a-b/x']);
});

test('splitLines never cuts a multi-byte character that straddles two reads', async () => {
  const text = 'naïve 日本語 😀\n'.repeat(1000);
  const bytes = Buffer.from(text);
  async function* pieces() {
    for (let off = 0; off < bytes.length; off += 7) yield bytes.subarray(off, off + 7);
  }
  const lines: string[] = [];
  for await (const l of splitLines(pieces())) lines.push(l);
  assert.equal(lines.length, 1000);
  assert.ok(lines.every((l) => l === 'naïve 日本語 😀'));
});
