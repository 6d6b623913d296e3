import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadIntoCouch } from '../generate/couch.js';
import { writeRegistry } from '../generate/registry.js';
import { startServers, tmpDir } from '../harness/index.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { assertTargetsIntact } from '../helpers/verify.js';
import { writeTestConfig } from '../helpers/config.js';

/**
 * Backup, forget + prune (no grace period), a second prune, check and repair, all at once on the same
 * two-target repository, while every core is kept busy: none of them may fail because of another, and the
 * repository stays whole (checks clean, the latest snapshot restores).
 */

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out.sort();
}

/** Adds `n` new tarballs and removes `m` existing ones: the churn that makes data unneeded. */
function churn(root: string, n: number, m: number, tag: string): void {
  for (const f of files(root).slice(0, m)) rmSync(f);
  for (let i = 0; i < n; i++) {
    const d = path.join(root, `churn-${tag}-${i}`, '-');
    mkdirSync(d, { recursive: true });
    writeFileSync(
      path.join(d, `churn-${tag}-${i}-1.0.0.tgz`),
      Buffer.concat([Buffer.from([0x1f, 0x8b]), randomBytes(10_000 + i * 1000)]),
    );
  }
}

/**
 * One CPU-burning process per core. Each stops by itself when its parent goes away (checked on every
 * turn of its loop) or after `maxSeconds`, so none outlives the test even if the test process is killed.
 */
function burnCores(maxSeconds: number): ChildProcess[] {
  const code = `const parent = process.ppid; const end = Date.now() + ${maxSeconds * 1000};
    for (let i = 0; ; i++) { if ((i & 0xfffff) === 0 && (process.ppid !== parent || Date.now() > end)) process.exit(0); }`;
  return Array.from({ length: os.availableParallelism() }, () =>
    spawn(process.execPath, ['-e', code], { stdio: 'ignore' }),
  );
}

function stopBurning(burners: ChildProcess[]): void {
  for (const b of burners) if (b.exitCode === null && b.signalCode === null) b.kill('SIGKILL');
}

const ITERATIONS = 6;

interface PruneJson {
  executed: number;
  deferred: unknown;
  targets: { deletedPacks: number }[];
}

describe('backup, forget, prune, check and repair at the same time', () => {
  let dir: string;
  let servers: Awaited<ReturnType<typeof startServers<{ couchdb: true }>>>;
  let env: NodeJS.ProcessEnv;
  let configFile: string;
  let burners: ChildProcess[] = [];
  const identity = () => path.join(dir, 'keys/restore.key');
  const killBurners = () => stopBurning(burners);

  before(async () => {
    dir = await tmpDir();
    servers = await startServers({ couchdb: true });
    await writeRegistry({
      out: path.join(dir, 'registry'),
      packages: 12,
      seed: 11,
      maxVersionsPerPackage: 6,
      tarballVersions: 2,
    });
    await loadIntoCouch(servers.couchdb.url, 'registry', path.join(dir, 'registry'));
    configFile = writeTestConfig(dir, {
      packSize: '128KiB',
      couchdb: servers.couchdb.url,
      tarballs: './registry/tarballs',
      targets: ['{ name: one, type: fs, path: ./target-one }', '{ name: two, type: fs, path: ./target-two }'],
      more: `retention: { last: 2, hourly: 0, daily: 0, weekly: 0, monthly: 0 }
prune: { grace: 0s }
`,
    });
    env = { REGBACKUP_CONFIG: configFile };
    for (const args of [['keys', 'generate', '--out', path.join(dir, 'keys')], ['init'], ['backup']]) {
      const r = await runCli(args, { env });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr.slice(-2000)}`);
    }
    process.on('exit', killBurners);
  });
  after(async () => {
    killBurners();
    process.off('exit', killBurners);
    await servers.stop();
  });

  test('every run succeeds while the others delete and copy under it; the repository stays whole', async (t) => {
    const root = path.join(dir, 'registry/tarballs');
    const pruned = { executed: 0, deferred: 0, deletedPacks: 0 };
    const run = async (name: string, args: string[], delayMs = 0): Promise<[string, CliResult]> => {
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      const r = await runCli([...args, '--quiet'], { env });
      if (args[0] === 'prune' && r.code === 0) {
        const p = JSON.parse(r.stdout) as PruneJson;
        pruned.executed += p.executed;
        pruned.deferred += p.deferred ? 1 : 0;
        pruned.deletedPacks += p.targets[0]?.deletedPacks ?? 0;
      }
      return [name, r];
    };
    const failures: string[] = [];
    burners = burnCores(240);
    try {
      for (let i = 0; i < ITERATIONS; i++) {
        churn(root, 3, 4, `it${i}`);
        // Forget, then two prunes at once (they meet in every phase: scanning, announcing, deleting),
        // while a backup, a check and a repair run.
        const one = (p: Promise<[string, CliResult]>) => p.then((x) => [x]);
        const runs = (
          await Promise.all([
            one(run('backup', ['backup'])),
            (async (): Promise<[string, CliResult][]> => {
              const f = await run('forget', ['forget']);
              if (f[1].code !== 0) return [f];
              return Promise.all([
                run('prune', ['prune', '--grace', '0s', '--json']),
                run('second prune', ['prune', '--grace', '0s', '--json'], 50 * i),
              ]);
            })(),
            one(run('check', i % 2 ? ['check', '--read-data', '--identity', identity()] : ['check'])),
            one(run('repair', ['repair'], 200 * i)),
          ])
        ).flat();
        for (const [name, r] of runs) {
          if (r.code !== 0)
            failures.push(
              `iteration ${i}: ${name} exited ${r.code}: ${r.stderr.slice(-1500)} ${r.stdout.slice(-1500)}`,
            );
        }
      }
    } finally {
      killBurners();
    }
    assert.deepEqual(failures, [], failures.join('\n\n'));
    t.diagnostic(
      `prunes meanwhile: ${pruned.executed} marks acted on, ${pruned.deletedPacks} packs deleted, ${pruned.deferred} deferred to another prune`,
    );
    assert.ok(pruned.deletedPacks > 0, 'prunes deleted packs while the other commands ran');

    // The marks of the last prunes are due now: one more pass deletes what they name.
    for (const args of [['prune', '--grace', '0s'], ['backup']]) {
      const r = await runCli(args, { env });
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr.slice(-2000)}`);
    }
    const checked = await runCli(['check', '--read-data', '--identity', identity(), '--json'], { env });
    assert.equal(checked.code, 0, checked.stdout.slice(-3000) + checked.stderr.slice(-2000));
    assert.equal((JSON.parse(checked.stdout) as { ok: boolean }).ok, true);
    const counts = await assertTargetsIntact(configFile, identity());
    assert.equal(counts[0], counts[1], 'both targets hold the same snapshots');

    // The latest snapshot restores, file for file.
    const out = path.join(dir, 'restored');
    const restored = await runCli(
      ['restore', '--source', 'tarballs', '--tarballs', out, '--identity', identity(), '--json'],
      { env },
    );
    assert.equal(restored.code, 0, restored.stderr.slice(-2000));
    const want = files(root).map((f) => path.relative(root, f));
    assert.deepEqual(
      files(out).map((f) => path.relative(out, f)),
      want,
    );
    for (const f of want)
      assert.ok(
        readFileSync(path.join(out, f)).equals(readFileSync(path.join(root, f))),
        `${f} restored intact`,
      );
  });
});
