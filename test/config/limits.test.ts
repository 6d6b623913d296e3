import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { generateKeys } from '../../src/repo/keys.js';
import { Repository } from '../../src/repo/repository.js';
import { MemoryStore } from '../../src/store/memory.js';
import { tmpDir } from '../harness/index.js';
import { BIN, runCli } from '../helpers/cli.js';

const PACK_RANGE = 'allowed from 64 KiB to 1 GiB (65536 to 1073741824 bytes)';

describe('settings that would break the repository are refused by config check and init', () => {
  let dir: string;

  before(async () => {
    dir = await tmpDir();
    const keys = await runCli(['keys', 'generate', '--out', path.join(dir, 'keys')]);
    assert.equal(keys.code, 0, keys.stderr);
  });

  function writeConfig(name: string, repository: string, targetPath = './target'): string {
    const file = path.join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      `keys: ./keys/worker.key
cache: ./cache
repository: ${repository}
targets:
  - name: local
    type: fs
    path: ${targetPath}
`,
    );
    return file;
  }

  for (const [packSize, shown] of [
    ['0', '0'],
    ['1', '1'],
    ['1e15', '1000000000000000'],
    ['2GiB', '"2GiB"'],
    ['65535', '65535'],
  ] as const) {
    it(`packSize ${packSize}: refused with the allowed range, nothing created`, async () => {
      const file = writeConfig(`pack-${packSize}`, `{ packSize: ${packSize} }`, `./target-${packSize}`);
      for (const command of [['config', 'check'], ['init']]) {
        const r = await runCli([...command, '--config', file]);
        assert.equal(r.code, 2, `${command.join(' ')}: ${r.stderr}`);
        assert.match(
          r.stderr,
          new RegExp(
            `repository\\.packSize: got ${shown}, out of range: ${PACK_RANGE.replace(/[()]/g, '\\$&')}`,
          ),
        );
      }
      assert.ok(!existsSync(path.join(dir, `target-${packSize}`)), 'init wrote nothing');
    });
  }

  it('compressionLevel 0 and 20: refused with the allowed range', async () => {
    for (const level of [0, 20]) {
      const file = writeConfig(`level-${level}`, `{ compressionLevel: ${level} }`);
      for (const command of [['config', 'check'], ['init']]) {
        const r = await runCli([...command, '--config', file]);
        assert.equal(r.code, 2, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(`repository\\.compressionLevel: got ${level}, out of range: allowed from 1 to 19`),
        );
      }
    }
  });

  it('the limits themselves are accepted, and init creates a repository every command can open', async () => {
    for (const [name, packSize] of [
      ['min', '64KiB'],
      ['max', '1GiB'],
    ]) {
      const file = writeConfig(
        `ok-${name}`,
        `{ packSize: ${packSize}, compressionLevel: 19 }`,
        `./ok-${name}`,
      );
      const check = await runCli(['config', 'check', '--config', file]);
      assert.equal(check.code, 0, check.stderr);
      const init = await runCli(['init', '--config', file]);
      assert.equal(init.code, 0, init.stderr);
      const snapshots = await runCli(['snapshots', '--config', file]);
      assert.equal(snapshots.code, 0, snapshots.stderr);
    }
  });

  it('a zero request timeout or health interval: refused (every request would fail, the worker would spin)', async () => {
    const file = path.join(dir, 'durations.yaml');
    writeFileSync(
      file,
      `keys: ./keys/worker.key
sources: { couchdb: [{ name: registry, url: "http://127.0.0.1:5984", timeout: 0 }] }
targets: [{ name: local, type: fs, path: ./target }]
alerts: { checkInterval: 0s }
metrics: { influxdb: { url: "http://127.0.0.1:8086/write?db=x", interval: 500ms } }
`,
    );
    const r = await runCli(['config', 'check', '--config', file]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /sources\.couchdb\[0\]\.timeout: got 0, out of range: allowed from 1s/);
    assert.match(r.stderr, /alerts\.checkInterval: got "0s", out of range: allowed from 1s/);
    assert.match(r.stderr, /metrics\.influxdb\.interval: got "500ms", out of range: allowed from 1s/);
  });

  it('Repository.init refuses the same values when called directly (the one definition of the limits)', async () => {
    const keys = await generateKeys();
    const store = new MemoryStore('mem');
    for (const params of [
      { packSize: 1, compressionLevel: 3 },
      { packSize: 1e15, compressionLevel: 3 },
      { packSize: 16 * 1024 * 1024, compressionLevel: 0 },
    ]) {
      await assert.rejects(
        Repository.init([store], keys.worker, params),
        (err: unknown) =>
          err instanceof UsageError && /^cannot create a repository with .*: allowed from/.test(err.message),
      );
    }
    assert.equal(await store.stat('config'), undefined, 'nothing written');
  });

  // Used to spin in an endless mkdir loop at 50% CPU. The kill after a minute only keeps a regression from
  // leaving that process behind; it is not a timing assertion.
  it('init on a target path the file system cannot create: a clear error', () => {
    const file = writeConfig('proc', '{}', '/proc/self/nonexistent');
    const r = spawnSync(process.execPath, [BIN, 'init', '--config', file], {
      encoding: 'utf8',
      timeout: 60_000,
      killSignal: 'SIGKILL',
    });
    assert.equal(r.signal, null, 'init ended by itself');
    assert.equal(r.status, 4, r.stderr);
    assert.match(
      r.stderr,
      /target local: cannot create the directory \/proc\/self\/nonexistent \(ENOENT\): the file system refuses to create it/,
    );
  });

  it('init on a target path that is a regular file: says so', async () => {
    writeFileSync(path.join(dir, 'a-file'), 'x');
    const file = writeConfig('file', '{}', './a-file');
    const r = await runCli(['init', '--config', file]);
    assert.equal(r.code, 4, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `target local: ${path.join(dir, 'a-file')} is not a directory \\(ENOTDIR\\): the target path must be a directory`,
      ),
    );
  });
});
