import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { tmpDir } from '../harness/index.js';
import { runCli } from '../helpers/cli.js';

test('a YAML mistake: where the parser noticed it, no dangling colon, and the lines leading up to it', () => {
  const text = [
    'keys: ./keys/worker.key',
    'sources:',
    '  tarballs:',
    '    - name: t',
    '      path: [oops',
    'targets: []',
    '',
  ].join('\n');
  let err: unknown;
  try {
    parseConfig(text, 'regbackup.yaml', {});
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError);
  const problem = err.problems[0]!;
  assert.match(problem, /^line 6, column 1: Flow sequence .* end with a \]\n/);
  assert.doesNotMatch(problem.split('\n')[0]!, /:$/);
  // The unclosed "[" two lines above the position is shown.
  assert.match(problem, /\n +5 \| {7}path: \[oops\n +> +6 \| targets: \[\]$/);
});

test('a YAML mistake next to a literal secret does not print the secret', () => {
  const text = 'targets:\n  - name: a\n    secretAccessKey: "hunter2-hunter2"\n    bucket: [b\n  - x\n';
  assert.throws(
    () => parseConfig(text, 'regbackup.yaml', {}),
    (e: unknown) => e instanceof ConfigError && !e.message.includes('hunter2') && /line \d+/.test(e.message),
  );
});

test('keys show with a configuration it cannot read lists every problem', async (t) => {
  const dir = await tmpDir(t);
  const file = path.join(dir, 'regbackup.yaml');
  writeFileSync(file, 'keys: 5\n');
  const r = await runCli(['--config', file, 'keys', 'show']);
  assert.equal(r.code, 2);
  assert.doesNotMatch(r.stderr, /problems:\)/);
  assert.match(r.stderr, /has 2 problems:\n {2}- keys: got 5, expected string\n {2}- targets: is required/);
});

test('config check on disk: a missing target directory is for init to create; a file there is an error', async (t) => {
  const { checkOnDisk } = await import('../../src/config/check.js');
  const dir = await tmpDir(t);
  writeFileSync(path.join(dir, 'worker.key'), '');
  writeFileSync(path.join(dir, 'a-file'), '');
  const config = parseConfig(
    `keys: ./worker.key\ntargets:\n  - { name: new, type: fs, path: ./not/yet }\n  - { name: file, type: fs, path: ./a-file }\n`,
    path.join(dir, 'regbackup.yaml'),
    {},
  );
  const r = checkOnDisk(config);
  assert.deepEqual(r.errors, [`targets[1].path (file): ${path.join(dir, 'a-file')} is not a directory`]);
  assert.match(
    r.warnings.join('\n'),
    /targets\[0\]\.path \(new\): .*not\/yet does not exist yet; `regbackup init` creates it/,
  );
});
