import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import tar from 'tar-stream';
import { encodeLines, readListing } from '../../../src/repo/format/listing.js';
import type { TarballSourceSnapshot } from '../../../src/repo/format/source-snapshots.js';
import { IntegrityError } from '../../../src/errors.js';
import { createLogger } from '../../../src/log.js';
import { checkTarget } from '../../../src/maintenance/check.js';
import { checkName, decodeName, nameProblem, RefusedName, showName } from '../../../src/repo/names.js';
import { newManifest, sealSnapshot } from '../../../src/repo/snapshot.js';
import { writeBuffer, writeStream, type StreamRef } from '../../../src/repo/stream-ref.js';
import { backupTarballSource } from '../../../src/sources/tarballs/source.js';
import { checkEntry, type TarballEntry } from '../../../src/repo/format/tarball-listing.js';
import { walkTreeHere } from '../../../src/sources/tarballs/walk.js';
import { comparePaths } from '../../../src/repo/format/order.js';
import { dumpSnapshot, openForRestore, pickSnapshot } from '../../../restore/index.js';
import { pathProblem } from '../../../restore/safe-path.js';
import { startServers, tmpDir } from '../../harness/index.js';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { makeTestRepo, type TestRepo } from '../../helpers/repo.js';
import { runCli } from '../../helpers/cli.js';

/**
 * The name rule (src/repo/names.ts): which names a snapshot can hold. An independent statement of the rule
 * (docs/FORMAT.md §12.2), written from the bytes, is the oracle of the property tests below.
 */
function refusedByDocs(bytes: Buffer): boolean {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return true; // not UTF-8
  }
  if (/\p{Cc}/u.test(text)) return true; // NUL and every control character
  if (bytes.length > 4096) return true;
  return text.split('/').some((seg) => {
    const n = Buffer.byteLength(seg);
    return (
      n === 0 ||
      seg === '.' ||
      seg === '..' ||
      n > 255 ||
      /^\..+\.rbtmp$/.test(seg) ||
      /^\.rbtmp-[0-9a-f]{40}$/.test(seg)
    );
  });
}

/** Printable on a terminal: no control character, no lone surrogate. */
function assertPrintable(s: string): void {
  assert.doesNotMatch(s, /\p{Cc}/u, s);
  assert.ok(Buffer.from(s, 'utf8').toString('utf8') === s, `lone surrogate in ${JSON.stringify(s)}`);
}

const segment = fc.oneof(
  fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)),
  fc.string({ unit: 'grapheme', maxLength: 8 }).map((s) => Buffer.from(s)),
  fc
    .constantFrom('', '.', '..', '\\', ' ', 'a b', '.x.rbtmp', '\u0085', '\u00a0', '\ufeff', '😀')
    .map((s) => Buffer.from(s)),
  fc.integer({ min: 200, max: 300 }).map((n) => Buffer.alloc(n, 0x61)),
);
const join = (segs: Buffer[]) => Buffer.concat(segs.flatMap((s, i) => (i ? [Buffer.from('/'), s] : [s])));
const bytePath = fc.array(segment, { minLength: 1, maxLength: 4 }).map(join);

describe('the name rule (pure)', () => {
  test('any byte string: accepted exactly when the documented rule says so; an accepted name is its bytes, safe under any root; the destination check is the same function', () => {
    fc.assert(
      fc.property(bytePath, (bytes) => {
        const d = decodeName(bytes);
        const refused = refusedByDocs(bytes);
        assertPrintable(showName(bytes));
        if ('problem' in d) {
          assert.ok(refused);
          assert.equal(d.problem, 'is not valid UTF-8');
          return;
        }
        const name = d.name;
        assert.ok(Buffer.from(name, 'utf8').equals(bytes), 'the string is the bytes');
        const problem = nameProblem(name);
        assert.equal(pathProblem(name), problem, 'restore/safe-path.ts accepts exactly the same names');
        assert.equal(problem !== undefined, refused, `${showName(name)}: ${problem ?? 'accepted'}`);
        assertPrintable(showName(name));
        if (problem !== undefined) {
          assert.throws(() => checkName(name), RefusedName);
          return;
        }
        // A listing line holds it exactly; under a destination root it names a file inside the root.
        assert.equal((JSON.parse(JSON.stringify({ path: name })) as { path: string }).path, name);
        const abs = path.join('/dest', name);
        assert.equal(path.relative('/dest', abs), name);
        assert.ok(abs.startsWith('/dest/'));
      }),
      { numRuns: 3000 },
    );
  });

  test('any JS string (lone surrogates too): accepted only if it is valid UTF-8 and the rule holds', () => {
    const unit = fc.oneof(
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
      fc.constantFrom('/', '.', '\\', '\0'),
    );
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 20 }), (s) => {
        const problem = nameProblem(s);
        assertPrintable(showName(s));
        const bytes = Buffer.from(s, 'utf8');
        const faithful = bytes.toString('utf8') === s;
        if (!faithful) assert.equal(problem, 'is not valid UTF-8');
        else
          assert.equal(
            problem !== undefined,
            refusedByDocs(bytes),
            `${showName(s)}: ${problem ?? 'accepted'}`,
          );
      }),
      { numRuns: 3000 },
    );
  });

  test('a refused name is shown escaped: quotes, backslashes, control characters, bytes that are not UTF-8', () => {
    assert.equal(showName(Buffer.from([0x62, 0x61, 0x64, 0xff, 0x2f, 0x78])), '"bad\\xff/x"');
    assert.equal(showName('a\u0001b\nc"d\\e\u009bf'), '"a\\u0001b\\nc\\"d\\\\e\\u009bf"');
    assert.equal(showName('x\ud800y'), '"x\\ud800y"');
    assert.equal(showName('😀 ü'), '"😀 ü"');
  });
});

/** A snapshot whose tarball listing holds exactly `paths` (written as an older version could have). */
async function snapshotWith(
  t: TestRepo,
  paths: unknown[],
  opts: { wrongSize?: string } = {},
): Promise<{ id: string; source: TarballSourceSnapshot }> {
  const entries: Record<string, unknown>[] = [];
  for (const p of paths) {
    const data = Buffer.from(`content of ${String(p)}`);
    const ref: StreamRef = await writeBuffer(t.writer, data, 'bulk');
    const size = p === opts.wrongSize ? data.length + 1 : data.length;
    entries.push({ path: p, size, mtime: 1_700_000_000_000, data: ref });
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
  const source: TarballSourceSnapshot = {
    kind: 'tarballs',
    name: 'tarballs',
    location: '/x',
    files: entries.length,
    bytes: 0,
    listing,
  } as TarballSourceSnapshot;
  const sealed = await sealSnapshot(t.repo, newManifest(t.repo, [source]));
  for (const s of t.stores) await s.put(sealed.key, sealed.bytes);
  return { id: sealed.id, source };
}

async function listed(t: TestRepo, snap: TarballSourceSnapshot): Promise<TarballEntry[]> {
  const out: TarballEntry[] = [];
  for await (const e of readListing(t.reader, snap.listing, checkEntry, 'test')) out.push(e);
  return out;
}

const cfg = (p: string) => ({ name: 'tarballs', path: p, verify: true });
const bytesPath = (root: string, rel: Buffer) => Buffer.concat([Buffer.from(`${root}/`), rel]);

/** Creates file `rel` (bytes) under root, with its directories. */
function put(root: string, rel: Buffer, data: string): void {
  const slash = rel.lastIndexOf(0x2f);
  if (slash > 0) mkdirSync(bytesPath(root, rel.subarray(0, slash)), { recursive: true });
  writeFileSync(bytesPath(root, rel), data);
}

describe('the name rule in a backup and in the readers of listings', () => {
  let t: TestRepo;
  before(async () => {
    t = await makeTestRepo();
  });
  after(() => t.close());

  test('the walker: a name that is not UTF-8 or holds a control character is reported (escaped, the right reason) and not stored; backslash and spaces are stored', async (tt) => {
    const root = await tmpDir(tt);
    put(root, Buffer.from('good/-/good-1.0.0.tgz'), 'good');
    put(root, Buffer.from('we\\ird/-/x-1.0.0.tgz'), 'weird');
    put(root, Buffer.from('sp ace/-/x-1.0.0.tgz'), 'space');
    put(
      root,
      Buffer.from([0x62, 0x61, 0x64, 0xff, 0x2f, 0x2d, 0x2f, 0x62, 0x2e, 0x74, 0x67, 0x7a]),
      'bad dir',
    ); // bad\xff/-/b.tgz
    put(
      root,
      Buffer.concat([Buffer.from('good/-/'), Buffer.from([0xc3, 0x28]), Buffer.from('.tgz')]),
      'bad file',
    );
    put(root, Buffer.from('ctl\u0001x/-/c.tgz'), 'control');
    put(root, Buffer.from('good/-/.good-1.0.0.tgz.rbtmp'), 'looks like a temporary file');
    const r = await backupTarballSource(cfg(root), t.ctx());
    await t.nextRun();
    const refused = r.findings.filter((f) => f.code === 'tarball-name-refused');
    assert.deepEqual(refused.map((f) => f.object).sort(), [
      '"bad\\xff"',
      '"ctl\\u0001x"',
      '"good/-/.good-1.0.0.tgz.rbtmp"',
      '"good/-/\\xc3(.tgz"',
    ]);
    for (const f of refused) {
      assert.equal(f.severity, 'error', 'the run is partial');
      assertPrintable(f.message);
    }
    assert.match(
      refused.find((f) => f.object === '"bad\\xff"')!.message,
      /is not valid UTF-8.*with everything under it/,
    );
    assert.match(refused.find((f) => f.object === '"good/-/\\xc3(.tgz"')!.message, /is not valid UTF-8/);
    assert.match(refused.find((f) => f.object === '"ctl\\u0001x"')!.message, /contains a control character/);
    assert.equal(
      r.findings.some((f) => /disappeared/.test(f.message)),
      false,
      'not "disappeared while being read"',
    );
    assert.equal(r.stats.refused, 4);
    assert.deepEqual(
      (await listed(t, r.snapshot)).map((e) => e.path),
      ['good/-/good-1.0.0.tgz', 'sp ace/-/x-1.0.0.tgz', 'we\\ird/-/x-1.0.0.tgz'],
    );
    // The next backup reads that listing back without a problem.
    const again = await backupTarballSource(cfg(root), t.ctx(r.snapshot));
    await t.nextRun();
    assert.equal(again.stats.reused, 3);
    assert.equal(again.stats.refused, 4);
  });

  test('the S3 walker applies the same rule: a key it cannot hold is reported, the others are stored', async () => {
    const servers = await startServers({ s3: true });
    try {
      const bucket = await servers.s3.createBucket();
      const client = new S3Client(servers.s3.clientConfig());
      const keys = [
        'good/-/good-1.0.0.tgz',
        'we\\ird/-/x.tgz',
        'sp ace/-/s.tgz',
        'del\u007fx/-/d.tgz',
        'c1\u0085x/-/e.tgz',
        'ünï/-/u.tgz',
      ];
      for (const k of keys)
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `src/${k}`, Body: `content of ${k}` }));
      client.destroy();
      const r = await backupTarballSource(
        {
          name: 'tarballs',
          verify: true,
          s3: {
            bucket,
            prefix: 'src/',
            region: servers.s3.region,
            endpoint: servers.s3.endpoint,
            forcePathStyle: true,
            credentials: servers.s3.credentials,
          },
        },
        t.ctx(),
      );
      await t.nextRun();
      const refused = r.findings.filter((f) => f.code === 'tarball-name-refused');
      assert.deepEqual(refused.map((f) => [f.object, f.severity]).sort(), [
        ['"c1\\u0085x/-/e.tgz"', 'error'],
        ['"del\\u007fx/-/d.tgz"', 'error'],
      ]);
      assert.deepEqual(
        (await listed(t, r.snapshot)).map((e) => e.path),
        ['good/-/good-1.0.0.tgz', 'sp ace/-/s.tgz', 'we\\ird/-/x.tgz', 'ünï/-/u.tgz'],
      );
    } finally {
      await servers.stop();
    }
  });

  test('a previous listing holding names the rule refuses (an older version wrote them) does not block the next backup: reported, not carried over', async (tt) => {
    const old = await snapshotWith(t, [
      '../escape',
      'ctl\u0001x/-/c.tgz',
      'good/-/good-1.0.0.tgz',
      'nul\0/-/n.tgz',
      42,
    ]);
    await t.nextRun();
    const root = await tmpDir(tt);
    put(root, Buffer.from('good/-/good-1.0.0.tgz'), 'good');
    const r = await backupTarballSource(cfg(root), t.ctx(old.source));
    await t.nextRun();
    const refused = r.findings.filter((f) => f.code === 'tarball-name-refused');
    assert.deepEqual(
      refused.map((f) => f.object),
      ['"../escape"', '"ctl\\u0001x/-/c.tgz"', '"nul\\u0000/-/n.tgz"', '(not a name: number)'],
    );
    for (const f of refused) assert.equal(f.severity, 'warning');
    assert.deepEqual(
      (await listed(t, r.snapshot)).map((e) => e.path),
      ['good/-/good-1.0.0.tgz'],
    );
  });

  test('check reads a listing with refused names without an internal error: names each (the snapshot is not wholly restorable); their data is still referenced', async () => {
    const { id } = await snapshotWith(t, ['../escape', 'ctl\u0001x/-/c.tgz', 'good/-/good-1.0.0.tgz']);
    await t.nextRun();
    const r = await checkTarget(t.repo, t.stores[0]!, { logger: createLogger({ level: 'silent' }) });
    const mine = r.problems.filter((p) => p.object.startsWith(`snapshot ${id.slice(0, 12)}`));
    assert.deepEqual(
      mine.map((p) => [p.kind, p.message]),
      [
        [
          'refused-name',
          `snapshot ${id.slice(0, 12)} tarballs lists "../escape", a name a restore refuses (it has a ".." segment): every other file restores, not this one`,
        ],
        [
          'refused-name',
          `snapshot ${id.slice(0, 12)} tarballs lists "ctl\\u0001x/-/c.tgz", a name a restore refuses (it contains a control character): every other file restores, not this one`,
        ],
      ],
    );
    assert.deepEqual(
      r.problems.filter((p) => p.kind !== 'refused-name'),
      [],
      'nothing else: every blob of every entry is referenced and present',
    );
  });

  test('dump writes every other file into the archive, then fails naming each refused name', async () => {
    const { id } = await snapshotWith(t, ['ctl\u001bx/-/c.tgz', 'good/-/good-1.0.0.tgz', 'we\\ird/-/w.tgz']);
    await t.nextRun();
    const { repo } = await openForRestore({
      targets: t.stores,
      identity: t.keys.restore,
      cacheRoot: path.join(t.dir, 'cache-dump'),
    });
    try {
      const { info, store, manifest } = await pickSnapshot(repo, { snapshot: id });
      const out = new PassThrough();
      const extract = tar.extract();
      const files = new Map<string, string>();
      extract.on('entry', (h, stream, next) => {
        const parts: Buffer[] = [];
        stream.on('data', (b: unknown) => parts.push(b as Buffer));
        stream.on('end', () => {
          files.set(h.name, Buffer.concat(parts).toString());
          next();
        });
      });
      const extracted = new Promise<void>((r) => extract.on('finish', () => r()));
      out.pipe(extract);
      await assert.rejects(
        dumpSnapshot({ repo, snapshot: info, manifest, metaStore: store, only: { tarballs: true }, out }),
        (err: unknown) => {
          assert.ok(err instanceof IntegrityError, String(err));
          assert.match(err.message, /"ctl\\u001bx\/-\/c\.tgz" \(contains a control character\)/);
          assert.match(err.message, /holds everything else/);
          assertPrintable(err.message);
          return true;
        },
      );
      out.end();
      await extracted;
      assert.equal(files.get('tarballs/good/-/good-1.0.0.tgz'), 'content of good/-/good-1.0.0.tgz');
      assert.equal(files.get('tarballs/we\\ird/-/w.tgz'), 'content of we\\ird/-/w.tgz');
      assert.equal([...files.keys()].filter((k) => k.startsWith('tarballs/')).length, 2);
    } finally {
      repo.close();
    }
  });

  test('dump stopped by a malformed listing entry: one error naming it, no unhandled rejection (no stack trace)', async () => {
    const { id } = await snapshotWith(t, ['a/-/a.tgz', 'b/-/b.tgz'], { wrongSize: 'b/-/b.tgz' });
    await t.nextRun();
    const { repo } = await openForRestore({
      targets: t.stores,
      identity: t.keys.restore,
      cacheRoot: path.join(t.dir, 'cache-dump2'),
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown) => unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      const { info, store, manifest } = await pickSnapshot(repo, { snapshot: id });
      const out = new PassThrough();
      out.resume();
      await assert.rejects(
        dumpSnapshot({ repo, snapshot: info, manifest, metaStore: store, only: { tarballs: true }, out }),
        (err: unknown) =>
          err instanceof IntegrityError && /line 2 of the listing.*"b\/-\/b\.tgz"/.test(err.message),
      );
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      repo.close();
    }
  });
});

/** Every file under `dir`, names as bytes ("/"-separated, relative). */
function filesAsBytes(dir: Buffer, rel: Buffer = Buffer.alloc(0)): Buffer[] {
  const out: Buffer[] = [];
  const here = rel.length ? Buffer.concat([dir, Buffer.from('/'), rel]) : dir;
  for (const e of readdirSync(here, { withFileTypes: true, encoding: 'buffer' })) {
    const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), e.name]) : e.name;
    if (e.isDirectory()) out.push(...filesAsBytes(dir, r));
    else out.push(r);
  }
  return out;
}

describe('the walker in a huge directory (names sorted through run files)', () => {
  test('more than 50,000 entries: names that are not UTF-8 or hold a newline are reported; the rest in listing order', async (tt) => {
    const root = await tmpDir(tt);
    const names: string[] = [];
    for (let i = 0; i < 50_010; i++) names.push(`p${(i * 7919) % 50_010}`);
    names.push('we\\ird', 'sp ace', 'ü');
    for (const n of names) writeFileSync(path.join(root, n), '');
    writeFileSync(path.join(root, 'new\nline'), '');
    writeFileSync(bytesPath(root, Buffer.from([0x62, 0xff])), '');
    const files: string[] = [];
    const problems: string[] = [];
    for await (const e of walkTreeHere(root, root)) {
      if (e.kind === 'file') files.push(e.path);
      else problems.push(`${e.path} ${e.problem}`);
    }
    assert.deepEqual(files, [...names].sort(comparePaths));
    assert.deepEqual(problems.sort(), [
      '"b\\xff" is not valid UTF-8: a name a snapshot cannot hold; skipped',
      '"new\\nline" contains a control character: a name a snapshot cannot hold; skipped',
    ]);
  });
});

describe('the name rule, property-based, through the real binary', () => {
  /** A segment a Linux file name can hold: any bytes but "/" and NUL, not "." or "..". */
  const fsSegment = fc
    .oneof(
      { weight: 3, arbitrary: fc.uint8Array({ min: 1, max: 255, minLength: 1, maxLength: 24 }) },
      {
        weight: 2,
        arbitrary: fc
          .string({ unit: 'grapheme', minLength: 1, maxLength: 10 })
          .map((t) => new Uint8Array(Buffer.from(t))),
      },
      {
        weight: 1,
        arbitrary: fc
          .constantFrom(
            '\\',
            ' ',
            'a b',
            '\ufeffbom',
            '😀',
            'x\u0085',
            '.x.rbtmp',
            'a\nb',
            '\u007f',
            'ü',
            '-',
          )
          .map((s) => new Uint8Array(Buffer.from(s))),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom([0xff], [0xc3, 0x28], [0xed, 0xa0, 0x80]).map((b) => new Uint8Array(b)),
      },
    )
    .map((b) => Buffer.from(b.map((x) => (x === 0x2f ? 0x5f : x))))
    .filter((b) => b.toString('latin1') !== '.' && b.toString('latin1') !== '..');
  const fsPath = fc.array(fsSegment, { minLength: 1, maxLength: 3 }).map(join);

  test('~50 generated names in one store: each either comes back byte for byte from backup -> restore, or is named by the backup; none blocks another', async (tt) => {
    const seed = Number(process.env.NAMES_SEED ?? Date.now() % 2 ** 31);
    const dir = await tmpDir(tt);
    const root = path.join(dir, 'store');
    mkdirSync(root);
    const created = new Map<string, Buffer>(); // hex of the name -> name
    const names = [Buffer.from('good/-/good-1.0.0.tgz'), ...fc.sample(fsPath, { numRuns: 50, seed })];
    for (const rel of names) {
      try {
        const slash = rel.lastIndexOf(0x2f);
        if (slash > 0) mkdirSync(bytesPath(root, rel.subarray(0, slash)), { recursive: true });
        writeFileSync(bytesPath(root, rel), `content of ${rel.toString('hex')}`, { flag: 'wx' });
        created.set(rel.toString('hex'), rel);
      } catch {
        // a file where a directory should be, or the name twice: a file system cannot hold both
      }
    }
    const yaml = `keys: ./keys/worker.key\nidentity: ./keys/restore.key\ncache: ./cache\nsources:\n  tarballs:\n    - name: tarballs\n      path: ./store\ntargets:\n  - name: one\n    type: fs\n    path: ./target\n`;
    writeFileSync(path.join(dir, 'regbackup.yaml'), yaml);
    const env = { REGBACKUP_CONFIG: path.join(dir, 'regbackup.yaml'), REGBACKUP_LOG_LEVEL: 'warn' };
    const why = `(seed ${seed}: NAMES_SEED=${seed} reproduces)`;
    for (const args of [['keys', 'generate', '--out', path.join(dir, 'keys')], ['init']]) {
      const r = await runCli(args, { env });
      assert.equal(r.code, 0, r.stderr);
    }
    const refused = [...created.values()].filter(refusedByDocs);
    const accepted = [...created.values()].filter((n) => !refusedByDocs(n));
    for (let run = 1; run <= 2; run++) {
      const b = await runCli(['backup', '--json'], { env });
      assert.equal(b.code, refused.length ? 6 : 0, `backup ${run} ${why}: ${b.stderr}`);
      const findings = (JSON.parse(b.stdout) as { findings: { code: string; object?: string }[] }).findings;
      assert.deepEqual(
        findings.filter((x) => x.code !== 'tarball-name-refused'),
        [],
        `backup ${run}: nothing but refused names is reported ${why}`,
      );
      const objects = new Set(findings.map((x) => x.object));
      // Each refused file is named: itself, or the directory on its way that is refused.
      for (const n of refused) {
        const prefixes = [...n.keys()].filter((i) => n[i] === 0x2f).map((i) => n.subarray(0, i));
        assert.ok(
          [...prefixes, n].some((p) => objects.has(showName(p))),
          `${showName(n)} is reported ${why}`,
        );
      }
      // And nothing else is.
      const shownRefused = new Set(
        refused.flatMap((n) =>
          [...n.keys(), n.length]
            .filter((i) => i === n.length || n[i] === 0x2f)
            .map((i) => showName(n.subarray(0, i))),
        ),
      );
      for (const o of objects) assert.ok(shownRefused.has(o!), `reported ${o} ${why}`);
    }
    const dest = path.join(dir, 'restored');
    const r = await runCli(['restore', '--tarballs', dest], { env });
    assert.equal(r.code, 0, `restore ${why}: ${r.stdout} ${r.stderr}`);
    const back = filesAsBytes(Buffer.from(dest));
    assert.deepEqual(
      back.map((n) => n.toString('hex')).sort(),
      accepted.map((n) => n.toString('hex')).sort(),
      `every accepted name, and only those, restored ${why}`,
    );
    for (const n of back)
      assert.equal(readFileSync(bytesPath(dest, n), 'utf8'), `content of ${n.toString('hex')}`, showName(n));
    assert.ok(accepted.some((n) => n.toString() === 'good/-/good-1.0.0.tgz'));
  });
});
