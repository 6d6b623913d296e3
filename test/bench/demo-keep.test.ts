import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpDir } from '../harness/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DEMO = path.join(ROOT, 'dist/bench/demo.js');

function collect(child: ChildProcess): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  return { out: () => out, err: () => err };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.on('close', (code) => resolve(code));
  });
}

async function until(what: string, ok: () => boolean, child: ChildProcess): Promise<void> {
  while (!ok()) {
    if (child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Runs one printed command as an operator would: in bash, from the project folder, after `source demo.env`. */
function shell(envFile: string, command: string): ChildProcess {
  return spawn('bash', ['-c', `set -euo pipefail; source '${envFile}'; ${command}`], {
    cwd: ROOT,
    // The operator's shell has no REGBACKUP_CONFIG of its own: demo.env must provide everything.
    env: { ...process.env, REGBACKUP_CONFIG: undefined, COUCH_URL: undefined },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
}

test(
  'npm run demo -- --keep: every command it prints works after `source demo.env`',
  { timeout: 240_000 },
  async (t) => {
    const dir = await tmpDir(t, 'regbackup-demo-keep-');
    const demo = spawn(
      process.execPath,
      ['--openssl-legacy-provider', DEMO, '--packages', '12', '--dir', dir, '--keep'],
      {
        cwd: ROOT,
        env: { ...process.env, REGBACKUP_CONFIG: undefined },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    t.after(() => {
      if (demo.exitCode === null) demo.kill('SIGKILL');
    });
    const d = collect(demo);
    await until('the servers were kept', () => /press Ctrl-C to stop/.test(d.out()), demo);

    const printed = d
      .out()
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^(source |npx regbackup |age -d )/.test(l))
      .map((l) => l.replace(/\s+# .*$/, ''));
    const envFile = /^source (\S+)$/.exec(printed.find((l) => l.startsWith('source '))!)![1]!;
    assert.equal(statSync(envFile).mode & 0o777, 0o600);
    assert.match(readFileSync(envFile, 'utf8'), /^export COUCH_URL='http:\/\/.+'$/m);
    const commands = printed.filter((l) => !l.startsWith('source '));
    assert.ok(commands.length >= 6, printed.join('\n'));

    for (const command of commands) {
      const child = shell(envFile, command);
      const c = collect(child);
      if (/ worker$/.test(command)) {
        // Runs until stopped: it must start the schedule, then stop cleanly on SIGTERM (to the whole group).
        await until('the worker started', () => /worker started/.test(c.err() + c.out()), child);
        process.kill(-child.pid!, 'SIGTERM');
        await exited(child);
        // bash and npx die of the signal; the worker itself finishes its shutdown.
        assert.match(c.err() + c.out(), /worker stopped/);
        continue;
      }
      const code = await exited(child);
      assert.equal(code, 0, `${command}\n${c.out().slice(-2000)}\n${c.err().slice(-2000)}`);
      // Machine-readable output, and a snapshot decrypted by hand, are JSON.
      if (command.includes('--json') || command.startsWith('age -d')) JSON.parse(c.out());
    }
    assert.ok(readdirSync(path.join(dir, 'restored-tarballs')).length > 0);

    demo.kill('SIGINT');
    assert.equal(await exited(demo), 0, d.err());
    // --dir was given: the operator's folder stays.
    assert.ok(statSync(path.join(dir, 'regbackup.yaml')).isFile());
  },
);

test(
  'npm run demo without --keep removes what it wrote to the temporary directory',
  { timeout: 240_000 },
  async (t) => {
    const tmp = await tmpDir(t, 'regbackup-demo-tmp-');
    const demo = spawn(
      process.execPath,
      ['--openssl-legacy-provider', DEMO, '--packages', '5', '--no-keep'],
      {
        cwd: ROOT,
        env: { ...process.env, REGBACKUP_CONFIG: undefined, TMPDIR: tmp },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const d = collect(demo);
    assert.equal(await exited(demo), 0, `${d.out().slice(-2000)}\n${d.err().slice(-2000)}`);
    assert.match(d.out(), /is removed/);
    assert.deepEqual(
      readdirSync(tmp).filter((n) => n.startsWith('regbackup-demo-')),
      [],
    );
  },
);
