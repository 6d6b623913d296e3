import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { encodeLines } from '../../src/repo/format/listing.js';
import { DestinationError, InterruptedError } from '../../src/errors.js';
import { Progress } from '../../src/util/progress.js';
import { Repository } from '../../src/repo/repository.js';
import { newManifest, sealSnapshot } from '../../src/repo/snapshot.js';
import { writeBuffer, writeStream, type StreamRef } from '../../src/repo/stream-ref.js';
import { openForRestore, pickSnapshot, restoreSnapshot } from '../../restore/index.js';
import type { JournalData } from '../../restore/state.js';
import type { RestoreReport } from '../../restore/types.js';
import { comparePaths } from '../../src/repo/format/order.js';
import { startServers, tmpDir } from '../harness/index.js';
import { makeTestRepo, type TestRepo } from '../helpers/repo.js';
import { FsStore } from '../../src/store/fs.js';
import { couch, databaseState, makeFixture, type Fixture } from './fixture.js';

function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push(r);
  }
  return out.sort();
}

/**
 * Environment for a `regbackup` child that SIGKILLs itself right after it wrote a resume journal for which
 * `when` holds: a preloaded module wraps fs.renameSync, with which the journal is replaced. A kill at a known
 * point, whatever the speed of the machine.
 */
function killAfterJournal(dir: string, when: (j: JournalData) => boolean): NodeJS.ProcessEnv {
  const hook = path.join(dir, `kill-after-journal-${randomBytes(4).toString('hex')}.mjs`);
  writeFileSync(
    hook,
    `import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
const when = ${when.toString()};
const renameSync = fs.renameSync;
fs.renameSync = (from, to) => {
  renameSync(from, to);
  if (String(to).endsWith('.json') && String(to).includes('/restore/') && when(JSON.parse(fs.readFileSync(to, 'utf8'))))
    process.kill(process.pid, 'SIGKILL');
};
syncBuiltinESMExports();
`,
  );
  return { NODE_OPTIONS: `--import ${pathToFileURL(hook).href}` };
}

describe('tarball store restored into S3; documents with inline attachments; too-large documents', () => {
  let f: Fixture;
  let s3: S3Client;
  before(async () => {
    f = await makeFixture({ packages: 5 });
    s3 = new S3Client(f.s3.clientConfig());
  });
  after(async () => {
    s3.destroy();
    await f.stop();
  });

  test('into an S3 bucket: every tarball, byte for byte, verified', async () => {
    const bucket = await f.s3.createBucket();
    const dest = `s3://${bucket}/restored?endpoint=${encodeURIComponent(f.s3.endpoint)}&forcePathStyle=true`;
    const r = await f.cli(['restore', '--tarballs', dest, '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.equal(rep.databases.length, 0);
    const t = rep.tarballs[0]!;
    assert.ok(t.files > 0);
    assert.match(t.checks[0]!.details![0]!, new RegExp(`^${t.files} by sha1`));
    const keys = (
      (await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'restored/' }))).Contents ?? []
    )
      .map((o) => o.Key!.slice('restored/'.length))
      .sort();
    assert.deepEqual(keys, walk(f.tarballsDir));
    for (const k of keys) {
      const o = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `restored/${k}` }));
      assert.ok(
        Buffer.from(await o.Body!.transformToByteArray()).equals(readFileSync(path.join(f.tarballsDir, k))),
        k,
      );
    }
    const again = await f.cli(['restore', '--tarballs', dest]);
    assert.equal(again.code, 8);
    assert.match(again.stderr, /not empty/);
  });

  test('into S3, killed once the journal has files as written; objects deleted or replaced; run again: each written again', async () => {
    const bucket = await f.s3.createBucket();
    const dest = `s3://${bucket}/restored?endpoint=${encodeURIComponent(f.s3.endpoint)}&forcePathStyle=true`;
    const args = ['restore', '--tarballs', dest, '--parallel', '1', '--json'];
    const r1 = await f.cli(
      args,
      killAfterJournal(f.dir, (j) => j.tarballs?.tarballs?.checkpoint !== undefined),
    );
    assert.equal(r1.signal, 'SIGKILL', r1.stderr);
    const listed = async () =>
      ((await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'restored/' }))).Contents ?? [])
        .map((o) => o.Key!.slice('restored/'.length))
        .sort();
    const before = await listed();
    assert.ok(before.length >= 2, `${before.length} objects after the kill`);
    // One object removed, one replaced by other bytes of its size: a HEAD cannot tell the second one.
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: `restored/${before[0]!}` }));
    const other = readFileSync(path.join(f.tarballsDir, before[1]!));
    other[Math.floor(other.length / 2)]! ^= 0xff;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `restored/${before[1]!}`, Body: other }));
    const r = await f.cli(args);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.equal(rep.resumed, true);
    const t = rep.tarballs[0]!;
    assert.equal(t.checks[0]!.actual, t.planned.files, 'counted on the destination');
    assert.match(t.checks[0]!.details![1]!, /; 2 missing or different there were restored again/);
    const keys = await listed();
    assert.deepEqual(keys, walk(f.tarballsDir));
    for (const k of keys) {
      const o = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `restored/${k}` }));
      assert.ok(
        Buffer.from(await o.Body!.transformToByteArray()).equals(readFileSync(path.join(f.tarballsDir, k))),
        k,
      );
    }
  });

  test('attachments sent inline (base64 JSON) come back the same as with multipart', async () => {
    const r = await f.cli([
      'restore',
      '--couchdb',
      f.dest.url,
      '--db',
      'registry',
      '--attachments',
      'inline',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(
      await databaseState(f.dest.url, 'registry'),
      await databaseState(f.source.url, 'registry'),
    );
  });

  test("a document larger than the destination's max_document_size is named, with the limit; the rest is restored", async () => {
    await couch(f.dest.url, 'DELETE', 'registry');
    await couch(f.dest.url, 'PUT', '_config/couchdb/max_document_size', '"200000"');
    try {
      const r = await f.cli(['restore', '--couchdb', f.dest.url, '--db', 'registry', '--json']);
      assert.equal(r.code, 8, r.stderr + r.stdout);
      const rep = JSON.parse(r.stdout) as RestoreReport;
      const db = rep.databases[0]!;
      const big = db.failures.find((x) => x.id === 'unicode-doc');
      assert.ok(big, JSON.stringify(db.failures));
      assert.match(
        big.message,
        /too large for the destination: the document is [\d,]+ bytes of JSON, the destination's limit \(couchdb\/max_document_size\) is 200,000 bytes/,
      );
      assert.ok(db.docs > 10, 'the other documents are restored');
      const text = await f.cli(['restore', '--couchdb', f.dest.url, '--db', 'registry', '--dry-run']);
      assert.match(text.stdout, /would resume/);
    } finally {
      await couch(f.dest.url, 'PUT', '_config/couchdb/max_document_size', '"4294967296"');
    }
    // Raised: the same command continues, and the document goes in.
    const r2 = await f.cli(['restore', '--couchdb', f.dest.url, '--db', 'registry', '--json']);
    assert.equal(r2.code, 0, r2.stderr + r2.stdout);
    assert.deepEqual(
      await databaseState(f.dest.url, 'registry'),
      await databaseState(f.source.url, 'registry'),
    );
  });
});

describe('hostile names in a tarball listing', () => {
  let t: TestRepo;
  let outside: string;
  let servers: Awaited<ReturnType<typeof startServers<{ s3: true }>>>;

  /** A snapshot whose tarball listing holds `paths` (each file is `content of <path>`). */
  async function snapshotWith(paths: string[]): Promise<string> {
    const entries: { path: string; size: number; mtime: number; sha1: string; data: StreamRef }[] = [];
    for (const p of paths) {
      const data = Buffer.from(`content of ${p}`);
      entries.push({
        path: p,
        size: data.length,
        mtime: 1_700_000_000_000,
        sha1: createHash('sha1').update(data).digest('hex'),
        data: await writeBuffer(t.writer, data, 'bulk'),
      });
    }
    const listing = await writeStream(
      t.writer,
      encodeLines(
        (async function* () {
          yield* entries;
        })(),
      ),
      'tree',
    );
    await t.writer.flush();
    const sealed = await sealSnapshot(
      t.repo,
      newManifest(t.repo, [
        { kind: 'tarballs', name: 'tarballs', location: '/x', files: entries.length, bytes: 0, listing },
      ]),
    );
    for (const s of t.stores) await s.put(sealed.key, sealed.bytes);
    return sealed.id;
  }

  async function restoreInto(
    dir: string,
    snapshot: string,
    force = false,
    workers = 0,
  ): Promise<RestoreReport> {
    const { repo } = await openForRestore({
      targets: t.stores,
      identity: t.keys.restore,
      cacheRoot: path.join(t.dir, 'cache-r'),
    });
    try {
      const { info, store, manifest } = await pickSnapshot(repo, { snapshot });
      return await restoreSnapshot({
        repo,
        snapshot: info,
        manifest,
        metaStore: store,
        tarballs: { dir },
        force,
        workers,
      });
    } finally {
      repo.close();
    }
  }

  before(async () => {
    t = await makeTestRepo();
    outside = await tmpDir();
    servers = await startServers({ s3: true });
  });
  after(async () => {
    await t.close();
    await servers.stop();
  });

  test('"..", absolute paths, NUL and control characters: each named and never written; the other files are restored', async () => {
    const hostile = await snapshotWith([
      'good/-/good-1.0.0.tgz',
      '../../etc/x',
      '/abs/olute.tgz',
      'nul\0byte/-/x.tgz',
      'ctl\u001bx/-/x.tgz',
      `a/../../${path.basename(outside)}/escaped`,
      'we\\ird/-/x-1.0.0.tgz',
    ]);
    const dest = path.join(await tmpDir(), 'dest');
    const rep = await restoreInto(dest, hostile);
    assert.equal(rep.verified, false);
    assert.equal(rep.exitCode, 5);
    const refused = rep.tarballs[0]!.checks.find((c) => /names cannot be restored/.test(c.check))!;
    assert.equal(refused.ok, false);
    assert.equal(refused.actual, 5);
    const details = refused.details!.join('\n');
    assert.match(details, /"\.\.\/\.\.\/etc\/x" \(has a "\.\." segment\)/);
    assert.match(details, /"\/abs\/olute\.tgz" \(is absolute\)/);
    assert.match(details, /"nul\\u0000byte\/-\/x\.tgz" \(contains a NUL byte\)/);
    assert.match(details, /"ctl\\u001bx\/-\/x\.tgz" \(contains a control character\)/);
    assert.equal(
      readFileSync(path.join(dest, 'good', '-', 'good-1.0.0.tgz'), 'utf8'),
      'content of good/-/good-1.0.0.tgz',
    );
    assert.equal(
      readFileSync(path.join(dest, 'we\\ird', '-', 'x-1.0.0.tgz'), 'utf8'),
      'content of we\\ird/-/x-1.0.0.tgz',
    );
    assert.deepEqual(walk(dest), ['good/-/good-1.0.0.tgz', 'we\\ird/-/x-1.0.0.tgz']);
    assert.deepEqual(readdirSync(outside), []);
    // Run again: the refused names are reported again (never taken as done), the rest is in place.
    const again = await restoreInto(dest, hostile);
    assert.equal(again.exitCode, 5);
    assert.equal(again.tarballs[0]!.checks.find((c) => /names cannot be restored/.test(c.check))!.actual, 5);
  });

  for (const workers of [0, 2]) {
    test(`a symbolic link planted in the destination is never followed; the file is refused, named (${workers ? 'worker threads write' : 'one thread writes'})`, async () => {
      const id = await snapshotWith([
        'evil/-/evil-1.0.0.tgz',
        'good/-/good-1.0.0.tgz',
        'linked/-/linked-1.0.0.tgz',
      ]);
      const dest = path.join(await tmpDir(), 'dest');
      mkdirSync(path.join(dest, 'linked', '-'), { recursive: true });
      mkdirSync(path.join(dest, 'good', '-'), { recursive: true });
      symlinkSync(outside, path.join(dest, 'evil')); // a directory on the way is a link out
      writeFileSync(path.join(outside, 'target'), 'do not touch');
      symlinkSync(path.join(outside, 'target'), path.join(dest, 'linked', '-', 'linked-1.0.0.tgz')); // the file itself
      symlinkSync(path.join(outside, 'tmp-target'), path.join(dest, 'good', '-', '.good-1.0.0.tgz.rbtmp')); // its temporary name
      const rep = await restoreInto(dest, id, true, workers);
      assert.equal(rep.verified, false);
      assert.equal(rep.exitCode, 8);
      const tb = rep.tarballs[0]!;
      assert.equal(tb.failures.length, 1);
      assert.match(
        tb.failures[0]!.message,
        /"evil\/-\/evil-1\.0\.0\.tgz": evil in the destination is a symbolic link; refusing to follow it/,
      );
      assert.deepEqual(readdirSync(outside).sort(), ['target']);
      assert.equal(readFileSync(path.join(outside, 'target'), 'utf8'), 'do not touch');
      // The link at the file's name was replaced by the restored file; the planted temporary link is gone.
      assert.ok(lstatSync(path.join(dest, 'linked', '-', 'linked-1.0.0.tgz')).isFile());
      assert.equal(
        readFileSync(path.join(dest, 'good', '-', 'good-1.0.0.tgz'), 'utf8'),
        'content of good/-/good-1.0.0.tgz',
      );
      assert.equal(existsSync(path.join(dest, 'good', '-', '.good-1.0.0.tgz.rbtmp')), false);
      void DestinationError;
    });
  }

  test('an S3 destination refuses a name that cannot be an object key', async () => {
    const id = await snapshotWith(['ok/-/ok-1.0.0.tgz', 'spaced name/-/x.tgz']);
    const { repo } = await openForRestore({
      targets: t.stores,
      identity: t.keys.restore,
      cacheRoot: path.join(t.dir, 'cache-r'),
    });
    try {
      const bucket = await servers.s3.createBucket();
      const { openTarballDestination } = await import('../../restore/index.js');
      process.env.AWS_ACCESS_KEY_ID ??= 'S3RVER';
      process.env.AWS_SECRET_ACCESS_KEY ??= 'S3RVER';
      const dest = openTarballDestination(
        `s3://${bucket}/p?endpoint=${encodeURIComponent(servers.s3.endpoint)}&forcePathStyle=true`,
      );
      const { info, store, manifest } = await pickSnapshot(repo, { snapshot: id });
      const rep = await restoreSnapshot({
        repo,
        snapshot: info,
        manifest,
        metaStore: store,
        tarballs: dest,
        workers: 0,
      });
      assert.equal(rep.tarballs[0]!.files, 1);
      assert.match(rep.tarballs[0]!.failures[0]!.message, /"spaced name\/-\/x\.tgz" cannot be an object key/);
      assert.equal(rep.exitCode, 8);
    } finally {
      repo.close();
    }
    void Repository;
  });
});

describe('the fast path: local target, worker threads write the files', () => {
  let t: TestRepo;
  let files: Map<string, Buffer>;
  let snapshot: string;

  before(async () => {
    const dir = await tmpDir();
    t = await makeTestRepo({
      stores: [
        new FsStore({ name: 'one', root: path.join(dir, 'one') }),
        new FsStore({ name: 'two', root: path.join(dir, 'two') }),
      ],
    });
    files = new Map();
    for (let i = 0; i < 40; i++)
      files.set(`pkg${i}/-/pkg${i}-1.0.${i}.tgz`, randomBytes(i % 10 === 0 ? 2_500_000 + i : 1000 + i * 997));
    files.set('@scope/big/-/big-2.0.0.tgz', randomBytes(5 * 1024 * 1024 + 7));
    const entries: { path: string; size: number; mtime: number; sha1: string; data: StreamRef }[] = [];
    for (const [p, data] of [...files].sort((a, b) =>
      a[0].replaceAll('/', '\0') < b[0].replaceAll('/', '\0') ? -1 : 1,
    )) {
      entries.push({
        path: p,
        size: data.length,
        mtime: 1_700_000_000_123,
        sha1: createHash('sha1').update(data).digest('hex'),
        data: await writeBuffer(t.writer, data, 'bulk'),
      });
    }
    const listing = await writeStream(
      t.writer,
      encodeLines(
        (async function* () {
          yield* entries;
        })(),
      ),
      'tree',
    );
    await t.writer.flush();
    const sealed = await sealSnapshot(
      t.repo,
      newManifest(t.repo, [
        { kind: 'tarballs', name: 'tarballs', location: '/x', files: entries.length, bytes: 0, listing },
      ]),
    );
    for (const s of t.stores) await s.put(sealed.key, sealed.bytes);
    snapshot = sealed.id;
  });
  after(() => t.close());

  async function restore(
    dir: string,
    extra: Partial<Parameters<typeof restoreSnapshot>[0]> = {},
  ): Promise<RestoreReport> {
    const { repo } = await openForRestore({
      targets: t.stores,
      identity: t.keys.restore,
      cacheRoot: path.join(t.dir, 'cache-fast'), // the resume journal lives there
    });
    try {
      const { info, store, manifest } = await pickSnapshot(repo, { snapshot });
      return await restoreSnapshot({
        repo,
        snapshot: info,
        manifest,
        metaStore: store,
        tarballs: { dir },
        workers: 2,
        ...extra,
      });
    } finally {
      repo.close();
    }
  }

  test('every file byte for byte, sha1-verified, with its mtime; no temporary file left', async () => {
    const dest = path.join(await tmpDir(), 'dest');
    const rep = await restore(dest);
    assert.equal(rep.verified, true);
    assert.equal(rep.tarballs[0]!.files, files.size);
    assert.match(rep.tarballs[0]!.checks[0]!.details![0]!, new RegExp(`^${files.size} by sha1`));
    assert.deepEqual(walk(dest), [...files.keys()].sort());
    for (const [p, data] of files) {
      assert.ok(readFileSync(path.join(dest, p)).equals(data), p);
      assert.equal(Math.floor(statSync(path.join(dest, p)).mtimeMs), 1_700_000_000_123);
    }
  });

  test('a pack corrupt on the local target: those files come from the other target, reported', async () => {
    const dataDir = path.join((t.stores[0] as FsStore).location.slice('file://'.length), 'data');
    const pack = walk(dataDir)[0]!;
    const file = path.join(dataDir, pack);
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length * 0.3)]! ^= 0xff; // inside blob data (the end of a pack is its trailer)
    // A new file renamed over it: the two targets' packs may be hard links to one file (FsStore links spooled packs).
    writeFileSync(`${file}.new`, bytes);
    renameSync(`${file}.new`, file);
    const dest = path.join(await tmpDir(), 'dest');
    const rep = await restore(dest);
    assert.equal(rep.verified, true, JSON.stringify(rep.tarballs[0]!.checks));
    assert.ok(rep.targets.fallbackCount > 0);
    assert.deepEqual([rep.targets.fallbacks[0]!.from, rep.targets.fallbacks[0]!.to], ['one', 'two']);
    for (const [p, data] of files) assert.ok(readFileSync(path.join(dest, p)).equals(data), p);
  });

  /** A restore into `dest` stopped (as by Ctrl-C) once `files` files are written; its journal stays. */
  async function interruptedAt(dest: string, files: number): Promise<void> {
    const ac = new AbortController();
    const progress = new Progress();
    let n = 0;
    Object.defineProperty(progress, 'files', {
      get: () => n,
      set: (v: number) => {
        n = v;
        if (v >= files) ac.abort();
      },
    });
    await assert.rejects(
      restore(dest, { signal: ac.signal, progress }),
      (err: unknown) => err instanceof InterruptedError,
    );
  }

  /** The resume journal of the restores above (the only one in their cache). */
  function journalOf(): JournalData {
    const dir = path.join(t.dir, 'cache-fast');
    const found = walk(dir).filter((p) => /\/restore\/[0-9a-f]+\.json$/.test(p));
    assert.equal(found.length, 1, `one journal: ${found.join(', ')}`);
    return JSON.parse(readFileSync(path.join(dir, found[0]!), 'utf8')) as JournalData;
  }

  function assertAllRestored(dest: string, rep: RestoreReport): void {
    const tb = rep.tarballs[0]!;
    assert.equal(rep.verified, true, JSON.stringify(tb.checks));
    assert.equal(tb.checks[0]!.expected, files.size);
    assert.equal(tb.checks[0]!.actual, files.size, 'counted on the destination');
    assert.equal(tb.files + tb.skipped, files.size, 'each file either written or found in place');
    assert.deepEqual(walk(dest), [...files.keys()].sort());
    for (const [p, data] of files) assert.ok(readFileSync(path.join(dest, p)).equals(data), p);
  }

  test('stopped part-way (SIGINT), started again: continues, and ends with the same files', async () => {
    const dest = path.join(await tmpDir(), 'dest');
    await interruptedAt(dest, 10);
    // Files of jobs already handed to the worker threads may be in place too: each one whole (or not there).
    const partial = walk(dest).filter((p) => !p.endsWith('.rbtmp'));
    assert.ok(partial.length >= 10, `${partial.length} files after the stop`);
    for (const p of partial) assert.ok(readFileSync(path.join(dest, p)).equals(files.get(p)!), p);
    const rep = await restore(dest);
    assert.equal(rep.resumed, true);
    const tb = rep.tarballs[0]!;
    assert.notEqual(tb.resumedAfter, undefined, 'the stop left a checkpoint');
    assert.ok(tb.skipped >= 10, `what was done is not done again (${tb.skipped} in place)`);
    assert.ok(tb.files <= files.size - 10, `${tb.files} written again`);
    assertAllRestored(dest, rep);
  });

  test('stopped, destination removed, started again: every file is restored again, and counted there', async () => {
    const dest = path.join(await tmpDir(), 'dest');
    await interruptedAt(dest, 10);
    assert.ok(journalOf().tarballs.tarballs?.checkpoint, 'the journal has files as done');
    rmSync(dest, { recursive: true, force: true });
    const rep = await restore(dest);
    assert.equal(rep.resumed, true);
    assert.equal(rep.tarballs[0]!.files, files.size, 'every file written again');
    assert.match(rep.tarballs[0]!.checks[0]!.details![1]!, /missing or different there were restored again/);
    assertAllRestored(dest, rep);
  });

  test('stopped; files the journal has as done deleted, truncated, replaced: each restored again', async () => {
    const dest = path.join(await tmpDir(), 'dest');
    await interruptedAt(dest, 10);
    const { checkpoint } = journalOf().tarballs.tarballs!;
    const inPlace = walk(dest).filter((p) => !p.endsWith('.rbtmp'));
    const done = inPlace.filter((p) => comparePaths(p, checkpoint!) <= 0);
    assert.ok(done.length >= 3, `${done.length} files before the checkpoint`);
    const [gone, truncated, replaced] = done;
    rmSync(path.join(dest, gone!));
    truncateSync(path.join(dest, truncated!), 100);
    sameSizeOtherBytes(path.join(dest, replaced!));
    const rep = await restore(dest);
    assert.equal(rep.resumed, true);
    assert.equal(
      rep.tarballs[0]!.files,
      files.size - inPlace.length + 3,
      'the three and those not yet written',
    );
    assert.match(
      rep.tarballs[0]!.checks[0]!.details![1]!,
      / 3 missing or different there were restored again/,
    );
    assertAllRestored(dest, rep);
  });

  test('stopped in the final check (journal: all done); a file replaced by other bytes of its size: restored again', async () => {
    const dest = path.join(await tmpDir(), 'dest');
    const ac = new AbortController();
    const progress = new Progress();
    let phase = '';
    Object.defineProperty(progress, 'phase', {
      get: () => phase,
      set: (v: string) => {
        phase = v;
        if (v.startsWith('verify')) ac.abort(); // every file is written: the journal says done
      },
    });
    await assert.rejects(
      restore(dest, { signal: ac.signal, progress }),
      (err: unknown) => err instanceof InterruptedError,
    );
    assert.equal(journalOf().tarballs.tarballs?.done, true);
    const victim = [...files.keys()].sort()[5]!;
    sameSizeOtherBytes(path.join(dest, victim));
    const rep = await restore(dest);
    assert.equal(rep.resumed, true);
    const tb = rep.tarballs[0]!;
    assert.equal(tb.files, 1, 'only the replaced file is written again');
    assert.equal(tb.skipped, files.size - 1);
    assert.match(
      tb.checks[0]!.details![1]!,
      new RegExp(
        `^${files.size} files the interrupted restore had written read back from the destination; 1 missing or different`,
      ),
    );
    assertAllRestored(dest, rep);
  });
});

/** Other bytes of the same size, and the same mtime: only reading the content tells them apart. */
function sameSizeOtherBytes(file: string): void {
  const st = statSync(file);
  const bytes = readFileSync(file);
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  writeFileSync(file, bytes);
  utimesSync(file, st.atime, st.mtime);
}
