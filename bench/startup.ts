/**
 * Issue 11, process start: how much of a command that does little is start-up. Each line is run --repeat
 * times (alternating, so a load spike hits every line alike); the table gives the median and the best wall
 * time, and the median CPU time (user + system, all threads), from /usr/bin/time:
 *   - `node -e 0`: the floor (Node itself);
 *   - importing the CLI (bin/regbackup.js with --version: every module the CLI loads before a command);
 *   - `regbackup --help`;
 *   - `regbackup snapshots` on a small repository (one snapshot);
 *   - a backup with no change of a small tarball store (100 files).
 *
 *   npm run build && node --openssl-legacy-provider dist/bench/startup.js [--repeat 10] [--out /tmp/regbackup-startup]
 *       [--baseline /other/checkout/bin/regbackup.js]
 * With --baseline, each regbackup line is also run with another build (an older commit, say), alternating
 * in the same run, so that before and after are measured under the same load.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fmt, table } from './lib/run.js';

const { values } = parseArgs({
  options: { repeat: { type: 'string' }, out: { type: 'string' }, baseline: { type: 'string' } },
});
const repeat = Number(values.repeat ?? 10);
const out = values.out ?? '/tmp/regbackup-startup';
const here = path.dirname(new URL(import.meta.url).pathname);
const BIN = path.join(here, '..', '..', 'bin', 'regbackup.js');

interface Run {
  wall: number;
  cpu: number;
}

function run(cmd: string[], env: NodeJS.ProcessEnv = {}): Run {
  const r = spawnSync('/usr/bin/time', ['-f', '__TIME__ %e %U %S', ...cmd], {
    env: { ...process.env, REGBACKUP_LOG_LEVEL: 'warn', ...env },
    encoding: 'utf8',
  });
  const m = /__TIME__ ([\d.]+) ([\d.]+) ([\d.]+)/.exec(r.stderr);
  if (r.status !== 0 || !m) throw new Error(`${cmd.join(' ')} failed (exit ${r.status}):\n${r.stderr}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) + Number(m[3]) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// A small repository with one snapshot of a 100-file store.
rmSync(out, { recursive: true, force: true });
const store = path.join(out, 'store');
for (let i = 0; i < 100; i++) {
  const dir = path.join(store, `p${i}`, '-');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `p${i}-1.0.0.tgz`), Buffer.alloc(1000 + i, i));
}
const config = path.join(out, 'regbackup.yaml');
writeFileSync(
  config,
  `keys: ./keys/worker.key\ncache: ./cache\nsources:\n  tarballs: [{ name: files, path: "${store}" }]\ntargets:\n  - { name: local, type: fs, path: ./target }\n`,
);
const rb = (...args: string[]) => [process.execPath, BIN, '--config', config, ...args];
const base = values.baseline ? path.resolve(values.baseline) : undefined;
run(rb('keys', 'generate', '--out', path.join(out, 'keys')));
run(rb('init'));
run(rb('backup', '-q'));

const lines: [string, string[]][] = [
  ['node -e 0 (floor)', [process.execPath, '-e', '0']],
  ['regbackup --version (CLI loaded)', [process.execPath, BIN, '--version']],
  ['regbackup --help', [process.execPath, BIN, '--help']],
  ['regbackup snapshots (1 snapshot)', rb('snapshots')],
  ['regbackup backup, no change (100 files)', rb('backup', '-q')],
];
if (base)
  for (const [name, cmd] of lines.slice(1))
    lines.push([`baseline: ${name}`, cmd.map((a) => (a === BIN ? base : a))]);
const runs = new Map<string, Run[]>(lines.map(([name]) => [name, []]));
for (let i = 0; i < repeat; i++) for (const [name, cmd] of lines) runs.get(name)!.push(run(cmd));

const floor = median(runs.get(lines[0]![0])!.map((r) => r.wall));
const rows: (string | number)[][] = [
  ['command', 'median wall s', 'best wall s', 'median CPU s', 'median wall - floor s'],
];
for (const [name] of lines) {
  const rs = runs.get(name)!;
  const wall = median(rs.map((r) => r.wall));
  rows.push([
    name,
    fmt(wall, 3),
    fmt(Math.min(...rs.map((r) => r.wall)), 3),
    fmt(median(rs.map((r) => r.cpu)), 3),
    fmt(wall - floor, 3),
  ]);
}
console.log(
  `${repeat} runs each, alternating (goal: a command that does little spends <= 0.25 s starting up)\n`,
);
console.log(table(rows));
rmSync(out, { recursive: true, force: true });
