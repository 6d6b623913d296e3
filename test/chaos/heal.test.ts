import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runBackup } from '../../src/backup/run.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { createLogger } from '../../src/log.js';
import { checkTarget } from '../../src/maintenance/check.js';
import { repairTarget } from '../../src/maintenance/repair.js';
import { encrypt } from '../../src/repo/age.js';
import { generateKeys, loadRestoreIdentity, loadWorkerKey } from '../../src/repo/keys.js';
import { Repository } from '../../src/repo/repository.js';
import { encodeSigned } from '../../src/repo/signed.js';
import { listSnapshots, loadSnapshot, snapshotInfo } from '../../src/repo/snapshot.js';
import { openStore } from '../../src/store/index.js';
import type { ObjectStore } from '../../src/store/types.js';
import { removeTmpDir, tmpDir } from '../harness/tmp.js';
import { runCli } from '../helpers/cli.js';

/**
 * The heal side of the chaos suite: every kind of object, damaged every way on the first of two filesystem
 * targets. `repair` replaces it from the second target (after which `check --read-data` finds the first clean),
 * and the next backup neither fails nor carries the damage anywhere.
 */

const silent = createLogger({ level: 'silent' });
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const nameTime = (d: Date) =>
  d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');

type Kind = 'data pack' | 'tree pack' | 'index object' | 'snapshot';
type Damage = 'delete' | 'truncate' | 'flip one byte' | 'garbage' | 'forged';
const KINDS: Kind[] = ['data pack', 'tree pack', 'index object', 'snapshot'];
const DAMAGES: Damage[] = ['delete', 'truncate', 'flip one byte', 'garbage', 'forged'];

/** A directory with keys, a configuration (two fs targets, one tarball store) and two backups. */
interface Base {
  dir: string;
  /** One key of each kind on target one, from the listing after the backups. */
  objects: Record<Kind, string>;
  /** The ID of the newest snapshot. */
  latest: string;
}

function configYaml(): string {
  return `keys: ./keys/worker.key
identity: ./keys/restore.key
cache: ./cache
repository: { packSize: 64KiB }
sources:
  tarballs: [{ name: tarballs, path: ./registry, verify: false }]
targets:
  - { name: one, type: fs, path: ./target-one }
  - { name: two, type: fs, path: ./target-two }
`;
}

function writeTarballs(dir: string, names: string[], size: number): void {
  for (const n of names) {
    mkdirSync(path.join(dir, 'registry', n, '-'), { recursive: true });
    writeFileSync(path.join(dir, 'registry', n, '-', `${n}-1.0.0.tgz`), randomBytes(size));
  }
}

async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

async function makeBase(): Promise<Base> {
  const dir = await tmpDir();
  writeFileSync(path.join(dir, 'regbackup.yaml'), configYaml());
  const env = { REGBACKUP_CONFIG: path.join(dir, 'regbackup.yaml') };
  writeTarballs(
    dir,
    Array.from({ length: 12 }, (_, i) => `pkg-${i}`),
    40_000,
  );
  for (const args of [['keys', 'generate', '--out', path.join(dir, 'keys')], ['init'], ['backup']]) {
    const r = await runCli(args, { env });
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  writeTarballs(dir, ['pkg-new'], 40_000);
  // The second snapshot in a later second than the first: the cases take "the newest" by name (time to the
  // second, then hash), as a listing does; two in one second would be ordered by their hashes here.
  await new Promise((r) => setTimeout(r, 1100 - (Date.now() % 1000)));
  const r = await runCli(['backup'], { env });
  assert.equal(r.code, 0, r.stderr);
  const { config } = loadConfig(path.join(dir, 'regbackup.yaml'));
  const one = openStore(config.targets[0]!);
  const snaps = await listSnapshots(one);
  assert.equal(snaps.length, 2);
  const pick = async (prefix: string) => (await keysUnder(one, prefix))[0]!;
  return {
    dir,
    objects: {
      'data pack': await pick('data/'),
      'tree pack': await pick('tree/'),
      'index object': await pick('index/'),
      snapshot: snaps[snaps.length - 1]!.key,
    },
    latest: snaps[snaps.length - 1]!.id,
  };
}

/**
 * A case: a copy of the base directory, with its configuration and repository opened. The backup host's
 * cache is NOT copied: the backup reads every index object from the targets, damaged one included, as a new
 * host (or one that lost its cache) would, and must read around the damage.
 */
async function openCase(base: Base, name: string) {
  const dir = path.join(base.dir, 'cases', name.replace(/\W+/g, '-'));
  for (const p of ['regbackup.yaml', 'keys', 'registry', 'target-one', 'target-two'])
    cpSync(path.join(base.dir, p), path.join(dir, p), { recursive: true });
  const { config } = loadConfig(path.join(dir, 'regbackup.yaml'));
  const stores = config.targets.map((t) => openStore(t, { retry: false }));
  const worker = await loadWorkerKey(config.keys);
  const restore = await loadRestoreIdentity(config.identity!);
  const { repo } = await Repository.open(
    stores,
    { worker, restore },
    { cacheRoot: path.join(dir, 'cache-repair') },
  );
  mkdirSync(repo.cacheDir, { recursive: true });
  return { dir, config, stores, repo };
}

/** Path of an object of an fs target (as FsStore lays them out). */
function fileOf(config: Config, target: number, key: string): string {
  const t = config.targets[target]!;
  assert.equal(t.type, 'fs');
  return path.join((t as { path: string }).path, key);
}

/** Writes a file by rename (never in place: a target's pack may share its inode with another copy). */
function replaceFile(file: string, bytes: Buffer): void {
  writeFileSync(`${file}.tmp`, bytes);
  renameSync(`${file}.tmp`, file);
}

/** A validly encrypted object of the key's kind (to the repository's recipients), signed by another key. */
async function forgedLike(repo: Repository, key: string, original: Buffer): Promise<Buffer> {
  const recipients = [...repo.config.recipients, repo.config.metadataRecipient];
  if (key.startsWith('data/') || key.startsWith('tree/'))
    return encrypt(recipients, randomBytes(original.length));
  const other = await generateKeys();
  const kind = key.startsWith('index/') ? 'index' : 'snapshot';
  const body =
    kind === 'snapshot'
      ? Buffer.from(
          JSON.stringify({
            version: 1,
            time: new Date().toISOString(),
            repository: repo.config.id,
            sources: [],
          }),
        )
      : Buffer.from([1, 0, 0, 0, 0]);
  return encrypt(recipients, encodeSigned(kind, body, other.worker.signingKey));
}

async function damage(repo: Repository, config: Config, key: string, how: Damage): Promise<void> {
  const file = fileOf(config, 0, key);
  const original = readFileSync(file);
  switch (how) {
    case 'delete':
      rmSync(file);
      return;
    case 'truncate':
      return replaceFile(file, original.subarray(0, Math.floor(original.length / 2)));
    case 'flip one byte': {
      const b = Buffer.from(original);
      b[Math.floor(b.length / 2)]! ^= 0x01;
      return replaceFile(file, b);
    }
    case 'garbage':
      return replaceFile(file, randomBytes(original.length));
    case 'forged':
      return replaceFile(file, await forgedLike(repo, key, original));
  }
}

let base: Base;
before(async () => {
  base = await makeBase();
});
after(() => removeTmpDir(base.dir));

describe('chaos, heal side: damage on the first of two targets', () => {
  for (const kind of KINDS)
    for (const how of DAMAGES)
      test(`${kind}, ${how}: repair heals it; the next backup neither fails nor spreads it`, async () => {
        const key = base.objects[kind];
        const c = await openCase(base, `${kind}-${how}`);
        const [one, two] = c.repo.targets as [ObjectStore, ObjectStore];
        try {
          const intact = await two.getBuffer(key);
          await damage(c.repo, c.config, key, how);

          // The next backup, with the damage in place: it neither fails nor copies the damage anywhere.
          writeTarballs(c.dir, ['pkg-after'], 30_000);
          const b = await runBackup(c.config, { logger: silent });
          assert.equal(b.exitCode, 0, JSON.stringify(b.findings));
          assert.deepEqual(
            b.targets.map((t) => [t.name, t.status]),
            [
              ['one', 'ok'],
              ['two', 'ok'],
            ],
          );
          const onTwo = await checkTarget(c.repo, two, { readData: 1, logger: silent });
          assert.deepEqual(onTwo.problems, [], 'the second target is intact');
          assert.equal(onTwo.snapshots, 3);
          assert.deepEqual(
            await two.getBuffer(key),
            intact,
            'the second target still holds the intact object',
          );
          const made = await loadSnapshot(c.repo, two, snapshotInfo(b.snapshot!.key)!);
          assert.equal(made.parent, base.latest, 'the run builds on the newest genuine snapshot');

          // repair heals the first target (a deleted index object or snapshot was already copied back, verified,
          // by the backup's catch-up). Same-size damage to a pack is found only by hashing it (--read-data).
          const readData =
            (kind === 'data pack' || kind === 'tree pack') && how !== 'delete' && how !== 'truncate';
          const r = await repairTarget(c.repo, one, [two], { logger: silent, readData });
          assert.deepEqual(r.unrepairable, []);
          assert.deepEqual(r.elsewhere, []);
          const caughtUp = how === 'delete' && (kind === 'index object' || kind === 'snapshot');
          assert.deepEqual(
            r.copied.map((x) => [x.key, x.from, x.reason]),
            caughtUp ? [] : [[key, 'two', how === 'delete' ? 'missing' : 'corrupt']],
          );
          assert.deepEqual(
            await one.getBuffer(key),
            intact,
            'the first target holds the object intact again',
          );
          const onOne = await checkTarget(c.repo, one, { readData: 1, logger: silent });
          assert.deepEqual(onOne.problems, []);
          assert.equal(onOne.snapshots, 3);
        } finally {
          c.repo.close();
        }
      });
});

describe('chaos, heal side: the config', () => {
  for (const how of ['delete', 'flip one byte', 'garbage'] as const)
    test(`config, ${how} on the first target: repair, with the repository opened on the second, heals it`, async () => {
      const c = await openCase(base, `config-${how}`);
      c.repo.close();
      const [one, two] = c.stores as [ObjectStore, ObjectStore];
      const intact = await two.getBuffer('config');
      const file = fileOf(c.config, 0, 'config');
      if (how === 'delete') rmSync(file);
      else if (how === 'garbage') replaceFile(file, randomBytes(intact.length));
      else {
        const b = Buffer.from(intact);
        b[Math.floor(b.length / 2)]! ^= 0x01;
        replaceFile(file, b);
      }
      const worker = await loadWorkerKey(c.config.keys);
      const { repo } = await Repository.open(
        [two],
        { worker },
        { cacheRoot: path.join(c.dir, 'cache-config') },
      );
      try {
        const r = await repairTarget(repo, one, [two], { logger: silent });
        assert.deepEqual(r.unrepairable, []);
        assert.deepEqual(
          r.copied.map((x) => [x.key, x.reason]),
          [['config', how === 'delete' ? 'missing' : 'corrupt']],
        );
        assert.deepEqual(await one.getBuffer('config'), intact);
      } finally {
        repo.close();
      }
    });
});

describe('chaos, heal side: objects forged under their own SHA-256 never spread (through the CLI)', () => {
  test('forged snapshots on one and a garbage index object on two: not copied, never latest or parent, reported; snapshots and repair exit 5 and name them', async () => {
    const c = await openCase(base, 'forged-cli');
    const [one, two] = c.repo.targets as [ObjectStore, ObjectStore];
    const env = { REGBACKUP_CONFIG: path.join(c.dir, 'regbackup.yaml') };
    const cli = (args: string[]) => runCli(args, { env });
    try {
      const genuine = await listSnapshots(one);
      const latest = genuine[genuine.length - 1]!;
      // Newer than every genuine snapshot, each named by its real SHA-256: a validly encrypted one with a bad
      // signature, and random bytes.
      const time = nameTime(new Date(Date.now() + 3_600_000));
      const signedByOther = await forgedLike(c.repo, 'snapshots/', Buffer.alloc(0));
      const garbage = randomBytes(2000);
      const forgedKeys = [signedByOther, garbage].map((b) => `snapshots/${time}-${sha(b)}`);
      await one.put(forgedKeys[0]!, signedByOther);
      await one.put(forgedKeys[1]!, garbage);
      const garbageIndex = randomBytes(1500);
      const indexKey = `index/${sha(garbageIndex)}`;
      await two.put(indexKey, garbageIndex);

      const listed = await cli(['snapshots', '--target', 'one']);
      assert.equal(listed.code, 5, listed.stderr);
      for (const k of forgedKeys) {
        const id = k.slice(-64);
        assert.match(listed.stdout, new RegExp(`^${id} .*UNREADABLE`, 'm'));
      }
      assert.match(listed.stdout, /signature does not verify/);
      assert.match(listed.stdout, /not an age v1 file/);
      const clean = await cli(['snapshots', '--target', 'two']);
      assert.equal(clean.code, 0, clean.stderr);

      // restore "latest": the newest snapshot that verifies, the forged ones named in the log.
      const restored = await cli(['restore', '--tarballs', path.join(c.dir, 'restored'), '--json']);
      assert.equal(restored.code, 0, restored.stderr);
      assert.equal((JSON.parse(restored.stdout) as { snapshot: { id: string } }).snapshot.id, latest.id);
      for (const k of forgedKeys) assert.ok(restored.stderr.includes(k), `restore names ${k}`);

      // backup: the forged objects stay where they are, named; the new snapshot builds on the genuine one.
      const b = await cli(['backup', '--json']);
      assert.equal(b.code, 0, b.stderr);
      const report = JSON.parse(b.stdout) as {
        snapshot: { key: string };
        findings: { code: string; source: string; object?: string; message: string }[];
      };
      const damaged = report.findings.filter((f) => f.code === 'object-does-not-verify');
      for (const [target, key] of [
        ['one', forgedKeys[0]],
        ['one', forgedKeys[1]],
        ['two', indexKey],
      ])
        assert.ok(
          damaged.some((f) => f.source === target && f.object === key),
          `${key} on ${target} is reported: ${JSON.stringify(damaged)}`,
        );
      for (const k of forgedKeys) assert.equal(await two.stat(k), undefined, `${k} is not on two`);
      assert.equal(await one.stat(indexKey), undefined, `${indexKey} is not on one`);
      for (const t of [one, two]) {
        const m = await loadSnapshot(c.repo, t, snapshotInfo(report.snapshot.key)!);
        assert.equal(m.parent, latest.id, `the new snapshot on ${t.name} builds on the newest genuine one`);
      }

      // repair: nothing intact anywhere to replace them with; each is named with why, and the exit is 5.
      const r1 = await cli(['repair', '--to', 'one']);
      assert.equal(r1.code, 5, r1.stderr + r1.stdout);
      assert.match(r1.stdout, new RegExp(`UNREPAIRABLE ${forgedKeys[0]}: .*signature does not verify`));
      assert.match(r1.stdout, new RegExp(`UNREPAIRABLE ${forgedKeys[1]}: .*not an age v1 file`));
      assert.match(
        r1.stdout,
        new RegExp(`DOES NOT VERIFY on two \\(not copied\\): ${indexKey}: .*not an age v1 file`),
      );
      const r2 = await cli(['repair', '--from', 'one', '--to', 'two']);
      assert.equal(r2.code, 5, r2.stderr + r2.stdout);
      assert.match(r2.stdout, new RegExp(`UNREPAIRABLE ${indexKey}: .*not an age v1 file`));
      assert.doesNotMatch(r2.stdout, /^ {2}(missing|corrupt) /m);
    } finally {
      c.repo.close();
    }
  });
});
