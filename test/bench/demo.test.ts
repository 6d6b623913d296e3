import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpDir } from '../harness/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test(
  'npm run demo: stand-ins, keys, backup, a day of changes, incremental backup, a passing drill from each target, health OK',
  { timeout: 180_000 },
  async (t) => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.equal(pkg.scripts.demo, 'node --openssl-legacy-provider dist/bench/demo.js');
    const dir = await tmpDir(t, 'regbackup-demo-test-');
    // The script `npm run demo` runs, with a smaller registry (the default is 300 packages).
    const child = spawn(
      process.execPath,
      ['--openssl-legacy-provider', path.join(ROOT, 'dist/bench/demo.js'), '--packages', '40', '--dir', dir],
      {
        cwd: ROOT,
        env: { ...process.env, REGBACKUP_CONFIG: undefined },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, `${out.slice(-3000)}\n${err.slice(-3000)}`);
    for (const re of [
      /==> Generating a registry of 40 packages/,
      /\$ regbackup keys generate --out keys/,
      /\$ regbackup backup\nsnapshot [0-9a-f]{12} at .*\nread .*\n.*\n {2}registry: 40 docs, 0 deleted, 0 with conflicts, seq \d+ \(full\)/,
      /registry: \d+ docs, \d+ deleted, 0 with conflicts, seq \d+ \(incremental\)/,
      /restore drill [0-9a-f]{8} at .*: PASSED/,
      /target aws: PASSED {2}RTO /,
      /target offsite: PASSED {2}RTO /,
      /\$ regbackup check-health\nREGBACKUP OK - 2 targets/,
      /What to try next:/,
    ]) {
      assert.match(out, re);
    }
    assert.doesNotMatch(out, /FAIL /);
    // Nothing secret in the narration: the CouchDB admin password and the keys stay in the files.
    const restoreKey = readFileSync(path.join(dir, 'keys/restore.key'), 'utf8');
    assert.ok(!out.includes(/AGE-SECRET-KEY-1\S+/.exec(restoreKey)![0]));
    assert.doesNotMatch(out, /regbackup:[A-Za-z0-9_-]{20,}@/);
  },
);
