import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  cpSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { writeRegistry } from '../generate/registry.js';
import type { TargetCheck } from '../../src/maintenance/check.js';
import type { RestoreReport } from '../../restore/types.js';
import { tmpDir } from '../harness/index.js';
import { BIN, runCli, type CliResult } from '../helpers/cli.js';
import { DAMAGES, damageObject, objectKeys, type Damage, type ObjectKind } from '../helpers/damage.js';

/**
 * Read-side chaos: one object of each kind is damaged on the first of two filesystem targets, in every way
 * (test/helpers/damage.ts); a restore without --from still brings back exactly the source, saying which
 * objects it read from the other target (and so does `dump`), `check --read-data` names the damaged object
 * and finds the other target intact, and a backup is not stopped by a damaged index object or snapshot. One backup is
 * made once; each case works on a copy of its two targets.
 */
const KINDS: readonly ObjectKind[] = ['data', 'tree', 'index', 'snapshot', 'config'];

const DAMAGE_LABEL: Record<Damage, string> = {
  delete: 'deleted',
  truncate: 'truncated',
  flip: 'one byte flipped',
  garbage: 'random bytes under its name',
  forge: 'forged',
};

const PREFIX: Record<ObjectKind, string> = {
  data: 'data/',
  tree: 'tree/',
  index: 'index/',
  snapshot: 'snapshots/',
  config: 'config',
};

/** Every file under `dir`: relative path -> SHA-256. */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d)) {
      const p = path.join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      if (statSync(p).isDirectory()) walk(p, r);
      else out[r] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir, '');
  return out;
}

function json<T>(r: CliResult, what: string): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    assert.fail(`${what}: no JSON (exit ${r.code}): ${r.stderr.slice(-2000)}${r.stdout.slice(-2000)}`);
  }
}

describe('damage on the first target: restore reads past it, check names it', { concurrency: 3 }, () => {
  let base: string;
  let tarballs: string;
  let keys: string;
  let snapshot: string;

  before(async () => {
    base = await tmpDir();
    const registry = path.join(base, 'registry');
    await writeRegistry({
      out: registry,
      packages: 8,
      seed: 11,
      maxVersionsPerPackage: 4,
      tarballVersions: 2,
    });
    tarballs = path.join(registry, 'tarballs');
    // A file of several 1 MiB chunks, spread over more than one pack.
    mkdirSync(path.join(tarballs, 'big', '-'), { recursive: true });
    writeFileSync(path.join(tarballs, 'big', '-', 'big-1.0.0.tgz'), randomBytes(3 * 1024 * 1024 + 4321));
    keys = path.join(base, 'keys');
    mkdirSync(keys);
    writeConfig(base);
    const env = { REGBACKUP_CONFIG: path.join(base, 'regbackup.yaml'), REGBACKUP_LOG_LEVEL: 'warn' };
    for (const args of [['keys', 'generate', '--out', keys], ['init'], ['backup', '--json']]) {
      const r = await runCli(args, { env });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      if (args[0] === 'backup') snapshot = json<{ snapshot: { id: string } }>(r, 'backup').snapshot.id;
    }
    for (const kind of KINDS)
      assert.ok(objectKeys(path.join(base, 'one'), PREFIX[kind]).length > 0, `the backup wrote ${kind}`);
  });

  function writeConfig(dir: string, file = 'regbackup.yaml', cache = './cache'): void {
    writeFileSync(
      path.join(dir, file),
      `keys: ${keys}/worker.key
identity: ${keys}/restore.key
cache: ${cache}
repository:
  packSize: 1MiB
sources:
  tarballs:
    - name: tarballs
      path: ${tarballs}
targets:
  - name: one
    type: fs
    path: ./one
  - name: two
    type: fs
    path: ./two
`,
    );
  }

  /**
   * A copy of the backed-up targets (and a fresh cache), for one case. `restoreCli` has a cache of its own:
   * run beside `cli`, it must read the metadata from the targets itself (a cache another command has just
   * filled would spare it the damaged object, and its report would rightly name no fallback).
   */
  async function copy(): Promise<{
    dir: string;
    cli: (args: string[]) => Promise<CliResult>;
    restoreCli: (args: string[]) => Promise<CliResult>;
  }> {
    const dir = await tmpDir();
    for (const t of ['one', 'two']) cpSync(path.join(base, t), path.join(dir, t), { recursive: true });
    writeConfig(dir);
    writeConfig(dir, 'regbackup-restore.yaml', './cache-restore');
    const run = (file: string) => (args: string[]) =>
      runCli(args, { env: { REGBACKUP_CONFIG: path.join(dir, file), REGBACKUP_LOG_LEVEL: 'warn' } });
    return { dir, cli: run('regbackup.yaml'), restoreCli: run('regbackup-restore.yaml') };
  }

  for (const kind of KINDS) {
    for (const damage of DAMAGES) {
      test(`${kind}: ${DAMAGE_LABEL[damage]} on the first target`, async () => {
        const { dir, cli, restoreCli } = await copy();
        const one = path.join(dir, 'one');
        const key = objectKeys(one, PREFIX[kind])[0]!;
        const now = await damageObject(one, key, damage);

        // All read only; run at once. `dump` reads through the same failover (once per object kind).
        const out = path.join(dir, 'restored');
        const dumped = path.join(dir, 'dumped');
        const [r, c, d] = await Promise.all([
          restoreCli(['restore', '--tarballs', out, '--json']),
          cli(['check', '--read-data', '--json']),
          damage === 'garbage' ? dump(dir, dumped) : undefined,
        ]);
        if (d) {
          assert.equal(d.code, 0, `dump: ${d.stderr.slice(-3000)}`);
          assert.deepEqual(tree(path.join(dumped, 'tarballs')), tree(tarballs));
        }

        // restore (no --from): everything, verified, from the other target where needed.
        assert.equal(r.code, 0, `restore: ${r.stderr.slice(-3000)}`);
        const rep = json<RestoreReport>(r, 'restore');
        assert.equal(rep.verified, true);
        assert.equal(rep.snapshot.id, snapshot);
        assert.deepEqual(tree(out), tree(tarballs));
        reportNamesFallback(rep, kind, damage, key);
        assert.doesNotMatch(r.stderr, /prune/i, 'no prune ran: nothing may blame one');

        // check --read-data: the damaged object is named on target one; target two is fine.
        assert.equal(c.code, 5, `check: ${c.stderr.slice(-2000)}`);
        const targets = json<{ ok: boolean; targets: TargetCheck[] }>(c, 'check').targets;
        const t1 = targets.find((t) => t.target === 'one')!;
        const t2 = targets.find((t) => t.target === 'two')!;
        assert.equal(t2.ok, true, JSON.stringify(t2.problems));
        const named = t1.problems.map((p) => p.object);
        assert.ok(named.includes(now), `check names ${now}: ${JSON.stringify(t1.problems)}`);
        if (now !== key) assert.ok(named.includes(key), `check names ${key}: ${JSON.stringify(t1.problems)}`);

        // A backup is never stopped by what one target holds (index objects and snapshots are read by it).
        if (kind === 'index' || kind === 'snapshot') {
          const b = await cli(['backup', '--json']);
          assert.equal(b.code, 0, `backup: ${b.stderr.slice(-3000)}`);
        }
      });
    }
  }
});

describe('an index object that is garbage on every target', () => {
  test('is named; a backup still writes a whole snapshot; only what needs it cannot be restored', async () => {
    const dir = await tmpDir();
    const tarballs = path.join(dir, 'tarballs');
    for (const n of ['a', 'b', 'c']) {
      mkdirSync(path.join(tarballs, n, '-'), { recursive: true });
      writeFileSync(path.join(tarballs, n, '-', `${n}-1.0.0.tgz`), randomBytes(200_000));
    }
    writeFileSync(
      path.join(dir, 'regbackup.yaml'),
      `keys: ./keys/worker.key
identity: ./keys/restore.key
cache: ./cache
sources:
  tarballs:
    - name: tarballs
      path: ${tarballs}
targets:
  - name: one
    type: fs
    path: ./one
  - name: two
    type: fs
    path: ./two
`,
    );
    const env = { REGBACKUP_CONFIG: path.join(dir, 'regbackup.yaml'), REGBACKUP_LOG_LEVEL: 'warn' };
    const cli = (args: string[]) => runCli(args, { env });
    let first = '';
    for (const args of [
      ['keys', 'generate', '--out', path.join(dir, 'keys')],
      ['init'],
      ['backup', '--json'],
    ]) {
      const r = await cli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      if (args[0] === 'backup') first = json<{ snapshot: { id: string } }>(r, 'backup').snapshot.id;
    }
    const indexKeys = objectKeys(path.join(dir, 'one'), 'index/');
    assert.equal(indexKeys.length, 1);
    for (const t of ['one', 'two']) await damageObject(path.join(dir, t), indexKeys[0]!, 'garbage');

    // The backup (on a host whose cache never saw that index object): not stopped; the junk is named; its
    // snapshot is whole (the blobs are stored again).
    rmSync(path.join(dir, 'cache'), { recursive: true });
    rmSync(path.join(tarballs, 'c'), { recursive: true }); // only the first snapshot holds it
    const b = await cli(['backup', '--json']);
    assert.equal(b.code, 0, `backup: ${b.stderr.slice(-3000)}`);
    assert.match(b.stderr, new RegExp(indexKeys[0]!));
    const second = json<{ snapshot: { id: string } }>(b, 'backup').snapshot.id;
    const out = path.join(dir, 'restored');
    const r = await cli(['restore', '--snapshot', second, '--tarballs', out, '--json']);
    assert.equal(r.code, 0, `restore: ${r.stderr.slice(-3000)}`);
    const rep = json<RestoreReport>(r, 'restore');
    assert.deepEqual(tree(out), tree(tarballs));
    assert.deepEqual(
      rep.targets.unreadableIndex.map((u) => u.object),
      indexKeys,
    );

    // The first snapshot: what a later backup stored again is found again, but c (and the first listing)
    // only that index object names. The error says which index object is lacking.
    const old = await cli(['restore', '--snapshot', first, '--tarballs', path.join(dir, 'old')]);
    assert.equal(old.code, 5, old.stderr);
    assert.match(old.stderr, new RegExp(`not in the index.*${indexKeys[0]!}`));
  });
});

/** `regbackup dump --tarballs` of the case in `dir`, its tar archive extracted into `into`. */
async function dump(dir: string, into: string): Promise<{ code: number | null; stderr: string }> {
  const archive = path.join(dir, 'dump.tar');
  const fd = openSync(archive, 'w');
  const child = spawn(process.execPath, [BIN, 'dump', '--tarballs'], {
    env: { ...process.env, REGBACKUP_CONFIG: path.join(dir, 'regbackup.yaml'), REGBACKUP_LOG_LEVEL: 'warn' },
    stdio: ['ignore', fd, 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  closeSync(fd);
  if (code !== 0) return { code, stderr };
  mkdirSync(into);
  execFileSync('tar', ['-xf', archive, '-C', into]);
  return { code, stderr };
}

/** The restore report says which object came from the other target (or that target one was left out). */
function reportNamesFallback(rep: RestoreReport, kind: ObjectKind, damage: Damage, key: string): void {
  const t = rep.targets;
  if (kind === 'config') {
    assert.ok(
      t.unreachable.some((u) => u.target === 'one'),
      `target one is named as not used: ${JSON.stringify(t.unreachable)}`,
    );
    return;
  }
  if (kind === 'data' || kind === 'tree') {
    assert.ok(t.fallbackCount > 0, 'blobs were read from two');
    const packId = key.slice(key.lastIndexOf('/') + 1);
    for (const f of t.fallbacks) assert.deepEqual([f.from, f.to, f.pack], ['one', 'two', packId]);
    return;
  }
  // A forged snapshot is another snapshot (its own name): "latest" is read from the target that has it.
  if (kind === 'snapshot' && damage === 'forge') return;
  const fb = t.metadataFallbacks.find((f) => f.object === key);
  assert.ok(fb, `${key} is reported as read from two: ${JSON.stringify(t.metadataFallbacks)}`);
  assert.deepEqual([fb.from, fb.to], ['one', 'two']);
  assert.ok(fb.reason.length > 0);
}
