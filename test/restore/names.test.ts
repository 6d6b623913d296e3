import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  closeSync,
  createReadStream,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import tar from 'tar-stream';
import type { Finding } from '../../src/sources/types.js';
import type { RestoreReport } from '../../restore/types.js';
import { BIN } from '../helpers/cli.js';
import { tmpDir } from '../harness/index.js';
import { couch, makeFixture, type Fixture } from './fixture.js';

/**
 * Issue 10, finding 1, through the real binary: a tarball store holding a name with a backslash (legal on
 * Linux), one that is not UTF-8 and one with a control character. The backup reports the two it cannot
 * hold (exit 6) and stores the rest; no later backup, restore, check or dump is blocked.
 */

/** Every file under `dir`, as "/"-separated relative names (bytes decoded; these names are all UTF-8). */
function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push(r);
  }
  return out.sort();
}

/** `regbackup dump …` with stdout into a file. */
function dumpTo(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const fd = openSync(file, 'w');
    const child = spawn(process.execPath, [BIN, 'dump', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', fd, 'pipe'],
    });
    const err: Buffer[] = [];
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      closeSync(fd);
      resolve({ code, stderr: Buffer.concat(err).toString() });
    });
  });
}

async function tarNames(file: string): Promise<string[]> {
  const extract = tar.extract();
  const names: string[] = [];
  extract.on('entry', (h, stream, next) => {
    names.push(h.name);
    stream.on('end', next);
    stream.resume();
  });
  const done = new Promise<void>((resolve, reject) => {
    extract.on('finish', () => resolve());
    extract.on('error', reject);
  });
  createReadStream(file).pipe(extract);
  await done;
  return names;
}

describe('names a restore refuses never make a snapshot unrestorable nor stop a later backup (real binary)', () => {
  let f: Fixture;
  let stored: string[];
  let pkg: string;

  before(async () => {
    f = await makeFixture({ packages: 3 });
    pkg = readdirSync(f.tarballsDir).find((n) => !n.startsWith('@'))!;
    const generated = walk(f.tarballsDir);
    const put = (rel: Buffer, data: string) => {
      const full = Buffer.concat([Buffer.from(`${f.tarballsDir}/`), rel]);
      mkdirSync(full.subarray(0, full.lastIndexOf(0x2f)), { recursive: true });
      writeFileSync(full, data);
    };
    put(Buffer.from('we\\ird/-/x-1.0.0.tgz'), 'backslash');
    put(Buffer.from('sp ace/-/s-1.0.0.tgz'), 'space');
    put(Buffer.from([...Buffer.from('bad'), 0xff, ...Buffer.from('/-/b-1.0.0.tgz')]), 'not UTF-8');
    put(Buffer.from('ctl\u0001x/-/c-1.0.0.tgz'), 'control character');
    stored = [...generated, 'we\\ird/-/x-1.0.0.tgz', 'sp ace/-/s-1.0.0.tgz'].sort();
  });
  after(() => f.stop());

  const refusedFindings = (stdout: string) =>
    (JSON.parse(stdout) as { findings: Finding[] }).findings.filter((x) => x.code === 'tarball-name-refused');

  test('backup: each name it cannot hold is named (escaped, with the reason), the run is partial (exit 6); the backslash is stored', async () => {
    const r = await f.cli(['backup', '--json']);
    assert.equal(r.code, 6, r.stderr);
    const refused = refusedFindings(r.stdout);
    assert.deepEqual(
      refused.map((x) => [x.object, x.severity]),
      [
        ['"bad\\xff"', 'error'],
        ['"ctl\\u0001x"', 'error'],
      ],
    );
    assert.match(refused[0]!.message, /is not valid UTF-8/);
    assert.match(refused[1]!.message, /contains a control character/);
    assert.doesNotMatch(r.stdout + r.stderr, /disappeared while being read|we\\\\ird/);
  });

  test('the next backup is not blocked by the listing it reads back (exit 6 for the same two names, not 5)', async () => {
    const r = await f.cli(['backup', '--json']);
    assert.equal(r.code, 6, r.stderr);
    assert.doesNotMatch(r.stderr, /bad path/);
    assert.equal(refusedFindings(r.stdout).length, 2);
  });

  test('check: exit 0', async () => {
    const r = await f.cli(['check']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
  });

  test('dump --tarballs: every stored file, the backslash included; exit 0, no stack trace', async () => {
    const file = path.join(f.dir, 'names.tar');
    const r = await dumpTo(file, ['--tarballs'], f.env);
    assert.equal(r.code, 0, r.stderr);
    const names = await tarNames(file);
    assert.deepEqual(
      names
        .filter((n) => n.startsWith('tarballs/'))
        .map((n) => n.slice('tarballs/'.length))
        .sort(),
      stored,
    );
  });

  test('restore of the tarball store: every stored file, byte for byte; exit 0', async () => {
    const dest = path.join(await tmpDir(), 'tarballs');
    const r = await f.cli(['restore', '--source', 'tarballs', '--tarballs', dest]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.deepEqual(walk(dest), stored);
    for (const p of stored)
      assert.deepEqual(readFileSync(path.join(dest, p)), readFileSync(path.join(f.tarballsDir, p)), p);
  });

  test('restore --package: that package, its tarballs; exit 0', async () => {
    const dest = path.join(await tmpDir(), 'tarballs');
    const r = await f.cli([
      'restore',
      '--package',
      pkg,
      '--couchdb',
      f.dest.url,
      '--tarballs',
      dest,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.ok(rep.packages![0]!.files > 0);
    assert.deepEqual(
      walk(dest),
      stored.filter((p) => p.startsWith(`${pkg}/`)),
    );
    assert.equal((await couch(f.dest.url, 'GET', `registry/${encodeURIComponent(pkg)}`)).status, 200);
  });
});
