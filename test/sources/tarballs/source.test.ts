import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { encodeLines, readListing } from '../../../src/repo/format/listing.js';
import type { TarballExpectation, TarballSourceSnapshot } from '../../../src/repo/format/source-snapshots.js';
import { readAll, writeStream } from '../../../src/repo/stream-ref.js';
import { backupTarballSource } from '../../../src/sources/tarballs/source.js';
import { checkEntry, type TarballEntry } from '../../../src/repo/format/tarball-listing.js';
import { DirTarballStore, type TarballStore } from '../../../src/sources/tarballs/store.js';
import { comparePaths } from '../../../src/repo/format/order.js';
import { tmpDir } from '../../harness/index.js';
import { createLogger } from '../../../src/log.js';
import { makeTestRepo, type TestRepo } from '../../helpers/repo.js';

const cfg = (p: string) => ({ name: 'tarballs', path: p, verify: true });

function put(root: string, rel: string, data: Buffer | string): void {
  mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
  writeFileSync(path.join(root, rel), data);
}

async function listing(t: TestRepo, snap: TarballSourceSnapshot): Promise<TarballEntry[]> {
  const out: TarballEntry[] = [];
  for await (const e of readListing(t.reader, snap.listing, checkEntry, 'test')) out.push(e);
  return out;
}

/** Stores tarball expectations as a backup's CouchDB part does (sorted lines in the repository). */
async function storeExpectations(t: TestRepo, exps: TarballExpectation[]) {
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
  return ref;
}

describe('tarball store backup', () => {
  let t: TestRepo;
  let root: string;
  const files: Record<string, Buffer> = {
    'left-pad/-/left-pad-1.3.0.tgz': Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(50_000, 7)]),
    'left-pad/-/left-pad-1.2.0.tgz': Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(10_000, 3)]),
    '@scope/name/-/name-1.0.0.tgz': Buffer.concat([Buffer.from([0x1f, 0x8b]), Buffer.alloc(9_000_000, 1)]),
    'a-b/-/a-b-0.0.1.tgz': Buffer.from('small'),
    'a/-/a-1.0.0.tgz': Buffer.from('tiny'),
  };

  before(async () => {
    t = await makeTestRepo();
    root = path.join(t.dir, 'store');
    for (const [p, d] of Object.entries(files)) put(root, p, d);
  });
  after(() => t.close());

  let first: TarballSourceSnapshot;
  test('a full backup lists every file in listing order and stores its bytes', async () => {
    const r = await backupTarballSource(cfg(root), t.ctx());
    await t.nextRun();
    first = r.snapshot;
    const entries = await listing(t, r.snapshot);
    const paths = entries.map((e) => e.path);
    assert.deepEqual(paths, Object.keys(files).sort(comparePaths));
    assert.equal(r.snapshot.files, 5);
    assert.equal(r.stats.read, 5);
    const reader = await t.restoreReader();
    for (const e of entries) assert.deepEqual(await readAll(reader, e.data), files[e.path], e.path);
  });

  test('an incremental run reads only new and changed files; removed files leave the listing', async () => {
    put(root, 'left-pad/-/left-pad-1.4.0.tgz', Buffer.from('new version'));
    put(root, 'a/-/a-1.0.0.tgz', Buffer.from('tiny but changed'));
    rmSync(path.join(root, 'a-b/-/a-b-0.0.1.tgz'));
    const r = await backupTarballSource(cfg(root), t.ctx(first));
    await t.nextRun();
    assert.equal(r.stats.read, 2, 'the new file and the changed one');
    assert.equal(r.stats.reused, 3);
    const entries = await listing(t, r.snapshot);
    assert.deepEqual(
      entries.map((e) => e.path),
      [
        '@scope/name/-/name-1.0.0.tgz',
        'a/-/a-1.0.0.tgz',
        'left-pad/-/left-pad-1.2.0.tgz',
        'left-pad/-/left-pad-1.3.0.tgz',
        'left-pad/-/left-pad-1.4.0.tgz',
      ],
    );
    const reader = await t.restoreReader();
    assert.equal((await readAll(reader, entries[1]!.data)).toString(), 'tiny but changed');
    first = r.snapshot;
  });

  test('a file whose size is unchanged but mtime moved is read again', async () => {
    const p = path.join(root, 'left-pad/-/left-pad-1.2.0.tgz');
    utimesSync(p, new Date(), new Date(Date.now() + 5000));
    const r = await backupTarballSource(cfg(root), t.ctx(first));
    await t.nextRun();
    assert.equal(r.stats.read, 1);
    first = r.snapshot;
  });

  test('checksums against the packuments of the run: verified, mismatched (flagged), missing (reported)', async () => {
    const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');
    const exps: TarballExpectation[] = [
      {
        path: '@scope/name/-/name-1.0.0.tgz',
        shasum: sha1(files['@scope/name/-/name-1.0.0.tgz']!),
        doc: '@scope/name',
        db: 'registry',
      },
      { path: 'left-pad/-/left-pad-1.3.0.tgz', shasum: '0'.repeat(40), doc: 'left-pad', db: 'registry' },
      { path: 'left-pad/-/left-pad-9.9.9.tgz', shasum: '1'.repeat(40), doc: 'left-pad', db: 'registry' },
    ].sort((a, b) => comparePaths(a.path, b.path));
    const ref = await storeExpectations(t, exps);
    // A fresh full read (no previous): every file is read and the referenced ones are hashed.
    const r = await backupTarballSource(cfg(root), t.ctx(), [ref]);
    await t.nextRun();
    assert.equal(r.stats.verified, 1);
    assert.equal(r.stats.mismatch, 1);
    assert.equal(r.stats.missing, 1);
    const codes = r.findings.map((f) => `${f.code} ${f.object}`).sort();
    assert.deepEqual(codes, [
      'tarball-checksum-mismatch left-pad/-/left-pad-1.3.0.tgz',
      'tarball-missing left-pad/-/left-pad-9.9.9.tgz',
    ]);
    assert.equal(r.findings.find((f) => f.code === 'tarball-checksum-mismatch')!.severity, 'error');
    const entries = await listing(t, r.snapshot);
    const bad = entries.find((e) => e.path === 'left-pad/-/left-pad-1.3.0.tgz')!;
    assert.equal(bad.flag, 'checksum-mismatch');
    // Flagged, and still backed up.
    assert.deepEqual(
      await readAll(await t.restoreReader(), bad.data),
      files['left-pad/-/left-pad-1.3.0.tgz'],
    );
    const good = entries.find((e) => e.path === '@scope/name/-/name-1.0.0.tgz')!;
    assert.equal(good.sha1, sha1(files['@scope/name/-/name-1.0.0.tgz']!));
    assert.equal(good.flag, undefined);
  });

  test('thousands of missing tarballs: all counted, the first 1000 listed, the first 100 logged', async () => {
    const exps: TarballExpectation[] = Array.from({ length: 1500 }, (_, i) => ({
      path: `gone-${String(i).padStart(4, '0')}/-/gone-${String(i).padStart(4, '0')}-1.0.0.tgz`,
      shasum: '2'.repeat(40),
      doc: `gone-${i}`,
      db: 'registry',
    })).sort((a, b) => comparePaths(a.path, b.path));
    const ref = await storeExpectations(t, exps);
    const lines: { code?: string; msg: string }[] = [];
    const log = createLogger({
      level: 'warn',
      pretty: false,
      destination: { write: (l: string) => void lines.push(JSON.parse(l) as { code?: string; msg: string }) },
    });
    const r = await backupTarballSource(cfg(root), { ...t.ctx(), log }, [ref]);
    await t.nextRun();
    assert.equal(r.stats.missing, 1500);
    assert.equal(r.findings.filter((f) => f.code === 'tarball-missing').length, 1000);
    assert.match(r.findings.at(-1)!.message, /missing 1500/);
    const logged = lines.filter((l) => l.code === 'tarball-missing');
    assert.equal(logged.filter((l) => /is referenced by/.test(l.msg)).length, 100);
    assert.equal(logged.filter((l) => /the rest are counted, not logged/.test(l.msg)).length, 1);
  });

  test('symbolic links are never followed; one pointing out of the tree is an error naming it', async (tt) => {
    const dir = await tmpDir(tt);
    put(dir, 'x/-/x-1.0.0.tgz', 'x');
    writeFileSync(path.join(t.dir, 'secret.txt'), 'do not back me up');
    symlinkSync(path.join(t.dir, 'secret.txt'), path.join(dir, 'x/-/x-6.6.6.tgz'));
    symlinkSync('x-1.0.0.tgz', path.join(dir, 'x/-/x-1.0.1.tgz'));
    const r = await backupTarballSource(cfg(dir), t.ctx());
    await t.nextRun();
    const out = r.findings.find((f) => f.object === 'x/-/x-6.6.6.tgz')!;
    assert.equal(out.severity, 'error');
    assert.match(out.message, /pointing out of the tree/);
    assert.equal(r.findings.find((f) => f.object === 'x/-/x-1.0.1.tgz')!.severity, 'warning');
    assert.deepEqual(
      (await listing(t, r.snapshot)).map((e) => e.path),
      ['x/-/x-1.0.0.tgz'],
    );
  });

  test('a file that cannot be read is an error naming it; the previous version is kept', async () => {
    const inner = new DirTarballStore(root);
    const failing: TarballStore = {
      location: inner.location,
      entries: (tmp: string) => inner.entries(tmp),
      async read(p: string, size: number): Promise<Buffer | Readable> {
        if (p === 'left-pad/-/left-pad-1.4.0.tgz')
          throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
        return inner.read(p, size);
      },
    };
    put(root, 'left-pad/-/left-pad-1.4.0.tgz', Buffer.from('new version, rewritten'));
    const r = await backupTarballSource(cfg(root), t.ctx(first), [], failing);
    await t.nextRun();
    const f = r.findings.find((x) => x.object === 'left-pad/-/left-pad-1.4.0.tgz')!;
    assert.equal(f.severity, 'error');
    assert.equal(f.source, 'tarballs');
    assert.match(f.message, /EIO/);
    const entries = await listing(t, r.snapshot);
    const kept = entries.find((e) => e.path === 'left-pad/-/left-pad-1.4.0.tgz')!;
    assert.equal((await readAll(await t.restoreReader(), kept.data)).toString(), 'new version');
  });

  test('a source directory that does not exist is a SourceError naming the source', async () => {
    await assert.rejects(
      backupTarballSource(cfg(path.join(root, 'nope')), t.ctx()),
      (e: Error) => e.name === 'SourceError' && /tarballs/.test(e.message),
    );
  });

  test('file names are stored as they are, non-ASCII included', async (tt) => {
    const dir = await tmpDir(tt);
    put(dir, 'ünïcödé/-/ünïcödé-1.0.0.tgz', 'u');
    const r = await backupTarballSource(cfg(dir), t.ctx());
    await t.nextRun();
    assert.deepEqual(
      (await listing(t, r.snapshot)).map((e) => e.path),
      ['ünïcödé/-/ünïcödé-1.0.0.tgz'],
    );
    assert.equal(readFileSync(path.join(dir, 'ünïcödé/-/ünïcödé-1.0.0.tgz'), 'utf8'), 'u');
  });
});
