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

test('reads at most fanIn run files at once, however many runs the records make (merged on disk first)', async (t) => {
  const dir = await tmpDir(t);
  // ~1 KB budget: a run every few records, hundreds of runs in all.
  const s = new ExternalSorter((r) => r.split(' ')[0]!, {
    memoryBudget: 1024,
    tmpDir: dir,
    unique: true,
    fanIn: 4,
  });
  const keys: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const k = `k${(i * 7919) % 700}`;
    keys.push(k);
    await s.add(`${k} ${i}`);
    // Runs pile up like a counter in base fanIn: never fanIn of one level left unmerged.
    assert.ok(s.runCount < 4 * 8, `${s.runCount} runs on disk`);
  }
  const out: string[] = [];
  for await (const r of s.sorted()) out.push(r);
  assert.ok(s.maxRunsOpen <= 4, `${s.maxRunsOpen} runs read at once`);
  assert.deepEqual(
    out.map((r) => r.split(' ')[0]),
    [...new Set(keys)].sort(compareCodePoints),
  );
  // Stable through the intermediate merges: unique still keeps the last occurrence in input order.
  for (const r of out) {
    const [k, i] = r.split(' ');
    assert.equal(Number(i), keys.lastIndexOf(k!));
  }
});

test('without unique, equal keys keep input order through the intermediate merges', async (t) => {
  const dir = await tmpDir(t);
  const s = new ExternalSorter((r) => r.split(' ')[0]!, { memoryBudget: 512, tmpDir: dir, fanIn: 3 });
  const recs: string[] = [];
  for (let i = 0; i < 2000; i++) recs.push(`k${(i * 31) % 50} ${i}`);
  for (const r of recs) await s.add(r);
  const out: string[] = [];
  for await (const r of s.sorted()) out.push(r);
  assert.ok(s.maxRunsOpen <= 3);
  const expected = recs
    .map((r, i) => ({ r, i }))
    .sort((a, b) => compareCodePoints(a.r.split(' ')[0]!, b.r.split(' ')[0]!) || a.i - b.i)
    .map((x) => x.r);
  assert.deepEqual(out, expected);
});

test('run files keep every record byte for byte: multi-byte and astral text, and records bigger than the write buffer', async (t) => {
  const dir = await tmpDir(t);
  const s = new ExternalSorter((r) => r.slice(0, 8), { memoryBudget: 64 * 1024, tmpDir: dir });
  const recs: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const key = String(i).padStart(8, '0');
    // 3-byte and 4-byte characters everywhere; every 500th record 1.8 MB of UTF-8 (more than the 1 MiB buffer).
    const body = i % 500 === 7 ? '日'.repeat(600_000) : `naïve 日本語 😀 ${'é'.repeat(i % 97)}`;
    recs.push(`${key}\t${body}`);
  }
  for (const r of [...recs].reverse()) await s.add(r);
  assert.ok(s.runCount > 1, `${s.runCount} run files`);
  const out: string[] = [];
  for await (const r of s.sorted()) out.push(r);
  assert.equal(out.length, recs.length);
  for (let i = 0; i < recs.length; i++) assert.ok(out[i] === recs[i], `record ${i} differs`);
});
