import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { makeFixture, type JobsFixture } from '../jobs/fixture.js';
import { runCli } from '../helpers/cli.js';

const EXAMPLE = fileURLToPath(new URL('../../../config/regbackup.example.yaml', import.meta.url));

/**
 * config/regbackup.example.yaml is where an operator starts: as it is, `config check` says what is missing;
 * edited only where its comments say EDIT (and the keys made as they say), it backs up a registry.
 */
describe('the example configuration', () => {
  let f: JobsFixture;
  before(async () => {
    f = await makeFixture({ packages: 6 });
  });
  after(() => f.stop());

  test('unedited: config check refuses it, naming the missing key file and tarball store', async () => {
    const dir = path.join(f.dir, 'unedited');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'regbackup.yaml'), readFileSync(EXAMPLE));
    const r = await runCli(['--config', path.join(dir, 'regbackup.yaml'), 'config', 'check'], {
      env: { COUCH_URL: 'http://admin:pw@127.0.0.1:5984' },
    });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /keys: the worker key .*keys\/worker\.key does not exist/);
    assert.match(r.stderr, /keys generate --out/);
    assert.match(r.stderr, /the tarball store \/var\/lib\/registry\/tarballs does not exist/);
    // Nothing is switched on that the operator did not ask for: no queue (BullMQ), no cloud target.
    const plain = parse(readFileSync(EXAMPLE, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(plain).sort(), ['keys', 'sources', 'targets']);
  });

  test('edited only where it says EDIT: config check is clean, and it backs up the registry', async () => {
    const dir = path.join(f.dir, 'edited');
    mkdirSync(dir);
    const lines = readFileSync(EXAMPLE, 'utf8').split('\n');
    const edits = lines.filter((l) => /^\s*[a-z]+:.*# EDIT/.test(l));
    assert.equal(edits.length, 2, 'the two directories; the keys and the URL are made as the comments say');
    const edited = lines.map((l) =>
      !/# EDIT/.test(l) || /^\s*#/.test(l)
        ? l
        : l.includes('tarballs')
          ? l.replace(/path: \S+/, `path: ${path.join(f.registryDir, 'tarballs')}`)
          : l.replace(/path: \S+/, `path: ${path.join(dir, 'backups')}`),
    );
    const config = path.join(dir, 'regbackup.yaml');
    writeFileSync(config, edited.join('\n'));
    const env = { REGBACKUP_CONFIG: config, COUCH_URL: f.couch.url };
    // As the comment above `keys:` says (relative paths are relative to the file).
    assert.equal((await runCli(['keys', 'generate', '--out', path.join(dir, 'keys')], { env })).code, 0);

    const check = await runCli(['config', 'check'], { env });
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /: valid\n/);
    assert.doesNotMatch(check.stdout, /# error:|placeholder/);
    // Durations as written, file paths readable: nothing of this file is a secret but the URL.
    assert.match(check.stdout, /keys: .*\/keys\/worker\.key/);
    assert.doesNotMatch(check.stdout, new RegExp(new URL(f.couch.url).password));

    assert.equal((await runCli(['init'], { env })).code, 0);
    const backup = await runCli(['backup', '--json'], { env });
    assert.equal(backup.code, 0, backup.stderr);
    const snaps = await runCli(['snapshots', '--json'], { env });
    assert.equal(snaps.code, 0, snaps.stderr);
    assert.match(snaps.stdout, /"registry-db"/);
    assert.match(snaps.stdout, /"tarballs"/);
  });
});
