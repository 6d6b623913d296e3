import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RestoreReport } from '../../restore/types.js';
import { BIN } from '../helpers/cli.js';
import { sleep } from '../harness/index.js';
import { databaseState, makeFixture, slowProxy, startChildCouch, type Fixture } from './fixture.js';

/** Every file under `dir` (temporary files included) with its sha1 and mtime. */
function tree(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(path.join(dir, rel))) return out;
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) Object.assign(out, tree(dir, r));
    else {
      const p = path.join(dir, r);
      out[r] =
        `${createHash('sha1').update(readFileSync(p)).digest('hex')} ${Math.floor(statSync(p).mtimeMs)}`;
    }
  }
  return out;
}

/**
 * Environment for a `regbackup` child that sends itself `signal` right after the `n`-th file renamed into place under
 * `dir`: a preloaded module wraps fs/promises' rename (the live ESM bindings follow through
 * syncBuiltinESMExports). A kill at a known point, whatever the speed of the machine.
 */
function killAfterRenames(dir: string, n: number, signal: NodeJS.Signals = 'SIGKILL'): NodeJS.ProcessEnv {
  const hook = path.join(dir, '..', 'kill-after-renames.mjs');
  writeFileSync(
    hook,
    `import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
const rename = fsp.rename;
let n = 0;
fsp.rename = async (from, to) => {
  await rename(from, to);
  if (String(to).includes(${JSON.stringify(`/${path.basename(dir)}/`)}) && ++n === ${n}) process.kill(process.pid, '${signal}');
};
syncBuiltinESMExports();
`,
  );
  return { NODE_OPTIONS: `--import ${pathToFileURL(hook).href}` };
}

describe('a restore killed with SIGKILL and started again', () => {
  let f: Fixture;
  before(async () => {
    f = await makeFixture({ packages: 24 });
  });
  after(() => f.stop());

  function journal():
    | {
        dbs?: Record<string, { checkpoint?: string; done?: boolean }>;
        tarballs?: Record<string, { checkpoint?: string }>;
      }
    | undefined {
    const cache = path.join(f.dir, 'cache');
    for (const repo of existsSync(cache) ? readdirSync(cache) : []) {
      const dir = path.join(cache, repo, 'restore');
      for (const j of existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.json')) : []) {
        try {
          return JSON.parse(readFileSync(path.join(dir, j), 'utf8')) as ReturnType<typeof journal>;
        } catch {
          return undefined; // being replaced: read it again next time
        }
      }
    }
    return undefined;
  }

  /** Starts the restore and SIGKILLs it once `when()` holds; resolves with whether it was killed. */
  async function killWhen(args: string[], when: () => boolean): Promise<boolean> {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, ...f.env },
      stdio: 'ignore',
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    let done = false;
    void exited.then(() => (done = true));
    for (let i = 0; i < 3000 && !done; i++) {
      if (when()) {
        child.kill('SIGKILL');
        await exited;
        return true;
      }
      await sleep(10);
    }
    await exited;
    return false;
  }

  test('continues without redoing finished work, and ends identical to an uninterrupted restore', async () => {
    const proxy = await slowProxy(f.dest.baseUrl, 60);
    const out = path.join(f.dir, 'killed-tarballs');
    const args = [
      'restore',
      '--couchdb',
      proxy.url(f.dest.admin!),
      '--tarballs',
      out,
      '--parallel',
      '1',
      '--batch-bytes',
      '16KiB',
      '--json',
    ];
    try {
      // 1. Killed in the middle of the second database.
      assert.ok(
        await killWhen(args, () => journal()?.dbs?.registry?.checkpoint !== undefined),
        'killed while writing documents',
      );
      const j1 = journal()!;
      assert.equal(j1.dbs?.extra?.done, true);
      assert.notEqual(j1.dbs?.registry?.done, true);
      // 2. Killed again by itself once five tarballs are in place (deterministic: no race with the end).
      const r2 = await f.cli(args, killAfterRenames(out, 5));
      assert.equal(r2.signal, 'SIGKILL', r2.stderr);
      const inPlace = Object.keys(tree(out)).filter((p) => !p.endsWith('.rbtmp'));
      assert.equal(inPlace.length, 5, inPlace.join(', '));
      assert.equal(journal()?.dbs?.registry?.done, true);
      // 3. Runs to the end.
      const r = await f.cli(args);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const rep = JSON.parse(r.stdout) as RestoreReport;
      assert.equal(rep.resumed, true);
      assert.equal(rep.verified, true);
      assert.equal(
        rep.databases.find((d) => d.name === 'extra')!.docs,
        0,
        'a finished database is not written again',
      );
      const t = rep.tarballs[0]!;
      assert.equal(t.skipped, 5, 'files already in place are not written again');
      assert.equal(t.files + t.skipped, t.planned.files);
      assert.equal(t.checks[0]!.actual, t.planned.files, 'counted on the destination');
      assert.equal(rep.databases.find((d) => d.name === 'registry')!.docs, 0);
      assert.equal(journal(), undefined, 'the journal is gone once everything is verified');
    } finally {
      await proxy.stop();
    }
    // The same restore, uninterrupted, elsewhere.
    const clean = await startChildCouch();
    try {
      const cleanOut = path.join(f.dir, 'clean-tarballs');
      const r = await f.cli(['restore', '--couchdb', clean.url, '--tarballs', cleanOut, '--json']);
      assert.equal(r.code, 0, r.stderr);
      for (const db of ['registry', 'extra'])
        assert.deepEqual(await databaseState(f.dest.url, db), await databaseState(clean.url, db), db);
      assert.deepEqual(tree(out), tree(cleanOut));
    } finally {
      await clean.stop();
    }
  });
  test('interrupted (Ctrl-C), destination removed, run again: every file restored and counted on disk', async () => {
    const out = path.join(f.dir, 'wiped-tarballs');
    const args = ['restore', '--tarballs', out, '--parallel', '1', '--json'];
    const r1 = await f.cli(args, killAfterRenames(out, 5, 'SIGINT'));
    assert.equal(r1.code, 9, r1.stderr);
    assert.ok(journal()?.tarballs?.tarballs?.checkpoint, 'the journal has files as done');
    rmSync(out, { recursive: true, force: true });
    const r = await f.cli(args);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.equal(rep.resumed, true);
    const t = rep.tarballs[0]!;
    const onDisk = Object.keys(tree(out));
    assert.equal(onDisk.length, t.planned.files, 'every file is on disk');
    assert.equal(t.checks[0]!.actual, t.planned.files);
    assert.equal(t.files, t.planned.files, 'every file written again');
    for (const p of onDisk)
      assert.ok(readFileSync(path.join(out, p)).equals(readFileSync(path.join(f.tarballsDir, p))), p);
    assert.equal(journal(), undefined);
  });
});
