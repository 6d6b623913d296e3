import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs, { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import type { BackupResult } from '../../src/backup/parts.js';
import { ExitCode } from '../../src/errors.js';
import { recordBackup } from '../../src/health/index.js';
import type { BackupRecord, JobRecord } from '../../src/health/records.js';
import { FileStateStore } from '../../src/health/state.js';
import { removeTmpDir, tmpDir } from '../harness/tmp.js';

/** worker-state.json: what a backup records costs one or two rewrites of the file, not one per record. */
describe('the state file: operations issued together share a rewrite', () => {
  let dir: string;
  // Counts the renames onto a state file (what costs), through the module the store imports.
  const renameSync = fs.renameSync;
  let renames = 0;
  before(async () => {
    dir = await tmpDir();
    fs.renameSync = (from, to) => {
      if (String(to).endsWith('worker-state.json')) renames++;
      renameSync(from, to);
    };
    syncBuiltinESMExports();
  });
  after(async () => {
    fs.renameSync = renameSync;
    syncBuiltinESMExports();
    await removeTmpDir(dir);
  });

  const result: BackupResult = {
    runId: 'r1',
    snapshot: { id: 'a'.repeat(64), time: new Date().toISOString(), key: 'snapshots/x' },
    targets: [
      { name: 's3', status: 'ok', bytesWritten: 10 },
      { name: 'gcs', status: 'ok', bytesWritten: 20 },
    ],
    sources: [],
    findings: [],
    stats: { durationMs: 5, newBytes: 3 },
    exitCode: ExitCode.ok,
  };

  test('a backup record (3 sources, 2 targets) rewrites the file at most twice, and holds every record', async () => {
    const file = path.join(dir, 'a', 'worker-state.json');
    const state = new FileStateStore(file);
    await recordBackup(state, { result, started: Date.now() - 5, sources: ['db1', 'db2', 'tarballs'] });
    assert.ok(renames >= 1 && renames <= 2, `${renames} rewrites`);
    await recordBackup(state, { result, started: Date.now() - 5, sources: ['db1', 'db2', 'tarballs'] });
    assert.ok(renames <= 4, `${renames} rewrites`);
    await state.close();
    // What another process reads: everything, from the file.
    const again = new FileStateStore(file);
    assert.equal((await again.get<BackupRecord>('backup:last'))!.snapshot, 'a'.repeat(64));
    for (const s of ['db1', 'db2', 'tarballs']) {
      const j = (await again.get<JobRecord>(`job:backup:${s}`))!;
      assert.equal(j.lastStatus, 'ok');
      assert.equal(j.runs, 2);
    }
    assert.deepEqual(await again.counters('bytes:gcs'), {
      newBytes: 6,
      dedupBytes: 0,
      storedBytes: 0,
      written: 40,
    });
    assert.deepEqual(
      readdirSync(path.dirname(file)).filter((n) => n !== 'worker-state.json'),
      [],
      'no temporary file left',
    );
  });

  test('in the order issued: of two setIfAbsent in one batch only the first sets; a file that cannot be read or written fails them all', async () => {
    const state = new FileStateStore(path.join(dir, 'b', 'worker-state.json'));
    const [first, second] = await Promise.all([state.setIfAbsent('k', 1), state.setIfAbsent('k', 2)]);
    assert.deepEqual([first, second, await state.get('k')], [true, false, 1]);
    // The state file's directory is a file: nothing can be written.
    writeFileSync(path.join(dir, 'c'), 'x');
    const broken = new FileStateStore(path.join(dir, 'c', 'worker-state.json'));
    const r = await Promise.allSettled([broken.set('x', 1), broken.get('x'), broken.incr('n', { a: 1 })]);
    assert.deepEqual(
      r.map((x) => x.status),
      ['rejected', 'rejected', 'rejected'],
    );
    assert.equal(readFileSync(path.join(dir, 'c'), 'utf8'), 'x');
  });
});
