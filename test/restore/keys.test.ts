import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ageKeygen } from '../harness/index.js';
import { makeFixture, type Fixture } from './fixture.js';

describe('restore keys: the identity is needed, and the wrong one is named', () => {
  let f: Fixture;
  let recipient: string;
  let keyId: string;
  before(async () => {
    f = await makeFixture({ packages: 2 });
    const key = readFileSync(f.identity, 'utf8');
    recipient = /^# recipient: (age1\S+)$/m.exec(key)![1]!;
    keyId = /^# key-id: ([0-9a-f]{16})$/m.exec(key)![1]!;
  });
  after(() => f.stop());

  test('without an identity: exit 7, naming the recipient and key ID it must match; nothing written', async () => {
    const cfg = readFileSync(f.configFile, 'utf8').replace(/^identity: .*\n/m, '');
    const noIdentity = path.join(f.dir, 'no-identity.yaml');
    writeFileSync(noIdentity, cfg);
    for (const cmd of [
      ['restore', '--to', 'new-primary'],
      ['dump', '--db', 'extra'],
    ]) {
      const r = await f.cli(cmd, { REGBACKUP_CONFIG: noIdentity });
      assert.equal(r.code, 7, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `restoring needs the restore identity: the age identity whose recipient is ${recipient} \\(key ID ${keyId}\\)`,
        ),
      );
      assert.match(r.stderr, /--identity FILE/);
      assert.match(r.stderr, /kept offline/);
      assert.match(r.stderr, /New keys cannot decrypt existing backups/);
    }
  });

  test('another key set: exit 7, naming both recipients', async () => {
    const other = path.join(f.dir, 'other-keys');
    const g = await f.cli(['keys', 'generate', '--out', other]);
    assert.equal(g.code, 0, g.stderr);
    const otherRecipient = /^# recipient: (age1\S+)$/m.exec(
      readFileSync(path.join(other, 'restore.key'), 'utf8'),
    )![1]!;
    const r = await f.cli(['restore', '--to', 'new-primary', '--identity', path.join(other, 'restore.key')]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `the identity in .*other-keys/restore\\.key \\(recipient ${otherRecipient}, key ID [0-9a-f]{16}\\) does not match this repository: its content is encrypted to ${recipient} \\(key ID ${keyId}\\)`,
      ),
    );
  });

  test("the right key set's lines around another age identity: refused before anything is decrypted", async () => {
    const forged = readFileSync(f.identity, 'utf8').replace(
      /^AGE-SECRET-KEY-1\S+$/m,
      (await ageKeygen()).identity,
    );
    const file = path.join(f.dir, 'forged.key');
    writeFileSync(file, forged, { mode: 0o600 });
    const r = await f.cli(['restore', '--to', 'new-primary', '--identity', file]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`does not match this repository: its content is encrypted to ${recipient}`),
    );
  });

  test('the worker key given as the identity: exit 7, says which file it is', async () => {
    const r = await f.cli([
      'restore',
      '--to',
      'new-primary',
      '--identity',
      path.join(f.dir, 'keys', 'worker.key'),
    ]);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /is the worker key, not the restore identity/);
    const missing = await f.cli([
      'restore',
      '--to',
      'new-primary',
      '--identity',
      path.join(f.dir, 'nope.key'),
    ]);
    assert.equal(missing.code, 7);
    assert.match(missing.stderr, /restore identity .*nope\.key does not exist/);
    // A disaster-day message: where the identity comes from, never "make new keys".
    assert.match(missing.stderr, /kept offline/);
    assert.match(missing.stderr, /New keys cannot decrypt existing backups/);
    assert.doesNotMatch(missing.stderr, /create keys with/);
  });
});
