import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const read = (f: string) => readFileSync(`${ROOT}${f}`, 'utf8');

test('the image runs on a pinned Node.js 24 and has the hand-recovery tools', () => {
  const froms = [...read('Dockerfile').matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!);
  assert.ok(froms.length >= 2);
  for (const f of froms) assert.match(f, /^node:24\.\d+\.\d+-bookworm(-slim)?$/, f);
  // docs/DISASTER.md reads a repository by hand with age, zstd and jq.
  assert.match(read('Dockerfile'), /apt-get install[^\n]* age zstd jq/);
  const pkg = JSON.parse(read('package.json')) as {
    engines: { node: string };
    devDependencies: Record<string, string>;
  };
  assert.match(pkg.engines.node, /^>=24/);
  assert.match(pkg.devDependencies.node!, /^24\.\d+\.\d+$/);
  assert.equal(froms[froms.length - 1], `node:${pkg.devDependencies.node}-bookworm-slim`);
});

test('keys and the live configuration never enter the image build context', () => {
  const ignored = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const p of ['keys', '**/*.key', 'regbackup.yaml']) assert.ok(ignored.includes(p), p);
});
