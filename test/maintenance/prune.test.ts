import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadIntoCouch } from '../generate/couch.js';
import { writeRegistry } from '../generate/registry.js';
import { startServers, tmpDir } from '../harness/index.js';
import { runCli } from '../helpers/cli.js';
import { assertTargetsIntact } from '../helpers/verify.js';
import { loadWorkerKey } from '../../src/repo/keys.js';
import { Repository } from '../../src/repo/repository.js';
import { decodeIndexBody } from '../../src/repo/index-object.js';
import { packKey } from '../../src/repo/pack.js';
import { FsStore } from '../../src/store/fs.js';
import { loadMarks, sealMark } from '../../src/maintenance/marks.js';
import { writeTestConfig } from '../helpers/config.js';

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out.sort();
}

/** Adds `n` new tarballs and removes `m` existing ones: the churn that makes data unneeded. */
function churn(root: string, n: number, m: number, tag: string): void {
  const existing = files(root);
  for (const f of existing.slice(0, m)) rmSync(f);
  for (let i = 0; i < n; i++) {
    const d = path.join(root, `churn-${tag}-${i}`, '-');
    mkdirSync(d, { recursive: true });
    writeFileSync(
      path.join(d, `churn-${tag}-${i}-1.0.0.tgz`),
      Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(20_000 + i * 1000)]),
    );
  }
}

describe('forget, prune, check, repair, cost', () => {
  let dir: string;
  let servers: Awaited<ReturnType<typeof startServers<{ couchdb: true }>>>;
  let env: NodeJS.ProcessEnv;
  let configFile: string;
  const identity = () => path.join(dir, 'keys/restore.key');
  const cli = async (args: string[], expect = 0) => {
    const r = await runCli(args, { env });
    assert.equal(r.code, expect, `${args.join(' ')}: ${r.stderr.slice(-2000)}`);
    return r;
  };
  const json = async <T>(args: string[], expect = 0): Promise<T> =>
    JSON.parse((await cli([...args, '--json'], expect)).stdout) as T;

  before(async () => {
    dir = await tmpDir();
    servers = await startServers({ couchdb: true });
    await writeRegistry({
      out: path.join(dir, 'registry'),
      packages: 15,
      seed: 5,
      maxVersionsPerPackage: 10,
      tarballVersions: 2,
    });
    await loadIntoCouch(servers.couchdb.url, 'registry', path.join(dir, 'registry'));
    configFile = writeTestConfig(dir, {
      packSize: '256KiB',
      couchdb: servers.couchdb.url,
      tarballs: './registry/tarballs',
      targets: ['{ name: a, type: fs, path: ./target-a }', '{ name: b, type: fs, path: ./target-b }'],
      more: `retention: { last: 2, hourly: 0, daily: 0, weekly: 0, monthly: 0 }
prune: { grace: 1s }
`,
    });
    env = { REGBACKUP_CONFIG: configFile };
    await cli(['keys', 'generate', '--out', path.join(dir, 'keys')]);
    await cli(['init']);
  });
  after(() => servers.stop());

  test('forget keeps what the policy says; prune marks, then deletes after the grace period; everything left is intact', async () => {
    const root = path.join(dir, 'registry/tarballs');
    // Four big tarballs that only the first snapshot holds (removed before the second): each is more than a
    // pack (256 KiB) and they are read one after another, so however the two pack workers share them, at
    // least one pack holds nothing else and the forgotten snapshot alone needs it.
    const doomed = [0, 1, 2, 3].map((i) => path.join(root, 'doomed', '-', `doomed-1.0.${i}.tgz`));
    mkdirSync(path.dirname(doomed[0]!), { recursive: true });
    for (const f of doomed)
      writeFileSync(f, Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(300_000)]));
    await cli(['backup']);
    for (const f of doomed) rmSync(f);
    churn(root, 5, 8, 'a');
    await cli(['backup']);
    churn(root, 5, 8, 'b');
    await cli(['backup']);
    const dry = await json<{ decisions: { keep: boolean; reasons: string[] }[]; forgotten: number }>([
      'forget',
      '--dry-run',
    ]);
    assert.equal(dry.forgotten, 1);
    assert.deepEqual(
      dry.decisions.map((d) => d.keep),
      [false, true, true],
    );
    assert.deepEqual(dry.decisions[2]!.reasons, ['last']);
    const f = await json<{ forgotten: number }>(['forget']);
    assert.equal(f.forgotten, 1);

    const p0 = await json<{ packs: { unneeded: number } }>(['prune', '--dry-run']);
    assert.ok(p0.packs.unneeded > 0, 'the forgotten snapshot alone needed some packs');
    const p1 = await json<{
      marked: { packs: number; repack: number };
      executed: number;
      targets: { deletedPacks: number }[];
    }>(['prune']);
    assert.ok(p1.marked.packs > 0);
    assert.equal(p1.executed, 0, 'nothing is deleted the first time: only marked');
    assert.deepEqual(
      p1.targets.map((t) => t.deletedPacks),
      [0, 0],
    );
    await new Promise((r) => setTimeout(r, 1100)); // the grace period
    const p2 = await json<{
      executed: number;
      targets: { deletedPacks: number; freedBytes: number; rewrittenIndexObjects: number }[];
    }>(['prune']);
    assert.equal(p2.executed, 1);
    for (const t of p2.targets) {
      // The unneeded packs, and the mostly unneeded tree packs (rewritten first, then deleted).
      assert.equal(t.deletedPacks, p1.marked.packs + p1.marked.repack);
      assert.ok(t.freedBytes > 0);
    }
    const checked = await json<{ ok: boolean }>(['check', '--read-data', '--identity', identity()]);
    assert.equal(checked.ok, true);
    assert.deepEqual(await assertTargetsIntact(configFile, identity()), [2, 2]);
    // The next backup, on a host whose index cache still knew the deleted packs, is whole too.
    churn(root, 2, 2, 'c');
    await cli(['backup']);
    assert.deepEqual(await assertTargetsIntact(configFile, identity()), [3, 3]);
  });

  test('backups and prunes running at the same time never lose data a snapshot needs', async () => {
    const root = path.join(dir, 'registry/tarballs');
    for (let i = 0; i < 4; i++) {
      churn(root, 4, 6, `loop${i}`);
      // A backup and two prunes at once; forget in between so that packs keep becoming unneeded.
      const runs = await Promise.all([
        runCli(['backup', '--quiet'], { env }),
        runCli(['prune', '--quiet'], { env }),
        (async () => {
          await new Promise((r) => setTimeout(r, 300 + i * 200));
          return runCli(['prune', '--quiet'], { env });
        })(),
      ]);
      // A backup may refuse to commit (exit 5) if a prune deleted a pack it used: never anything else.
      assert.ok([0, 5].includes(runs[0].code!), `backup: ${runs[0].stderr.slice(-1500)}`);
      for (const p of runs.slice(1)) assert.equal(p.code, 0, `prune: ${p.stderr.slice(-1500)}`);
      await cli(['forget', '--quiet']);
      await new Promise((r) => setTimeout(r, 1100));
    }
    // forget --prune: retention and prune in one run (the marks of the last loop are due now).
    const last = await json<{ forgotten: number; prune?: { executed: number; targets: unknown[] } }>([
      'forget',
      '--prune',
    ]);
    assert.equal(last.prune?.targets.length, 2, 'forget --prune pruned every target in the same run');
    const counts = await assertTargetsIntact(configFile, identity());
    assert.deepEqual(counts, [2, 2]);
    const checked = await json<{ ok: boolean; targets: { problems: unknown[] }[] }>([
      'check',
      '--read-data',
      '--identity',
      identity(),
    ]);
    assert.equal(checked.ok, true, JSON.stringify(checked.targets.map((t) => t.problems)));
  });

  test('check finds every missing or corrupt object on a target; repair heals them from the other; check passes', async () => {
    const tb = path.join(dir, 'target-b');
    // Damage independent objects: one index object, and three data packs that other index objects name.
    const worker = await loadWorkerKey(path.join(dir, 'keys/worker.key'));
    const store = new FsStore({ name: 'b', root: tb });
    const { repo } = await Repository.open([store], { worker }, { cacheRoot: path.join(dir, 'probe-cache') });
    const byIndex = new Map<string, string[]>();
    for await (const o of store.list('index/'))
      byIndex.set(
        o.key,
        decodeIndexBody(await repo.readMeta('index', o.key, store), o.key)
          .filter((x) => x.info.type === 0)
          .map((x) => packKey(x.info.type, x.info.id)),
      );
    repo.close();
    const [idxKey, idxPacks] = [...byIndex].find(([, ps]) => ps.length > 0)!;
    const packs = [...byIndex]
      .filter(([k]) => k !== idxKey)
      .flatMap(([, ps]) => ps)
      .filter((p) => !idxPacks.includes(p))
      .map((k) => path.join(tb, k));
    assert.ok(packs.length >= 3);
    rmSync(packs[0]!);
    const flipped = readFileSync(packs[1]!);
    flipped[flipped.length - 40]! ^= 0xff;
    writeFileSync(packs[1]!, flipped);
    truncateSync(packs[2]!, 100);
    const idx = path.join(tb, idxKey);
    rmSync(idx);
    const snap = files(path.join(tb, 'snapshots'))[0]!;
    writeFileSync(snap, Buffer.concat([readFileSync(snap), Buffer.from('x')]));

    const bad = await json<{
      ok: boolean;
      targets: { target: string; problems: { kind: string; object: string }[] }[];
    }>(['check', '--read-data', '--identity', identity()], 5);
    assert.equal(bad.ok, false);
    const b = bad.targets.find((t) => t.target === 'b')!;
    const kinds = new Set(b.problems.map((p) => p.kind));
    for (const k of ['bad-snapshot', 'pack-hash', 'pack-size', 'missing-pack'])
      assert.ok(kinds.has(k), `check reports ${k}: ${JSON.stringify(b.problems)}`);
    // The deleted index object shows only if a snapshot needs a pack it alone named (missing-blob, or a
    // listing that cannot be read); repair restores it either way.
    const named = (k: string) => b.problems.some((x) => x.object === k);
    for (const f of packs.slice(0, 3)) assert.ok(named(path.relative(tb, f)), `${f} is named`);
    assert.deepEqual(bad.targets.find((t) => t.target === 'a')!.problems, []);

    const r = await json<{
      targets: { target: string; copied: { key: string; reason: string }[]; unrepairable: unknown[] }[];
    }>(['repair', '--to', 'b', '--read-data']);
    const rb = r.targets[0]!;
    assert.equal(rb.unrepairable.length, 0);
    const copied = new Set(rb.copied.map((c) => c.key));
    for (const f of [packs[0]!, packs[1]!, packs[2]!, idx, snap])
      assert.ok(copied.has(path.relative(tb, f)), `repaired ${f}`);
    const good = await json<{ ok: boolean }>(['check', '--read-data', '--identity', identity()]);
    assert.equal(good.ok, true);
  });

  test('with the restore identity, prune also rewrites mostly unneeded data packs; everything stays intact', async () => {
    const root = path.join(dir, 'registry/tarballs');
    // Ten files stored together (the same few packs), then some removed: packs partly unneeded.
    churn(root, 10, 0, 'repack');
    await cli(['backup']);
    const mine = files(root).filter((f) => f.includes('churn-repack-'));
    // (not every other one: the writer's two workers take files in turn, and each fills its own pack)
    mine.filter((_, i) => i % 3 === 0).forEach((f) => rmSync(f));
    await cli(['backup']);
    await cli(['forget', '--keep-last', '1']);
    const m = await json<{ marked: { repack: number } }>([
      'prune',
      '--identity',
      identity(),
      '--repack-threshold',
      '0.99',
    ]);
    assert.ok(
      m.marked.repack > 0,
      `data packs with unneeded blobs are marked for rewriting: ${JSON.stringify(m)}`,
    );
    await new Promise((r) => setTimeout(r, 1100));
    const p = await json<{ targets: { repackedPacks: number; deletedPacks: number }[] }>([
      'prune',
      '--identity',
      identity(),
      '--repack-threshold',
      '0.99',
    ]);
    for (const t of p.targets) assert.ok(t.repackedPacks > 0);
    const checked = await json<{ ok: boolean }>(['check', '--read-data', '--identity', identity()]);
    assert.equal(checked.ok, true);
    assert.deepEqual(await assertTargetsIntact(configFile, identity()), [1, 1]);
  });

  test('cost: bytes and objects per target match what is stored; prices and savings are reported', async () => {
    const r = await json<{
      targets: {
        target: string;
        bytes: number;
        objects: number;
        storagePerMonth: number;
        price: { storagePerGBMonth: number };
        recentRequests: { put: number };
      }[];
      recent: { runs: number; bytesIn: number };
    }>(['cost']);
    for (const t of r.targets) {
      const all = files(path.join(dir, `target-${t.target}`));
      assert.equal(t.objects, all.length);
      assert.equal(
        t.bytes,
        all.reduce((n, f) => n + readFileSync(f).length, 0),
      );
      assert.ok(Math.abs(t.storagePerMonth - (t.bytes / 1e9) * t.price.storagePerGBMonth) < 1e-9);
      assert.ok(t.recentRequests.put > 0, 'the recent runs made PUT requests');
    }
    assert.ok(r.recent.runs >= 1 && r.recent.bytesIn > 0);
  });
  test('a prune that finds another deleting defers to it (exit 0, nothing deleted); an abandoned one is not waited for', async () => {
    const worker = await loadWorkerKey(path.join(dir, 'keys/worker.key'));
    const stores = ['a', 'b'].map((n) => new FsStore({ name: n, root: path.join(dir, `target-${n}`) }));
    const { repo } = await Repository.open(stores, { worker }, { cacheRoot: path.join(dir, 'rival-cache') });
    // A due mark (of nothing, so that what happens to the packs stays the business of the other tests) and
    // another prune's execution of it, under way: its record written, the mark not yet deleted.
    const mark = await sealMark(repo, { kind: 'marked', packs: [], repack: [] });
    for (const t of stores) await t.put(mark.key, mark.bytes);
    const announce = async (at: Date) => {
      const rec = await sealMark(repo, { kind: 'executed', packs: [], repack: [], of: mark.key }, at);
      for (const t of stores) await t.put(rec.key, rec.bytes);
      return rec.key;
    };
    const other = await announce(new Date());
    const targetFiles = () => ['a', 'b'].map((n) => files(path.join(dir, `target-${n}`)));
    const before = targetFiles();
    const deferred = await json<{ deferred: { mark: string } | null; executed: number }>([
      'prune',
      '--grace',
      '0s',
    ]);
    assert.equal(deferred.deferred?.mark, other);
    assert.equal(deferred.executed, 0);
    assert.deepEqual(targetFiles(), before, 'the deferring prune wrote and deleted nothing');
    const text = await cli(['prune', '--grace', '0s']);
    assert.match(text.stdout, /another prune is deleting in this repository/);
    for (const t of stores) await t.delete(other);

    // An execution record whose mark is still there after 6 hours was abandoned (a crash): not waited for.
    await announce(new Date(Date.now() - 7 * 3_600_000));
    const done = await json<{ deferred: unknown; executed: number }>(['prune', '--grace', '0s']);
    assert.equal(done.deferred, null);
    assert.ok(done.executed >= 1, 'the abandoned mark was acted on');
    assert.ok(!(await loadMarks(repo, stores[0]!)).some((m) => m.key === mark.key));
    repo.close();
    const checked = await json<{ ok: boolean }>(['check', '--read-data', '--identity', identity()]);
    assert.equal(checked.ok, true);
  });
});
