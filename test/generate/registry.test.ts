import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import { compress } from 'zstd-napi';
import {
  buildPackument,
  buildTarball,
  generateChanges,
  generateRegistry,
  mutateRegistry,
  packumentFileName,
  planDay,
  planRegistry,
  readRegistryInfo,
  tarballPath,
  writeRegistry,
  type GeneratedPackage,
  type Packument,
  type RegistryOptions,
} from './registry.js';

/** A small registry: quick to generate, still with scoped names, many versions and a few big tarballs. */
const SMALL: RegistryOptions = {
  seed: 'test',
  packages: 40,
  tarballVersions: 2,
  maxVersionsPerPackage: 80,
  maxTarballBytes: 400_000,
};

async function untar(tgz: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const ex = extract();
  const done = (async () => {
    for await (const entry of ex) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      files.set(entry.header.name, Buffer.concat(chunks));
    }
  })();
  Readable.from([gunzipSync(tgz)]).pipe(ex);
  await done;
  return files;
}

function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex');
}
function sri(b: Buffer): string {
  return `sha512-${createHash('sha512').update(b).digest('base64')}`;
}

function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)]!;
}
function quantile(a: number[], q: number): number {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(q * (s.length - 1))]!;
}

function walk(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

/** relative path -> sha256, for every file under dir (generator.json excluded) */
function treeDigest(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const f of walk(dir)) {
    const rel = relative(dir, f);
    if (rel === 'generator.json') continue;
    m.set(rel, createHash('sha256').update(readFileSync(f)).digest('hex'));
  }
  return m;
}

const small: GeneratedPackage[] = [...generateRegistry(SMALL)];

test('the same seed gives byte-identical packuments and tarballs; another seed does not', () => {
  const again = [...generateRegistry(SMALL)];
  assert.equal(again.length, small.length);
  for (let i = 0; i < small.length; i++) {
    assert.equal(JSON.stringify(again[i]!.packument), JSON.stringify(small[i]!.packument));
    assert.deepEqual(
      again[i]!.tarballs.map((t) => t.data),
      small[i]!.tarballs.map((t) => t.data),
    );
  }
  const other = [...generateRegistry({ ...SMALL, seed: 'other', packages: 5 })];
  assert.notEqual(other[0]!.name + other[1]!.name, small[0]!.name + small[1]!.name);
});

test('packuments have the registry shape', () => {
  for (const { packument: p } of small) {
    assert.equal(p._id, p.name);
    const versions = Object.keys(p.versions);
    assert.ok(versions.length >= 1 && versions.length <= 80);
    assert.ok(
      p['dist-tags'].latest && p.versions[p['dist-tags'].latest],
      `${p.name}: latest points to a version`,
    );
    assert.ok(p.time.created && p.time.modified);
    assert.ok(p.time.created <= p.time.modified);
    let prev = '';
    for (const v of versions) {
      const e = p.versions[v]!;
      assert.equal(e.name, p.name);
      assert.equal(e.version, v);
      assert.equal(e._id, `${p.name}@${v}`);
      assert.ok(p.time[v]! > prev, 'publish times increase in version order');
      prev = p.time[v]!;
      assert.equal(e.dist.tarball, `https://registry.npmjs.org/${tarballPath(p.name, v)}`);
      assert.match(e.dist.shasum, /^[0-9a-f]{40}$/);
      assert.match(e.dist.integrity, /^sha512-[A-Za-z0-9+/]{86}==$/);
      assert.ok(e.dist.fileCount > 0 && e.dist.unpackedSize > 0);
      assert.equal(typeof e.dependencies, 'object');
      assert.ok(e.maintainers.length > 0 && e._npmUser.name);
    }
    assert.ok(p.readme.length > 200 && p.readmeFilename === 'README.md');
    assert.ok(p.maintainers.length >= 1 && p.repository.url.startsWith('git+https://'));
  }
});

test('tarballs gunzip; package/package.json matches the packument; shasum and integrity are real', async () => {
  let checked = 0;
  let withBinary = 0;
  for (const g of small) {
    assert.ok(g.tarballs.length >= 1 && g.tarballs.length <= 2);
    for (const t of g.tarballs) {
      const dist = g.packument.versions[t.version]!.dist;
      assert.equal(dist.shasum, sha1(t.data));
      assert.equal(dist.integrity, sri(t.data));
      assert.equal(t.shasum, dist.shasum);
      const files = await untar(t.data);
      const pj = JSON.parse(files.get('package/package.json')!.toString('utf8')) as {
        name: string;
        version: string;
      };
      assert.equal(pj.name, g.name);
      assert.equal(pj.version, t.version);
      assert.ok([...files.keys()].every((f) => f.startsWith('package/')));
      assert.ok(files.has('package/LICENSE'));
      assert.equal(dist.fileCount, files.size);
      assert.equal(
        dist.unpackedSize,
        [...files.values()].reduce((n, b) => n + b.length, 0),
      );
      if ([...files.keys()].some((f) => /\.(node|wasm|br)$/.test(f))) withBinary++;
      checked++;
    }
  }
  assert.ok(checked >= 40);
  assert.ok(withBinary > 0, 'some tarballs are big enough to carry a binary entry');
});

test('buildTarball: a valid gzip of a valid tar, also with a big stored binary entry', async () => {
  const files = [{ path: 'package/package.json', data: Buffer.from('{"name":"x","version":"1.0.0"}\n') }];
  const small1 = buildTarball(files);
  assert.equal((await untar(small1.data)).size, 1);
  const big = buildTarball(
    files,
    { path: 'package/dist/x.wasm', size: 0, seed: ['t'] },
    { targetSize: 300_000 },
  );
  assert.ok(Math.abs(big.data.length - 300_000) < 200, `size ${big.data.length} close to the target`);
  const out = await untar(big.data);
  assert.equal(out.get('package/dist/x.wasm')!.length, big.unpackedSize - files[0]!.data.length);
  // gzip'd: nothing left for zstd
  assert.ok(compress(big.data).length > big.data.length * 0.99);
});

test('sizes follow the real distribution (order of magnitude, small scale)', () => {
  const plan = planRegistry({ seed: 'dist', packages: 600, tarballVersions: 1 });
  const versions = plan.packages.map((p) => p.versions.length);
  const vm = median(versions);
  assert.ok(vm >= 20 && vm <= 60, `median versions ${vm}`);
  assert.ok(quantile(versions, 0.9) > 4 * vm, 'long tail of versions');
  const tb = plan.packages.map((p) => p.versions[p.versions.length - 1]!.tarballSize);
  const tm = median(tb);
  assert.ok(tm > 20_000 && tm < 120_000, `median tarball ${tm}`);
  const t90 = quantile(tb, 0.9);
  assert.ok(t90 > 300_000 && t90 < 3_000_000, `p90 tarball ${t90}`);

  // real JSON of 100 packages (no tarballs: quick)
  const { plan: p2, ctx } = planDay(
    { seed: 'dist', packages: 100, tarballVersions: 0, maxVersionsPerPackage: 1500 },
    1,
  );
  const sizes: number[] = [];
  let raw = 0;
  let z = 0;
  for (const spec of p2.packages.slice(0, 100)) {
    const json = Buffer.from(JSON.stringify(buildPackument(ctx, spec)));
    sizes.push(json.length);
    if (sizes.length <= 40) {
      raw += json.length;
      z += compress(json).length;
    }
  }
  const pm = median(sizes);
  assert.ok(pm > 60_000 && pm < 350_000, `median packument ${pm}`);
  assert.ok(quantile(sizes, 0.9) > 4 * pm, `p90 packument ${quantile(sizes, 0.9)}`);
  const ratio = raw / z;
  assert.ok(ratio > 8 && ratio < 30, `zstd ratio ${ratio.toFixed(1)}`);
});

test('scoped names, names with dots/underscores, and non-ASCII text (4-byte UTF-8 too) are present', () => {
  const plan = planRegistry({ seed: 'names', packages: 400, tarballVersions: 0 });
  const names = plan.packages.map((p) => p.name);
  const scoped = names.filter((n) => /^@[a-z0-9-]+\/[a-z0-9._-]+$/.test(n));
  assert.ok(scoped.length > 30 && scoped.length < 100, `${scoped.length} scoped of 400`);
  assert.ok(names.some((n) => n.includes('.')));
  assert.ok(names.some((n) => n.includes('_')));
  assert.ok(names.every((n) => n === n.toLowerCase() && n.length <= 214));
  assert.equal(new Set(names).size, names.length);

  let multiByte = 0;
  let astral = 0;
  for (const { packument } of small) {
    const json = JSON.stringify(packument);
    if (Buffer.byteLength(json) > json.length) multiByte++; // some characters take 2-4 bytes in UTF-8
    if (/[\u{10000}-\u{10FFFF}]/u.test(json)) astral++;
  }
  assert.ok(multiByte >= small.length * 0.9, `${multiByte} of ${small.length} packuments have non-ASCII`);
  assert.ok(astral >= small.length * 0.5, `${astral} have astral-plane characters (emoji)`);
});

test('day 2: ~2% of packuments get a new version, old versions stay intact, deterministic', () => {
  const opts: RegistryOptions = {
    seed: 'days',
    packages: 300,
    tarballVersions: 0,
    maxVersionsPerPackage: 40,
    maxTarballBytes: 100_000,
  };
  const { plan: day1, ctx } = planDay(opts, 1);
  const before = new Map(day1.packages.map((s) => [s.name, s]));
  const changes = [...generateChanges(opts, 2)];
  const updates = changes.filter((c) => c.type === 'update');
  const creates = changes.filter((c) => c.type === 'create');
  const deletes = changes.filter((c) => c.type === 'delete');
  assert.ok(updates.length >= 1 && updates.length <= 15, `${updates.length} updated of 300`);
  assert.ok(creates.length >= 1 && creates.length <= 5);
  assert.equal(deletes.length, 1);
  for (const u of updates) {
    const old = buildPackument(ctx, before.get(u.name)!) as Packument;
    const now = u.packument!;
    const oldVersions = Object.keys(old.versions);
    const newVersions = Object.keys(now.versions);
    assert.equal(newVersions.length, oldVersions.length + 1);
    assert.deepEqual(newVersions.slice(0, -1), oldVersions);
    for (const v of oldVersions)
      assert.deepEqual(now.versions[v], old.versions[v], `${u.name}@${v} unchanged`);
    const added = newVersions[newVersions.length - 1]!;
    assert.equal(now['dist-tags'].latest, added);
    assert.equal(now.time.modified, now.time[added]);
    assert.ok(now.time[added]! > old.time.modified!);
    assert.equal(u.newTarballs.length, 1);
    assert.equal(u.newTarballs[0]!.version, added);
    assert.equal(now.versions[added]!.dist.shasum, sha1(u.newTarballs[0]!.data));
  }
  for (const c of creates) assert.ok(!before.has(c.name) && c.newTarballs.length >= 1);
  for (const d of deletes) assert.ok(before.has(d.name));
  // same again, and day 3 follows on
  assert.deepEqual(
    [...generateChanges(opts, 2)].map((c) => [c.type, c.name]),
    changes.map((c) => [c.type, c.name]),
  );
  const day3 = [...generateChanges(opts, 3)];
  assert.ok(day3.some((c) => c.type === 'update'));
  assert.notDeepEqual(
    day3.map((c) => c.name),
    changes.map((c) => c.name),
  );
});

test('writeRegistry lays out packuments and the tarball store; mutateRegistry equals writing day 2 directly', async () => {
  const root = mkdtempSync(join(tmpdir(), 'regbackup-gen-'));
  try {
    const opts: RegistryOptions = {
      ...SMALL,
      seed: 'disk',
      packages: 60,
      attachments: 0.15,
      tarballVersions: 1,
      maxTarballBytes: 150_000,
    };
    const a = join(root, 'a');
    const stats = await writeRegistry({ ...opts, out: a, concurrency: 2 });
    assert.equal(stats.packages, 60);
    assert.equal(readdirSync(join(a, 'packuments')).length, 60);
    const { plan } = planDay(opts, 1);
    let scopedSeen = 0;
    for (const spec of plan.packages) {
      const file = join(a, 'packuments', packumentFileName(spec.name));
      assert.ok(existsSync(file), file);
      const pk = JSON.parse(readFileSync(file, 'utf8')) as Packument;
      assert.equal(pk._id, spec.name);
      const latest = spec.versions[spec.versions.length - 1]!.version;
      const tgz = join(a, 'tarballs', tarballPath(spec.name, latest));
      if (spec.name.startsWith('@')) {
        scopedSeen++;
        const [scope, base] = spec.name.split('/');
        assert.ok(packumentFileName(spec.name) === `${scope}%2f${base}.json`);
        assert.equal(tarballPath(spec.name, latest), `${scope}/${base}/-/${base}-${latest}.tgz`);
      }
      if (spec.attachments) {
        assert.ok(!existsSync(tgz), 'attachment-mode tarballs are not in the store');
        const att = pk._attachments![`${spec.name.split('/').pop()}-${latest}.tgz`]!;
        assert.equal(att.content_type, 'application/octet-stream');
        assert.equal(sha1(Buffer.from(att.data, 'base64')), pk.versions[latest]!.dist.shasum);
      } else {
        assert.equal(sha1(readFileSync(tgz)), pk.versions[latest]!.dist.shasum);
      }
    }
    assert.ok(scopedSeen > 0);
    assert.ok(plan.packages.some((s) => s.attachments));
    assert.equal(
      walk(join(a, 'tarballs')).length,
      stats.tarballs,
      'one file per real tarball outside attachment mode',
    );

    const [day2] = await mutateRegistry({ out: a, concurrency: 0 });
    assert.equal(day2!.day, 2);
    assert.equal(readRegistryInfo(a)!.day, 2);
    for (const gone of day2!.unpublished) {
      assert.ok(!existsSync(join(a, 'packuments', packumentFileName(gone))));
      assert.ok(!existsSync(join(a, 'tarballs', gone)));
    }
    const b = join(root, 'b');
    await writeRegistry({ ...opts, out: b, day: 2, concurrency: 0 });
    assert.deepEqual(treeDigest(a), treeDigest(b));
    const infoA = readRegistryInfo(a)!.stats;
    const infoB = readRegistryInfo(b)!.stats;
    assert.equal(infoA.packages, infoB.packages);
    assert.equal(infoA.tarballs, infoB.tarballs);
    assert.equal(infoA.tarballBytes, infoB.tarballBytes);
    assert.equal(infoA.packumentBytes, infoB.packumentBytes);
    assert.equal(infoA.versions, infoB.versions);
    await assert.rejects(writeRegistry({ ...opts, out: a }), /not empty/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('targetBytes: ~23% JSON, ~77% tarballs', () => {
  const plan = planRegistry({ seed: 'target', targetBytes: 64 * 1024 * 1024 });
  const total = plan.estimatedJsonBytes + plan.plannedTarballBytes;
  assert.ok(total > 55 * 1024 * 1024 && total < 90 * 1024 * 1024, `total ${total}`);
  const share = plan.estimatedJsonBytes / total;
  assert.ok(share > 0.15 && share < 0.35, `JSON share ${share.toFixed(2)}`);
  assert.ok(
    plan.packages.every((p) => p.versions[p.versions.length - 1]!.tarball),
    'every latest version has a tarball',
  );
  for (const p of plan.packages)
    for (const v of p.versions) assert.ok(v.tarballSize <= plan.options.maxTarballBytes);
});
