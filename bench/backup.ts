/**
 * Issue 4's benchmarks, side by side in one run:
 *
 *   couchdb   full backup of a registry database vs `couchbackup` (@cloudant/couchbackup) on the same server
 *             and data; then ~2% churn (day 2) and an incremental backup (goal: <= 5% of the full's time)
 *   tarballs  full backup of the tarball store vs `restic backup`; day-2 incremental vs restic's
 *   scale     time and peak RSS of a CouchDB backup at several database sizes (small documents)
 *
 *   npm run build && node --openssl-legacy-provider dist/bench/backup.js [--corpus /tmp/corpus-1g] [--only couchdb,tarballs,scale]
 *                     [--scales 10000,100000] [--out /tmp/bench-backup]
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { applyChangesToCouch, loadIntoCouch } from '../test/generate/couch.js';
import {
  generateChanges,
  mutateRegistry,
  readRegistryInfo,
  writeRegistry,
  type Packument,
} from '../test/generate/registry.js';
import { startCouchDB } from '../test/harness/couchdb.js';
import { fmt, measure, table, warm } from './lib/run.js';
import { pendingProxy } from './lib/pending-proxy.js';

const { values } = parseArgs({
  options: {
    corpus: { type: 'string' },
    out: { type: 'string' },
    only: { type: 'string' },
    scales: { type: 'string' },
  },
});
const out = values.out ?? '/tmp/bench-backup';
const only = new Set((values.only ?? 'couchdb,tarballs,scale').split(','));
const here = path.dirname(new URL(import.meta.url).pathname);
const BIN = path.join(here, '..', '..', 'bin', 'regbackup.js');
await mkdir(out, { recursive: true });

/** A fresh corpus copy we may mutate (hard links: mutateRegistry replaces files by rename). */
async function corpusCopy(name: string): Promise<string> {
  const src = values.corpus ?? '/tmp/corpus-1g';
  if (!existsSync(src)) {
    console.log(`generating a 1 GiB corpus in ${src} …`);
    await writeRegistry({ out: src, targetBytes: 1024 ** 3, seed: 1 });
  }
  const dst = path.join(out, name);
  await rm(dst, { recursive: true, force: true });
  execFileSync('cp', ['-al', src, dst]);
  return dst;
}

async function regbackup(dir: string, config: string, args: string[]) {
  return measure(BIN, ['--config', config, ...args], {
    REGBACKUP_LOG_LEVEL: 'warn',
  });
}

async function initRepo(dir: string, yaml: string): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const config = path.join(dir, 'regbackup.yaml');
  writeFileSync(config, yaml);
  await regbackup(dir, config, ['keys', 'generate', '--out', path.join(dir, 'keys')]);
  await regbackup(dir, config, ['init']);
  return config;
}

const rows: (string | number)[][] = [['benchmark', 'contender', 'seconds', 'peak RSS MiB', 'note']];

if (only.has('couchdb')) {
  const corpus = await corpusCopy('couch-corpus');
  const info = readRegistryInfo(corpus);
  if (!info) throw new Error(`${corpus} is not a generated registry`);
  const couch = await startCouchDB({ admin: false });
  try {
    const t0 = performance.now();
    const loaded = await loadIntoCouch(couch.url, 'registry', corpus, { batchSize: 20, concurrency: 2 });
    console.log(
      `loaded ${loaded.docs ?? '?'} packuments into the CouchDB stand-in in ${fmt((performance.now() - t0) / 1000)} s`,
    );
    const dir = path.join(out, 'rb-couch');
    const config = await initRepo(
      dir,
      `keys: ./keys/worker.key\ncache: ./cache\nsources:\n  couchdb: [{ name: skimdb, url: "${couch.url}", databases: [registry], batchSize: 20, concurrency: 4 }]\ntargets:\n  - { name: local, type: fs, path: ./target }\n`,
    );
    // The same batch size and parallelism for both: a _bulk_get of 500 packuments (couchbackup's default) takes
    // the PouchDB stand-in minutes.
    const proxy = await pendingProxy(couch.url);
    const cb = await measure(path.join(here, '..', '..', 'node_modules', '.bin', 'couchbackup'), [
      '--url',
      proxy.url,
      '--db',
      'registry',
      '--buffer-size',
      '20',
      '--parallelism',
      '4',
      '--request-timeout',
      '600000',
      '--output',
      path.join(out, 'couchbackup.txt'),
      '--log',
      path.join(out, 'couchbackup.log'),
    ]);
    await proxy.close();
    const full = await regbackup(dir, config, ['backup']);
    rows.push([
      'couchdb full',
      'couchbackup',
      fmt(cb.seconds, 2),
      fmt(cb.maxRssMiB),
      `${info.stats?.packages ?? ''} packuments`,
    ]);
    rows.push([
      'couchdb full',
      'regbackup',
      fmt(full.seconds, 2),
      fmt(full.maxRssMiB),
      `${fmt(cb.seconds / full.seconds, 2)}x couchbackup (goal >= 3x)`,
    ]);
    const changes = await applyChangesToCouch(couch.url, 'registry', generateChanges(info.options, 2));
    const inc = await regbackup(dir, config, ['backup']);
    rows.push([
      'couchdb day 2',
      'regbackup',
      fmt(inc.seconds, 2),
      fmt(inc.maxRssMiB),
      `${fmt((100 * inc.seconds) / full.seconds, 1)}% of full (goal <= 5%); ${changes.created} created, ${changes.updated} updated, ${changes.deleted} deleted`,
    ]);
  } finally {
    await couch.stop();
  }
}

if (only.has('tarballs')) {
  const corpus = await corpusCopy('tarball-corpus');
  const tarballs = path.join(corpus, 'tarballs');
  const bytes = await warm(tarballs);
  const dir = path.join(out, 'rb-tarballs');
  const config = await initRepo(
    dir,
    `keys: ./keys/worker.key\ncache: ./cache\nsources:\n  tarballs: [{ name: tarballs, path: "${tarballs}" }]\ntargets:\n  - { name: local, type: fs, path: ./target }\n`,
  );
  const restic = path.join(out, 'restic-tarballs');
  await rm(restic, { recursive: true, force: true });
  const env = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(out, 'restic-cache') };
  await measure('restic', ['init', '--repo', restic], env);
  const r1 = await measure('restic', ['backup', '--repo', restic, '--quiet', tarballs], env);
  const b1 = await regbackup(dir, config, ['backup']);
  rows.push([
    'tarballs full',
    'restic 0.14',
    fmt(r1.seconds, 2),
    fmt(r1.maxRssMiB),
    `${fmt(bytes / 1e6 / r1.seconds)} MB/s`,
  ]);
  rows.push([
    'tarballs full',
    'regbackup',
    fmt(b1.seconds, 2),
    fmt(b1.maxRssMiB),
    `${fmt(bytes / 1e6 / b1.seconds)} MB/s = ${fmt(r1.seconds / b1.seconds, 2)}x restic (goal >= 2x)`,
  ]);
  await mutateRegistry({ out: corpus, day: 2 });
  await warm(tarballs);
  const r2 = await measure('restic', ['backup', '--repo', restic, '--quiet', tarballs], env);
  const b2 = await regbackup(dir, config, ['backup']);
  rows.push(['tarballs day 2', 'restic 0.14', fmt(r2.seconds, 2), fmt(r2.maxRssMiB), '']);
  rows.push([
    'tarballs day 2',
    'regbackup',
    fmt(b2.seconds, 2),
    fmt(b2.maxRssMiB),
    `${fmt(b2.seconds / r2.seconds, 2)}x restic's time (goal <= 0.3x)`,
  ]);
}

if (only.has('scale')) {
  for (const n of (values.scales ?? '10000,100000').split(',').map(Number)) {
    const couch = await startCouchDB({ admin: false });
    try {
      // Small documents, many of them: the listing, the changes feed and the sort dominate.
      const docs = function* () {
        for (let i = 0; i < n; i++) {
          yield {
            _id: `pkg-${String(i).padStart(7, '0')}`,
            name: `pkg-${i}`,
            'dist-tags': { latest: '1.0.0' },
            versions: {
              '1.0.0': { name: `pkg-${i}`, version: '1.0.0', dist: { shasum: 'x', tarball: 'x' } },
            },
            readme: 'r'.repeat(200),
          };
        }
      };
      const t0 = performance.now();
      await loadIntoCouch(couch.url, 'scale', docs() as unknown as Iterable<Packument>, {
        batchSize: 1000,
        concurrency: 2,
      });
      const loadS = (performance.now() - t0) / 1000;
      const dir = path.join(out, `rb-scale-${n}`);
      const config = await initRepo(
        dir,
        `keys: ./keys/worker.key\ncache: ./cache\nsources:\n  couchdb: [{ name: skimdb, url: "${couch.url}", databases: [scale], batchSize: 1000 }]\ntargets:\n  - { name: local, type: fs, path: ./target }\n`,
      );
      const full = await regbackup(dir, config, ['backup']);
      rows.push([
        `couchdb ${n} docs`,
        'regbackup',
        fmt(full.seconds, 2),
        fmt(full.maxRssMiB),
        `${fmt(n / full.seconds, 0)} docs/s (load took ${fmt(loadS)} s)`,
      ]);
    } finally {
      await couch.stop();
    }
  }
}

console.log(table(rows));
