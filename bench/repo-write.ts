/**
 * Issue 3's benchmark: a registry-shaped corpus (~23% JSON packuments, ~77% gzip'd tarballs) written through
 * chunk -> ID -> compress -> encrypt -> pack into a local-filesystem target, beside `restic backup` of the same
 * files, in one run, from a warm page cache. Prints input MB/s and peak RSS of both.
 *
 *   npm run build && node dist/bench/repo-write.js --corpus /tmp/corpus-1g [--out /tmp/bench-repo-write]
 *
 * Without --corpus, generates one (test/generate) of --size (default 1GiB).
 */
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fmt, measure, table, warm } from './lib/run.js';

const { values } = parseArgs({
  options: {
    corpus: { type: 'string' },
    out: { type: 'string' },
    size: { type: 'string' },
    workers: { type: 'string' },
  },
});
const out = values.out ?? '/tmp/bench-repo-write';
let corpus = values.corpus;
const here = path.dirname(new URL(import.meta.url).pathname);
if (!corpus) {
  corpus = path.join(out, 'corpus');
  if (!existsSync(corpus)) {
    console.log(`generating a ${values.size ?? '1GiB'} corpus in ${corpus} …`);
    await measure('node', [
      path.join(here, '..', 'test', 'generate', 'cli.js'),
      '--out',
      corpus,
      '--size',
      values.size ?? '1GiB',
      '--seed',
      '1',
    ]);
  }
}
await rm(path.join(out, 'rb'), { recursive: true, force: true });
await rm(path.join(out, 'restic'), { recursive: true, force: true });
await mkdir(out, { recursive: true });
const bytes = await warm(corpus);
console.log(`corpus ${corpus}: ${fmt(bytes / 1e6)} MB (page cache warmed)`);

// The same heap cap as the regbackup binary (its shebang).
const rb = await measure('node', [
  '--max-old-space-size=256',
  path.join(here, 'write-tree.js'),
  '--src',
  corpus,
  '--repo',
  path.join(out, 'rb', 'repo'),
  ...(values.workers ? ['--workers', values.workers] : []),
]);
const rbStats = JSON.parse(rb.stdout.trim().split('\n').pop()!) as {
  newBytes: number;
  storedBytes: number;
  packs: number;
};

const env = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(out, 'restic-cache') };
await measure('restic', ['init', '--repo', path.join(out, 'restic')], env);
const restic = await measure(
  'restic',
  ['backup', '--repo', path.join(out, 'restic'), '--quiet', corpus],
  env,
);
const { stdout: resticStats } = await measure(
  'restic',
  ['stats', '--repo', path.join(out, 'restic'), '--mode', 'raw-data', '--json'],
  env,
);
const resticStored = (JSON.parse(resticStats) as { total_size: number }).total_size;

const mbs = (s: number) => bytes / 1e6 / s;
console.log(
  table([
    ['', 'seconds', 'MB/s', 'peak RSS MiB', 'stored MB'],
    [
      'regbackup',
      fmt(rb.seconds, 2),
      fmt(mbs(rb.seconds)),
      fmt(rb.maxRssMiB),
      fmt(rbStats.storedBytes / 1e6),
    ],
    [
      'restic 0.14',
      fmt(restic.seconds, 2),
      fmt(mbs(restic.seconds)),
      fmt(restic.maxRssMiB),
      fmt(resticStored / 1e6),
    ],
  ]),
);
console.log(
  `throughput ratio regbackup/restic: ${fmt(restic.seconds / rb.seconds, 2)}x (goal >= 2x); regbackup peak RSS ${fmt(rb.maxRssMiB)} MiB (goal <= 200)`,
);
