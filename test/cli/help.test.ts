import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../helpers/cli.js';

test('restore --help shows worked examples and what a disaster day needs', async () => {
  const r = await runCli(['restore', '--help']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\nExamples:\n/);
  assert.match(r.stdout, /regbackup restore --to new-primary --dry-run/);
  assert.match(r.stdout, /--package lodash --force/);
  assert.match(r.stdout, /restore identity/);
});
