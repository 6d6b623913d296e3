/**
 * Issue 7's benchmark: a repository of 30 daily snapshots of a generated registry (day N: ~2% of the
 * packages publish a version, one is unpublished), then `forget` down to the last 7 snapshots + `prune`, and
 * `check`, beside `restic forget --keep-last 7 --prune` and `restic check` on the same 30 days of data, in
 * one run. Reports time, peak RSS and the storage requests each made (file operations on the local
 * repository, counted with strace: create, read, delete, list; on a copy, so that the time is not strace's).
 *
 *   npm run build && node dist/bench/prune.js [--size 256MiB] [--days 30] [--out /tmp/bench-prune]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { mutateRegistry, writeRegistry } from '../test/generate/registry.js';
import { fmt, measure, table } from './lib/run.js';

const { values } = parseArgs({
  options: { size: { type: 'string' }, days: { type: 'string' }, out: { type: 'string' } },
});
const out = values.out ?? '/tmp/bench-prune';
const days = Number(values.days ?? 30);
const here = path.dirname(new URL(import.meta.url).pathname);
const BIN = path.join(here, '..', '..', 'bin', 'regbackup.js');
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const corpus = path.join(out, 'registry');
const { parseSize } = await import('../src/util/units.js');
await writeRegistry({ out: corpus, targetBytes: parseSize(values.size ?? '256MiB')!, seed: 3 });

const config = path.join(out, 'regbackup.yaml');
writeFileSync(
  config,
  `keys: ./keys/worker.key\ncache: ./cache\nsources:\n  tarballs: [{ name: registry, path: "${corpus}" }]\ntargets:\n  - { name: local, type: fs, path: ./rb-repo }\nretention: { last: 7, hourly: 0, daily: 0, weekly: 0, monthly: 0 }\nprune: { grace: 0s }\n`,
);
const rb = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  measure(BIN, ['--config', config, ...args], {
    REGBACKUP_LOG_LEVEL: 'warn',
    ...env,
  });
const resticRepo = path.join(out, 'restic-repo');
const renv = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(out, 'restic-cache') };
const restic = (args: string[]) => measure('restic', ['--repo', resticRepo, ...args], renv);

await rb(['keys', 'generate', '--out', path.join(out, 'keys')]);
await rb(['init']);
await restic(['init']);
console.log(`backing up ${days} days with both tools …`);
for (let day = 1; day <= days; day++) {
  if (day > 1) await mutateRegistry({ out: corpus, day });
  await rb(['backup', '--quiet']);
  await restic(['backup', '--quiet', corpus]);
}

/** File operations on a local repository, by kind, from an strace of the command (the "requests"). */
async function traced(cmd: string, args: string[], env: NodeJS.ProcessEnv, repoDir: string) {
  const log = path.join(out, `strace-${Date.now()}.txt`);
  const m = await measure(
    'strace',
    [
      '-f',
      '-qq',
      '-e',
      'trace=openat,unlink,unlinkat,rename,renameat,renameat2,getdents64',
      '-o',
      log,
      cmd,
      ...args,
    ],
    env,
  );
  const lines = readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.includes(repoDir));
  const count = (re: RegExp) => lines.filter((l) => re.test(l)).length;
  const ops = {
    create: count(/openat\(.*O_CREAT/),
    read: count(/openat\((?!.*O_CREAT)/),
    delete: count(/unlink/),
    rename: count(/rename/),
  };
  return { ...m, ops, total: ops.create + ops.read + ops.delete + ops.rename };
}

/**
 * The maintenance commands, each run twice on identical copies of both repositories: once under strace to
 * count the file operations, once without it for the time and memory (strace -f slows every system call,
 * and not both tools equally).
 */
const timedDir = `${out}-untraced`;
await rm(timedDir, { recursive: true, force: true });
execFileSync('cp', ['-a', out, timedDir]);
const inDir = (dir: string) => ({
  config: path.join(dir, 'regbackup.yaml'),
  rbDir: path.join(dir, 'rb-repo'),
  resticRepo: path.join(dir, 'restic-repo'),
  renv: { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(dir, 'restic-cache') },
});
const quiet = { REGBACKUP_LOG_LEVEL: 'warn' };
async function both(rbArgs: string[] | undefined, resticArgs?: string[]) {
  const t = inDir(timedDir);
  const o = inDir(out);
  if (rbArgs) {
    const timed = await measure(BIN, ['--config', t.config, ...rbArgs], quiet);
    const ops = await traced(BIN, ['--config', o.config, ...rbArgs], quiet, o.rbDir);
    return { ...ops, seconds: timed.seconds, maxRssMiB: timed.maxRssMiB };
  }
  const timed = await measure('restic', ['--repo', t.resticRepo, ...resticArgs!], t.renv);
  const ops = await traced('restic', ['--repo', o.resticRepo, ...resticArgs!], o.renv, o.resticRepo);
  return { ...ops, seconds: timed.seconds, maxRssMiB: timed.maxRssMiB };
}
const rbDir = path.join(out, 'rb-repo');
// As a daily `forget --prune` runs: the first run forgets and marks; the next (the grace period, 0s here, has
// passed) deletes what the first marked.
const pruneRb1 = await both(['forget', '--prune']);
const pruneRb2 = await both(['prune']);
const pruneRs = await both(undefined, ['forget', '--keep-last', '7', '--prune']);
const checkRb = await both(['check']);
const checkRs = await both(undefined, ['check']);
const du = (d: string) => Number(execFileSync('du', ['-sb', d]).toString().split('\t')[0]);

const rbPrune = {
  seconds: pruneRb1.seconds + pruneRb2.seconds,
  total: pruneRb1.total + pruneRb2.total,
  rss: Math.max(pruneRb1.maxRssMiB, pruneRb2.maxRssMiB),
};
console.log(
  table([
    ['', 'seconds', 'file operations', 'peak RSS MiB', 'repo MB after'],
    [
      'regbackup forget --prune, then prune (mark, then delete)',
      fmt(rbPrune.seconds, 2),
      rbPrune.total,
      fmt(rbPrune.rss),
      fmt(du(rbDir) / 1e6),
    ],
    [
      'restic forget --prune',
      fmt(pruneRs.seconds, 2),
      pruneRs.total,
      fmt(pruneRs.maxRssMiB),
      fmt(du(resticRepo) / 1e6),
    ],
    ['regbackup check', fmt(checkRb.seconds, 2), checkRb.total, fmt(checkRb.maxRssMiB), ''],
    ['restic check', fmt(checkRs.seconds, 2), checkRs.total, fmt(checkRs.maxRssMiB), ''],
  ]),
);
console.log(
  `regbackup seconds: forget --prune (forget, mark) ${fmt(pruneRb1.seconds, 2)}, prune (delete) ${fmt(pruneRb2.seconds, 2)}`,
);
console.log(
  `prune: regbackup/restic time ${fmt(rbPrune.seconds / pruneRs.seconds, 2)}x, requests ${fmt(rbPrune.total / pruneRs.total, 2)}x (goal <= 0.5x); ops regbackup ${JSON.stringify([pruneRb1.ops, pruneRb2.ops])}, restic ${JSON.stringify(pruneRs.ops)}`,
);
