import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readListing } from '../../../src/repo/format/listing.js';
import type { TarballSourceSnapshot } from '../../../src/repo/format/source-snapshots.js';
import { readAll, readStream } from '../../../src/repo/stream-ref.js';
import { backupTarballSource } from '../../../src/sources/tarballs/source.js';
import { checkEntry, readListingLines, type TarballEntry } from '../../../src/repo/format/tarball-listing.js';
import { comparePaths } from '../../../src/repo/format/order.js';
import {
  packBatch,
  unpackBatch,
  walkTree,
  walkTreeHere,
  type WalkEntry,
} from '../../../src/sources/tarballs/walk.js';
import { IntegrityError } from '../../../src/errors.js';
import { makeTestRepo, type TestRepo } from '../../helpers/repo.js';

/**
 * Incremental runs of a tarball store: a file whose size or modification time changed is read again, every
 * other file keeps its previous line byte for byte (compared by the line's head, not parsed), whatever its name.
 */
const cfg = (p: string) => ({ name: 'tarballs', path: p, verify: true });

function put(root: string, rel: string, data: Buffer | string): void {
  mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  writeFileSync(path.join(root, rel), data);
}

async function entries(t: TestRepo, snap: TarballSourceSnapshot): Promise<TarballEntry[]> {
  const out: TarballEntry[] = [];
  for await (const e of readListing(t.reader, snap.listing, checkEntry, 'test')) out.push(e);
  return out;
}

async function bytesOf(t: TestRepo, snap: TarballSourceSnapshot): Promise<string> {
  const parts: Buffer[] = [];
  for await (const b of readStream(t.reader, snap.listing)) parts.push(b);
  return Buffer.concat(parts).toString('utf8');
}

/** Names a listing line escapes or that look like parts of a line: carried over like any other. */
const ODD = [
  'quote"d/-/q-1.0.0.tgz',
  'back\\slash/-/b-1.0.0.tgz',
  '"etag":"x"/-/e-1.0.0.tgz',
  '","size":1,"mtime":2,"data":{/-/f.tgz',
  'sp ace/-/s p-1.0.0.tgz',
  'ünïcödé/-/ü-1.0.0.tgz',
  '😀/-/emoji-1.0.0.tgz',
  '\ufffd/-/replacement-1.0.0.tgz',
  'a/-/a-1.0.0.tgz',
  'a-b/-/a-b-1.0.0.tgz',
  'a.b/-/a.b-1.0.0.tgz',
];

describe('incremental runs of a tarball store', () => {
  let t: TestRepo;
  let root: string;
  let prev: TarballSourceSnapshot;
  before(async () => {
    t = await makeTestRepo();
    root = path.join(t.dir, 'store');
    ODD.forEach((p, i) => put(root, p, `content ${i} of ${p}`));
    put(root, 'same/-/same-1.0.0.tgz', 'AAAA');
    put(root, 'replaced/-/r-1.0.0.tgz', 'BBBB');
    put(root, 'dir/one/-/one-1.0.0.tgz', 'one');
    put(root, 'dir/two/-/two-1.0.0.tgz', 'two');
    const r = await backupTarballSource(cfg(root), t.ctx());
    await t.nextRun();
    prev = r.snapshot;
  });
  after(() => t.close());

  test('odd names: listed in listing order; with no change every line is carried over byte for byte', async () => {
    const first = await entries(t, prev);
    assert.deepEqual(
      first.map((e) => e.path),
      [
        ...ODD,
        'same/-/same-1.0.0.tgz',
        'replaced/-/r-1.0.0.tgz',
        'dir/one/-/one-1.0.0.tgz',
        'dir/two/-/two-1.0.0.tgz',
      ].sort(comparePaths),
    );
    const r = await backupTarballSource(cfg(root), t.ctx(prev));
    await t.nextRun();
    assert.equal(r.stats.read, 0);
    assert.equal(r.stats.reused, first.length);
    assert.equal(await bytesOf(t, r.snapshot), await bytesOf(t, prev));
    const reader = await t.restoreReader();
    for (const e of await entries(t, r.snapshot))
      if (ODD.includes(e.path))
        assert.equal(
          (await readAll(reader, e.data)).toString(),
          `content ${ODD.indexOf(e.path)} of ${e.path}`,
        );
    prev = r.snapshot;
  });

  test('a file modified in place with the same size (its mtime moves) is read again', async () => {
    const p = path.join(root, 'same/-/same-1.0.0.tgz');
    const before = statSync(p);
    writeFileSync(p, 'ZZZZ');
    // The same second on a coarse clock: the time is moved on explicitly, as any write a second later would.
    utimesSync(p, before.atime, new Date(before.mtimeMs + 2000));
    const r = await backupTarballSource(cfg(root), t.ctx(prev));
    await t.nextRun();
    assert.equal(r.stats.read, 1);
    const e = (await entries(t, r.snapshot)).find((x) => x.path === 'same/-/same-1.0.0.tgz')!;
    assert.equal((await readAll(await t.restoreReader(), e.data)).toString(), 'ZZZZ');
    prev = r.snapshot;
  });

  test('a file replaced by another (renamed over it, same size) is read again', async () => {
    const p = path.join(root, 'replaced/-/r-1.0.0.tgz');
    const old = statSync(p);
    writeFileSync(`${p}.new`, 'CCCC');
    utimesSync(`${p}.new`, old.atime, new Date(old.mtimeMs - 60_000)); // even an older time
    renameSync(`${p}.new`, p);
    const r = await backupTarballSource(cfg(root), t.ctx(prev));
    await t.nextRun();
    assert.equal(r.stats.read, 1);
    const e = (await entries(t, r.snapshot)).find((x) => x.path === 'replaced/-/r-1.0.0.tgz')!;
    assert.equal((await readAll(await t.restoreReader(), e.data)).toString(), 'CCCC');
    prev = r.snapshot;
  });

  test('a directory renamed: its files are listed under the new name (read again), the old names leave', async () => {
    renameSync(path.join(root, 'dir'), path.join(root, 'moved'));
    const r = await backupTarballSource(cfg(root), t.ctx(prev));
    await t.nextRun();
    assert.equal(r.stats.read, 2);
    const listed = (await entries(t, r.snapshot)).map((e) => e.path);
    assert.ok(listed.includes('moved/one/-/one-1.0.0.tgz') && listed.includes('moved/two/-/two-1.0.0.tgz'));
    assert.ok(!listed.some((p) => p.startsWith('dir/')));
    assert.deepEqual(listed, [...listed].sort(comparePaths));
    prev = r.snapshot;
  });
});

describe('reading a previous listing by the lines’ heads', () => {
  const line = (e: object) => JSON.stringify(e);
  const data = { size: 4, chunks: [] };
  async function* pieces(...ps: string[]) {
    for (const p of ps) yield Buffer.from(p);
  }
  async function read(...ps: string[]) {
    const out = [];
    for await (const b of readListingLines(pieces(...ps), 'test')) out.push(...b);
    return out;
  }

  test('a head is read without parsing (escapes decoded); a line split across pieces is whole; another shape is parsed whole', async () => {
    const a = line({ path: 'q"\\/x', size: 4, mtime: 1733212345678.5, data });
    const b = line({ path: 'e', size: 4, mtime: 7, data, etag: '"abc"' });
    const text = `${a}\n${b}\n`;
    const got = await read(text.slice(0, 10), text.slice(10, a.length + 5), text.slice(a.length + 5));
    assert.deepEqual(
      got.map((l) => [l.head.path, l.head.size, l.head.mtime, l.head.etag, l.line, l.n]),
      [
        ['q"\\/x', 4, 1733212345678.5, undefined, a, 1],
        ['e', 4, 7, '"abc"', b, 2],
      ],
    );
    assert.equal(got[0]!.entry, undefined, 'not parsed');
    assert.ok(got[1]!.entry, 'parsed whole');
  });

  test('only a whole line of the exact shape is taken unparsed: a broken data reference, a size that does not match it, a second "path" or a cut line is parsed and checked', async () => {
    const id = 'ab'.repeat(32);
    const good = line({ path: 'p/-/p-1.0.0.tgz', size: 4, mtime: 1, data: { size: 4, chunks: [id] } });
    const [g] = await read(`${good}\n`);
    assert.equal(g!.entry, undefined, 'the exact shape is not parsed');
    // The head is that of a good line; what follows it is not.
    for (const bad of [
      line({ path: 'p', size: 4, mtime: 1, data: { size: 4, chunks: ['not-hex'] } }),
      line({ path: 'p', size: 4, mtime: 1, data: { size: 5, chunks: [id] } }),
      '{"path":"p","size":4,"mtime":1,"data":{',
    ]) {
      await assert.rejects(
        read(`${good}\n${bad}\n`),
        (e: Error) => e instanceof IntegrityError && /line 2/.test(e.message),
        bad,
      );
    }
    // A second "path": JSON.parse keeps the last one, and that is the name the line is taken under (the one a
    // restore would use), checked by the name rule; never the first one unparsed.
    const twice = `{"path":"a","size":4,"mtime":1,"data":{"size":4,"chunks":["${id}"]},"path":"z"}`;
    const [t2] = await read(`${twice}\n`);
    assert.equal(t2!.head.path, 'z');
    assert.ok(t2!.entry);
    await assert.rejects(
      read(`{"path":"a","size":4,"mtime":1,"data":{"size":4,"chunks":["${id}"]},"path":"../x"}\n`),
      (e: Error) => e instanceof IntegrityError && /line 1/.test(e.message),
    );
  });

  test('a line that is not JSON, or whose name the rule refuses, is an IntegrityError naming the line', async () => {
    await assert.rejects(
      read(`${line({ path: 'ok', size: 4, mtime: 1, data })}\n{"path":"x",`),
      (e: Error) => e instanceof IntegrityError && /line 2/.test(e.message),
    );
    await assert.rejects(
      read(`${line({ path: 'a/../b', size: 4, mtime: 1, data })}\n`),
      (e: Error) => e instanceof IntegrityError && /line 1/.test(e.message),
    );
  });
});

describe('the walk’s batches between threads', () => {
  test('packed and unpacked: the same entries in the same order, problems anywhere', () => {
    const f = (p: string, size: number, mtimeMs: number): WalkEntry => ({
      kind: 'file',
      path: p,
      size,
      mtimeMs,
    });
    const pr = (p: string): WalkEntry => ({ kind: 'problem', path: p, problem: 'x', severity: 'warning' });
    for (const batch of [
      [],
      [pr('a')],
      [pr('a'), f('b', 1, 2), pr('c'), pr('d'), f('e\n"f', 0, -5), f('😀', 2 ** 40, 1733212345678), pr('z')],
      [f('only', 3, 4)],
    ])
      assert.deepEqual(unpackBatch(packBatch(batch)), batch);
  });

  test('the worker’s walk and the walk in this thread list the same entries', async () => {
    const t = await makeTestRepo();
    try {
      const root = path.join(t.dir, 'tree');
      ODD.forEach((p) => put(root, p, p));
      for (let i = 0; i < 5000; i++) put(root, `many/p${i}/-/p${i}-1.0.0.tgz`, String(i));
      const here: WalkEntry[] = [];
      for await (const e of walkTreeHere(root)) here.push(e);
      const there: WalkEntry[] = [];
      for await (const e of walkTree(root)) there.push(e);
      assert.equal(here.length, ODD.length + 5000);
      assert.deepEqual(there, here);
      assert.deepEqual(
        here.map((e) => e.path),
        here.map((e) => e.path).sort(comparePaths),
      );
    } finally {
      await t.close();
    }
  });
});
