import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  appendFileSync,
  mkdirSync,
  renameSync,
  statSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { encodeLines, readListing } from '../../../src/repo/format/listing.js';
import type { TarballExpectation, TarballSourceSnapshot } from '../../../src/repo/format/source-snapshots.js';
import { MAX_FILE_READS, PIECE_SIZE } from '../../../src/repo/pack-protocol.js';
import { readAll, writeStream } from '../../../src/repo/stream-ref.js';
import { BlobWriter } from '../../../src/repo/writer.js';
import { backupTarballSource } from '../../../src/sources/tarballs/source.js';
import { checkEntry, type TarballEntry } from '../../../src/repo/format/tarball-listing.js';
import { makeTestRepo, type TestRepo } from '../../helpers/repo.js';

/**
 * Files that change while the backup reads them. The writer's test hook runs in this thread while the worker
 * that reads the file waits for its answer, so each change lands in the middle of a read: no timing involved.
 * Every changing file is several pieces long, so that the hook runs before its last byte is read.
 */
const cfg = (p: string) => ({ name: 'tarballs', path: p, verify: true });

function put(root: string, rel: string, data: Buffer): void {
  mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  writeFileSync(path.join(root, rel), data);
}

/** A tarball-like file (gzip magic, then random bytes) of `size` bytes. */
function tarball(size: number): Buffer {
  return Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(size - 2)]);
}

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

async function entriesOf(t: TestRepo, snap: TarballSourceSnapshot): Promise<Map<string, TarballEntry>> {
  const out = new Map<string, TarballEntry>();
  for await (const e of readListing(t.reader, snap.listing, checkEntry, 'test')) out.set(e.path, e);
  return out;
}

/** Replaces the test repository's writer with one whose test hook is `hook` (for this run). */
async function hookWriter(t: TestRepo, hook: (file: string, read: number) => void): Promise<void> {
  await t.writer.close();
  t.writer = new BlobWriter(t.repo, t.index, t.fanout, { workers: 2, beforeFileBatch: hook });
}

describe('tarball files that change while they are read', () => {
  let t: TestRepo;
  let root: string;
  const steady: Record<string, Buffer> = {
    'steady/-/steady-1.0.0.tgz': tarball(3 * PIECE_SIZE + 12_345),
    'tiny/-/tiny-1.0.0.tgz': Buffer.from('tiny'),
  };

  before(async () => {
    t = await makeTestRepo();
    root = path.join(t.dir, 'store');
    for (const [p, d] of Object.entries(steady)) put(root, p, d);
  });
  after(() => t.close());

  async function assertSteadyRestore(entries: Map<string, TarballEntry>): Promise<void> {
    const reader = await t.restoreReader();
    for (const [p, d] of Object.entries(steady)) {
      const e = entries.get(p);
      assert.ok(e, `${p} is in the listing`);
      assert.deepEqual(await readAll(reader, e.data), d, p);
    }
  }

  test('a file that keeps growing is reported as inconsistent and not stored; the others are', async () => {
    const rel = 'growing/-/growing-1.0.0.tgz';
    const full = path.join(root, rel);
    put(root, rel, tarball(4 * PIECE_SIZE));
    const reads: Record<string, Set<number>> = {};
    await hookWriter(t, (file, read) => {
      (reads[file] ??= new Set()).add(read);
      if (file === full) appendFileSync(full, randomBytes(100_000));
    });
    const r = await backupTarballSource(cfg(root), t.ctx());
    await t.nextRun();

    const f = r.findings.filter((x) => x.code === 'tarball-inconsistent');
    assert.equal(f.length, 1, JSON.stringify(r.findings));
    assert.equal(f[0]!.severity, 'error', 'an error finding makes the run partial (exit 6)');
    assert.equal(f[0]!.object, rel);
    assert.equal(f[0]!.source, 'tarballs');
    assert.match(
      f[0]!.message,
      /growing-1\.0\.0\.tgz changed while being read, 3 reads in a row .*not stored/,
    );
    assert.equal(r.stats.problems, 1, 'counted');
    assert.deepEqual(
      [...reads[full]!].sort(),
      Array.from({ length: MAX_FILE_READS }, (_, i) => i + 1),
      'read again, boundedly',
    );
    // Files that did not change were read once.
    for (const p of Object.keys(steady))
      if (reads[path.join(root, p)]) assert.deepEqual([...reads[path.join(root, p)]!], [1], p);

    const entries = await entriesOf(t, r.snapshot);
    assert.equal(entries.has(rel), false, 'never stored as if consistent');
    assert.equal(r.snapshot.files, Object.keys(steady).length);
    await assertSteadyRestore(entries);
  });

  test('a file that keeps changing keeps its previous consistent version, and says so', async () => {
    const rel = 'kept/-/kept-1.0.0.tgz';
    const full = path.join(root, rel);
    const v1 = tarball(3 * PIECE_SIZE);
    put(root, rel, v1);
    const first = await backupTarballSource(cfg(root), t.ctx());
    await t.nextRun();
    assert.equal((await entriesOf(t, first.snapshot)).get(rel)?.size, v1.length);

    // A new version, then rewritten with yet another on every piece read.
    let size = v1.length + 1;
    put(root, rel, tarball(size));
    await hookWriter(t, (file) => {
      if (file === full) writeFileSync(full, tarball(++size));
    });
    const r = await backupTarballSource(cfg(root), t.ctx(first.snapshot));
    await t.nextRun();
    const f = r.findings.find((x) => x.code === 'tarball-inconsistent');
    assert.ok(f, JSON.stringify(r.findings));
    assert.equal(f.object, rel);
    assert.match(f.message, /previous version is kept/);
    const kept = (await entriesOf(t, r.snapshot)).get(rel);
    assert.ok(kept, 'the previous entry stays in the listing');
    assert.deepEqual(await readAll(await t.restoreReader(), kept.data), v1);
  });

  test('a file rewritten once during its read is read again and stored whole, as rewritten', async () => {
    const rel = 'rewritten/-/rewritten-1.0.0.tgz';
    const full = path.join(root, rel);
    const v1 = tarball(3 * PIECE_SIZE + 500);
    const v2 = tarball(2 * PIECE_SIZE + 777);
    put(root, rel, v1);
    const reads: number[] = [];
    await hookWriter(t, (file, read) => {
      if (file !== full) return;
      reads.push(read);
      if (reads.length === 1) writeFileSync(full, v2);
    });
    // Its packument records the shasum of the second version: the checksum covers that read only.
    const exps: TarballExpectation[] = [{ path: rel, shasum: sha1(v2), doc: 'rewritten', db: 'registry' }];
    const ref = await writeStream(
      t.writer,
      encodeLines(
        (async function* () {
          yield* exps;
        })(),
      ),
      'tree',
    );
    await t.writer.flush();
    const r = await backupTarballSource(cfg(root), t.ctx(), [ref]);
    await t.nextRun();

    assert.deepEqual(r.findings, []);
    assert.equal(r.stats.verified, 1, 'sha1 of the second version, whole');
    assert.ok(reads.includes(2), 'read a second time');
    const e = (await entriesOf(t, r.snapshot)).get(rel)!;
    assert.equal(e.size, v2.length);
    assert.equal(e.sha1, sha1(v2));
    assert.equal(e.mtime, Math.floor(statSync(full).mtimeMs), 'the modification time of the version stored');
    assert.deepEqual(await readAll(await t.restoreReader(), e.data), v2);
  });

  test('a file cut short during its read is read again and stored whole, with its new time', async () => {
    const rel = 'shrinking/-/shrinking-1.0.0.tgz';
    const full = path.join(root, rel);
    const v1 = tarball(4 * PIECE_SIZE);
    put(root, rel, v1);
    utimesSync(full, new Date('2020-01-01'), new Date('2020-01-01'));
    let changed = false;
    await hookWriter(t, (file) => {
      if (file !== full || changed) return;
      changed = true;
      truncateSync(full, PIECE_SIZE + 1000);
    });
    const r = await backupTarballSource(cfg(root), t.ctx());
    await t.nextRun();
    assert.deepEqual(r.findings, []);
    const e = (await entriesOf(t, r.snapshot)).get(rel)!;
    assert.deepEqual(await readAll(await t.restoreReader(), e.data), v1.subarray(0, PIECE_SIZE + 1000));
    assert.equal(e.size, PIECE_SIZE + 1000);
    assert.equal(
      e.mtime,
      Math.floor(statSync(full).mtimeMs),
      'the time of the version stored, not the walk’s',
    );
  });

  test('a file replaced (renamed over) during its read is stored as one of its versions, whole', async () => {
    const rel = 'replaced/-/replaced-1.0.0.tgz';
    const full = path.join(root, rel);
    const v1 = tarball(3 * PIECE_SIZE);
    const v2 = tarball(3 * PIECE_SIZE + 99);
    put(root, rel, v1);
    let changed = false;
    await hookWriter(t, (file) => {
      if (file !== full || changed) return;
      changed = true;
      writeFileSync(`${full}.tmp`, v2);
      renameSync(`${full}.tmp`, full);
    });
    const r = await backupTarballSource(cfg(root), t.ctx());
    await t.nextRun();
    assert.ok(changed);
    assert.deepEqual(r.findings, []);
    const e = (await entriesOf(t, r.snapshot)).get(rel)!;
    const stored = await readAll(await t.restoreReader(), e.data);
    assert.ok(stored.equals(v1) || stored.equals(v2), `stored ${stored.length} bytes: neither version`);

    // The next run sees the new version and stores it.
    const r2 = await backupTarballSource(cfg(root), t.ctx(r.snapshot));
    await t.nextRun();
    const e2 = (await entriesOf(t, r2.snapshot)).get(rel)!;
    assert.deepEqual(await readAll(await t.restoreReader(), e2.data), v2);
  });
});
