import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';

/**
 * The layer rules of eslint.config.js (issue 14) hold: an upward import is an error in `npm run lint`, and the
 * imports the layers allow are not. Lints probe texts under made-up file names in the real configuration, so
 * a rule that rots (a renamed folder, a `files` block that stops matching) fails here.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const eslint = new ESLint({ cwd: root });

async function restricted(file: string, from: string): Promise<string[]> {
  const code = `import { x } from '${from}';\nexport const y = x;\n`;
  const [result] = await eslint.lintText(code, { filePath: path.join(root, file) });
  assert.ok(result, `no lint result for ${file}`);
  return result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

const upward: [string, string][] = [
  ['src/repo/format/probe.ts', '../../backup/run.js'],
  ['src/repo/probe.ts', '../sources/tarballs/source.js'],
  ['src/repo/probe.ts', '../../restore/engine.js'],
  ['src/store/probe.ts', '../repo/reader.js'],
  ['src/store/probe.ts', '../maintenance/marks.js'],
  ['src/util/probe.ts', '../repo/ids.js'],
  ['src/sources/couchdb/probe.ts', '../../../restore/couchdb.js'],
  ['src/sources/couchdb/probe.ts', '../../backup/run.js'],
  ['src/maintenance/probe.ts', '../backup/plan.js'],
  ['src/backup/probe.ts', '../../jobs/locks.js'],
  ['src/health/probe.ts', '../../restore/drill.js'],
  ['restore/probe.ts', '../src/sources/tarballs/walk.js'],
  ['restore/probe.ts', '../src/cli/main.js'],
  ['jobs/probe.ts', '../src/cli/main.js'],
  ['src/cli/probe.ts', '../../test/helpers/repo.js'],
  ['restore/probe.ts', '../bench/lib/run.js'],
  ['test/probe.ts', '../bench/lib/run.js'],
];

test('an upward import is a lint error', async () => {
  for (const [file, from] of upward) {
    const messages = await restricted(file, from);
    assert.equal(messages.length, 1, `${file} importing ${from}: ${JSON.stringify(messages)}`);
  }
});

const allowed: [string, string][] = [
  ['src/cli/probe.ts', '../../restore/engine.js'],
  ['src/cli/probe.ts', '../../jobs/driver.js'],
  ['jobs/probe.ts', '../restore/drill.js'],
  ['restore/probe.ts', '../src/repo/format/listing.js'],
  ['restore/probe.ts', '../src/couchdb/client.js'],
  ['src/sources/tarballs/probe.ts', '../../repo/format/tarball-listing.js'],
  ['src/store/probe.ts', '../repo/names.js'],
  ['src/repo/probe.ts', '../store/types.js'],
  ['test/probe.ts', '../src/sources/tarballs/source.js'],
  ['bench/probe.ts', '../test/generate/registry.js'],
];

test('the imports the layers allow are not errors', async () => {
  for (const [file, from] of allowed) {
    assert.deepEqual(await restricted(file, from), [], `${file} importing ${from}`);
  }
});
