/**
 * Issue 11, tarball stores of many small files: regbackup beside restic, in the same run, at several sizes.
 *
 * For each size N it makes (once, reused by later runs) a store of N files of 0.5–20 KB (random bytes, like
 * compressed tarballs) in the registry layout `<scope>/<package>/-/<package>-<version>.tgz`, then, alternating
 * the contenders on a warm page cache:
 *   - full backup: restic, then regbackup (a fresh repository each), wall time and peak RSS (/usr/bin/time);
 *   - 1 % new files are added (new versions spread over the store), the cache warmed again;
 *   - incremental backup: restic, then regbackup;
 *   - a run with no change: restic, then regbackup;
 *   - the new files are removed again, so the store can be reused.
 * The floor of finding what changed is measured in the same run (walkFloors: find, a Node loop, regbackup's
 * own walk), nothing read.
 *
 *   npm run build && node --openssl-legacy-provider dist/bench/scale-files.js [--files 10000,100000]
 *       [--out /tmp/regbackup-scale-files] [--keep]
 *       [--only regbackup] [--generate-only] [--no-warm]
 *   (--no-warm: the page cache is left as it is; for a store too big to read through in the time there is)
 *   (1M files: --files 1000000; generating it takes ~10 GB of disk and a few minutes)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { addVersions, writeSmallStore } from './lib/small-files.js';
import { pageFaultCost, fmt, measure, table } from './lib/run.js';

const { values } = parseArgs({
  options: {
    files: { type: 'string' },
    out: { type: 'string' },
    keep: { type: 'boolean' },
    only: { type: 'string' },
    'generate-only': { type: 'boolean' },
    'no-warm': { type: 'boolean' },
  },
});
const out = values.out ?? '/tmp/regbackup-scale-files';
const sizes = (values.files ?? '10000,100000').split(',').map(Number);
const only = new Set((values.only ?? 'regbackup,restic').split(','));
const here = path.dirname(new URL(import.meta.url).pathname);
const ROOT = path.join(here, '..', '..');
const BIN = path.join(ROOT, 'bin', 'regbackup.js');
mkdirSync(out, { recursive: true });
console.log(pageFaultCost());

/** Makes (or reuses) a store of n small files; returns its path and total bytes. */
function makeStore(n: number): { dir: string; bytes: number } {
  const dir = path.join(out, `store-${n}`);
  const done = path.join(out, `store-${n}.v2.done`);
  if (existsSync(done)) return { dir, bytes: Number(readFileSync(done, 'utf8')) };
  rmSync(dir, { recursive: true, force: true });
  const t0 = performance.now();
  const bytes = writeSmallStore(dir, n);
  writeFileSync(done, String(bytes));
  console.log(`generated ${n} files (${fmt(bytes / 1e6)} MB) in ${fmt((performance.now() - t0) / 1000)} s`);
  return { dir, bytes };
}

/** Adds 1 % new files (a new version of every 100th package); returns their paths. */
function addChurn(store: string, n: number): string[] {
  return addVersions(store, n, 100, '-new', n + 1);
}

function warm(dir: string): void {
  if (values['no-warm']) return;
  execFileSync('sh', ['-c', `find "${dir}" -type f -print0 | xargs -0 cat > /dev/null`]);
}

async function regbackup(config: string, args: string[]) {
  return measure(BIN, ['--config', config, ...args], { REGBACKUP_LOG_LEVEL: 'warn' });
}

async function initRepo(dir: string, store: string): Promise<string> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const config = path.join(dir, 'regbackup.yaml');
  writeFileSync(
    config,
    `keys: ./keys/worker.key\ncache: ./cache\nsources:\n  tarballs: [{ name: files, path: "${store}" }]\ntargets:\n  - { name: local, type: fs, path: ./target }\n`,
  );
  await regbackup(config, ['keys', 'generate', '--out', path.join(dir, 'keys')]);
  await regbackup(config, ['init']);
  return config;
}

/**
 * The floor of finding what changed, three ways, nothing read: `find` (C, one thread), a tight Node loop of
 * readdirSync(withFileTypes) + statSync (one thread, no sorting, no objects kept), and regbackup's own walk
 * (src/sources/tarballs/walk.ts: sorted, names checked, entries sent from its worker thread(s)).
 */
async function walkFloors(store: string) {
  const find = await measure('sh', ['-c', `find "${store}" -type f -printf '%s %T@ %p\\n' > /dev/null`]);
  const loop = `import { readdirSync, statSync } from 'node:fs';
let n = 0, bytes = 0;
function walk(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = dir + '/' + e.name;
    if (e.isDirectory()) walk(p);
    else if (e.isFile()) { const st = statSync(p); n++; bytes += st.size + (st.mtimeMs > 0 ? 0 : 1); }
  }
}
walk(${JSON.stringify(store)});
if (n === 0) process.exit(1);`;
  const loopFile = path.join(out, 'walk-loop.mjs');
  writeFileSync(loopFile, loop);
  const node = await measure(process.execPath, [loopFile]);
  const script = `import { walkTree } from ${JSON.stringify(path.join(ROOT, 'dist/src/sources/tarballs/walk.js'))};
let n = 0; for await (const e of walkTree(${JSON.stringify(store)})) if (e.kind === 'file') n++;
if (n === 0) process.exit(1);`;
  const file = path.join(out, 'walk-floor.mjs');
  writeFileSync(file, script);
  const ours = await measure(process.execPath, [file]);
  return { find, node, ours };
}

const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const rows: (string | number)[][] = [
  [
    'files',
    'MB',
    'restic full s',
    'RSS MiB',
    'regbackup full s',
    'RSS MiB',
    'speed vs restic',
    'find s',
    'node loop s',
    'walk s',
    'walk RSS MiB',
    'restic +1% s',
    'RSS MiB',
    'regbackup +1% s',
    'RSS MiB',
    'incr/full',
    'incr vs restic',
    'restic 0% s',
    'regbackup 0% s',
    'RSS MiB',
    'load before/after',
  ],
];

for (const n of sizes) {
  const { dir: store, bytes } = makeStore(n);
  if (values['generate-only']) continue;
  const rbDir = path.join(out, `rb-${n}`);
  const resticRepo = path.join(out, `restic-${n}`);
  const env = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(out, 'restic-cache') };
  const restic = (args: string[]) => measure('restic', [...args, '--repo', resticRepo], env);
  let added: string[] = [];
  try {
    const config = await initRepo(rbDir, store);
    rmSync(resticRepo, { recursive: true, force: true });
    await restic(['init']);
    warm(store);
    const load0 = load();
    const floor = await walkFloors(store);
    // Printed at once: at 1M files the backups that follow take long, and the floors are worth having.
    console.log(
      `${n} files, floors: find ${fmt(floor.find.seconds, 2)} s, node loop ${fmt(floor.node.seconds, 2)} s, ` +
        `regbackup walk ${fmt(floor.ours.seconds, 2)} s (${fmt(floor.ours.maxRssMiB, 0)} MiB); load ${load()}`,
    );
    const r1 = only.has('restic') ? await restic(['backup', '--quiet', store]) : undefined;
    const b1 = await regbackup(config, ['backup']);
    added = addChurn(store, n);
    warm(store);
    const r2 = only.has('restic') ? await restic(['backup', '--quiet', store]) : undefined;
    const b2 = await regbackup(config, ['backup']);
    const r3 = only.has('restic') ? await restic(['backup', '--quiet', store]) : undefined;
    const b3 = await regbackup(config, ['backup']);
    const row = [
      n,
      fmt(bytes / 1e6, 0),
      r1 ? fmt(r1.seconds, 2) : '-',
      r1 ? fmt(r1.maxRssMiB, 0) : '-',
      fmt(b1.seconds, 2),
      fmt(b1.maxRssMiB, 0),
      r1 ? `${fmt(r1.seconds / b1.seconds, 2)}x` : '-',
      fmt(floor.find.seconds, 2),
      fmt(floor.node.seconds, 2),
      fmt(floor.ours.seconds, 2),
      fmt(floor.ours.maxRssMiB, 0),
      r2 ? fmt(r2.seconds, 2) : '-',
      r2 ? fmt(r2.maxRssMiB, 0) : '-',
      fmt(b2.seconds, 2),
      fmt(b2.maxRssMiB, 0),
      `${fmt((100 * b2.seconds) / b1.seconds, 1)}%`,
      r2 ? `${fmt(b2.seconds / r2.seconds, 2)}x` : '-',
      r3 ? fmt(r3.seconds, 2) : '-',
      fmt(b3.seconds, 2),
      fmt(b3.maxRssMiB, 0),
      `${load0} / ${load()}`,
    ];
    rows.push(row);
    console.log(table([rows[0]!, row]));
  } finally {
    for (const p of added) unlinkSync(p);
    if (!values.keep) {
      rmSync(rbDir, { recursive: true, force: true });
      rmSync(resticRepo, { recursive: true, force: true });
    }
  }
}

console.log('\nGoals (issue 11): full >= 1.5x restic speed; peak RSS <= 200 MiB at any size;');
console.log('incremental after 1 % new files <= 5 % of the full run and <= 0.5x restic incremental;');
console.log('a run with no change: well under a second beyond process start.\n');
console.log(table(rows));
