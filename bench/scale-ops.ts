/**
 * Issue 11, the commands other than backup: wall time and peak RSS of `restore`, `check`, `check --read-data`,
 * `drill`, `forget` and `prune` on repositories of many small things, at several sizes, so that growth shows:
 *   - couch-N: a CouchDB database of N packuments of 2–6 KB (test/generate/small.ts), as bench/scale-couch.ts;
 *   - files-N: a tarball store of N files of 0.5–20 KB in the registry layout, as bench/scale-files.ts.
 * Each repository holds two snapshots: the first of the data plus 5 % that the second no longer has (couch:
 * 5 % of the documents churned after it, so their old revisions' blobs are only in the first; files: 5 % more
 * files, removed before the second), so that `forget --keep-last 1` + `prune --grace 0` have work.
 *
 *   npx tsc -p tsconfig.json && node --openssl-legacy-provider dist/bench/scale-ops.js \
 *       [--sizes 10000,100000] [--kinds couch,files] [--ops check,read-data,restore,drill,forget,prune]
 *       [--url http://admin:secret@127.0.0.1:47984] [--dest http://admin:secret@127.0.0.1:47985]
 *       [--out /tmp/h-scale-restore-data] [--stores DIR (default: --out)]
 *
 * `--url` is the CouchDB holding the source databases `small-<N>` (loaded once, kept; the drill restores into
 * it under scratch names); `--dest` a second CouchDB that the restore writes into (its database is deleted
 * first: a restore refuses a non-empty one). Both must be running (/work/scratch/couchdb/start.sh).
 * Peak RSS is GNU time's %M of the CLI: the largest resident set of the process (worker threads included) and
 * of any child it waited for (not their sum).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadIntoCouch } from '../test/generate/couch.js';
import type { Packument } from '../test/generate/registry.js';
import { churnedIndexes, smallPackument, smallPackuments } from '../test/generate/small.js';
import { addVersions, writeSmallStore } from './lib/small-files.js';
import { fmt, measure, table, type Measured } from './lib/run.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string' },
    kinds: { type: 'string' },
    ops: { type: 'string' },
    url: { type: 'string' },
    dest: { type: 'string' },
    out: { type: 'string' },
    'heap-dir': { type: 'string' },
    stores: { type: 'string' },
  },
});
const out = values.out ?? '/tmp/h-scale-restore-data';
/** Where the generated tarball stores are kept (default: --out); several runs can share them. */
const storesDir = values.stores ?? out;
const sizes = (values.sizes ?? '10000,100000').split(',').filter(Boolean).map(Number);
const kinds = (values.kinds ?? 'couch,files').split(',').filter(Boolean);
const ops = new Set((values.ops ?? 'check,read-data,restore,drill,forget,prune').split(','));
const url = values.url ?? 'http://admin:secret@127.0.0.1:47984';
const dest = values.dest ?? 'http://admin:secret@127.0.0.1:47985';
const here = path.dirname(new URL(import.meta.url).pathname);
const ROOT = path.join(here, '..', '..');
const BIN = path.join(ROOT, 'bin', 'regbackup.js');
mkdirSync(out, { recursive: true });

// --- CouchDB -----------------------------------------------------------------------------------------------
function parts(u: string) {
  const x = new URL(u);
  const auth = `Basic ${Buffer.from(`${decodeURIComponent(x.username)}:${decodeURIComponent(x.password)}`).toString('base64')}`;
  return { auth, base: `${x.protocol}//${x.host}` };
}

async function couch<T>(server: string, method: string, p: string, body?: unknown) {
  const { auth, base } = parts(server);
  const res = await fetch(`${base}${p}`, {
    method,
    headers: { authorization: auth, 'content-type': 'application/json', accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as T };
}

async function docCount(db: string): Promise<number> {
  const r = await couch<{ doc_count?: number }>(url, 'GET', `/${db}`);
  return r.status === 200 ? (r.json.doc_count ?? 0) : -1;
}

/** The documents of small-N, generation 0 (the first snapshot sees them). Loaded once, kept. */
async function ensureLoaded(db: string, n: number): Promise<void> {
  const have = await docCount(db);
  if (have === n) return;
  if (have > n) throw new Error(`${db} has ${have} documents, more than ${n}: drop it`);
  const from = Math.max(0, have - 4000);
  const t0 = performance.now();
  await loadIntoCouch(url, db, smallPackuments(from, n) as Iterable<Packument>, {
    batchSize: 1000,
    maxBatchBytes: 32 * 1024 * 1024,
    concurrency: 2,
  });
  const now = await docCount(db);
  if (now !== n) throw new Error(`${db} has ${now} documents after loading, not ${n}: run again`);
  console.log(`loaded ${db} in ${fmt((performance.now() - t0) / 1000)} s`);
}

/** One more version of `fraction` of the documents (their current _rev read first). */
async function churn(db: string, n: number, fraction: number, day: number): Promise<number> {
  const ids = churnedIndexes(n, fraction, day);
  let changed = 0;
  for (let i = 0; i < ids.length; i += 1000) {
    const part = ids.slice(i, i + 1000);
    const keys = part.map((k) => smallPackument(k)._id);
    const r = await couch<{
      rows: { doc?: Record<string, unknown> & { versions: Record<string, unknown> } }[];
    }>(url, 'POST', `/${db}/_all_docs?include_docs=true`, { keys });
    const docs = r.json.rows.flatMap((row, j) => {
      if (!row.doc) return [];
      const gen =
        Object.keys(row.doc.versions).length - Object.keys(smallPackument(part[j]!).versions).length;
      return [{ ...smallPackument(part[j]!, 1, gen + 1), _rev: row.doc._rev }];
    });
    const w = await couch<{ ok?: boolean }[]>(url, 'POST', `/${db}/_bulk_docs`, { docs });
    changed += w.json.filter((x) => x.ok).length;
  }
  return changed;
}

// --- tarball stores (the layout and generator of bench/scale-files.ts) --------------------------------------
function makeStore(n: number): string {
  const dir = path.join(storesDir, `store-${n}`);
  const done = path.join(storesDir, `store-${n}.done`);
  if (existsSync(done)) return dir;
  rmSync(dir, { recursive: true, force: true });
  writeSmallStore(dir, n);
  writeFileSync(done, '');
  return dir;
}

/** 5 % more files (for the first snapshot only); returns their paths. */
function addExtra(store: string, n: number): string[] {
  return addVersions(store, n, 20, '-old', n + 7);
}

// --- the runs ----------------------------------------------------------------------------------------------
async function regbackup(config: string, args: string[]): Promise<Measured> {
  const env: NodeJS.ProcessEnv = { REGBACKUP_LOG_LEVEL: 'warn' };
  if (values['heap-dir']) {
    mkdirSync(values['heap-dir'], { recursive: true });
    env.NODE_OPTIONS = `--heapsnapshot-near-heap-limit=1 --diagnostic-dir=${values['heap-dir']}`;
  }
  return measure(BIN, ['--config', config, ...args], env);
}

function du(dir: string): string {
  return execFileSync('du', ['-sh', dir]).toString().split('\t')[0]!;
}

const rows: (string | number)[][] = [['repository', 'command', 'seconds', 'peak RSS MiB', 'note']];

async function bench(kind: string, n: number): Promise<void> {
  const name = `${kind}-${n}`;
  const dir = path.join(out, `rb-${name}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const config = path.join(dir, 'regbackup.yaml');
  const restoreTo = path.join(dir, 'restored');
  const db = `small-${n}`;
  let store = '';
  if (kind === 'couch') await ensureLoaded(db, n);
  else store = makeStore(n);
  const source =
    kind === 'couch'
      ? `couchdb: [{ name: registry, url: "${url}", databases: [${db}] }]`
      : `tarballs: [{ name: files, path: "${store}" }]`;
  const destination = kind === 'couch' ? `couchdb: "${dest}"` : `tarballs: "${restoreTo}"`;
  writeFileSync(
    config,
    [
      'keys: ./keys/worker.key',
      'identity: ./keys/restore.key',
      'cache: ./cache',
      `sources:\n  ${source}`,
      'targets:\n  - { name: local, type: fs, path: ./target }',
      `destinations:\n  new-primary: { ${destination} }`,
      `drill: { couchdb: "${url}", tarballs: "${path.join(dir, 'drill')}", sample: 50 }`,
      '',
    ].join('\n'),
  );
  await regbackup(config, ['keys', 'generate', '--out', path.join(dir, 'keys')]);
  await regbackup(config, ['init']);

  // Two snapshots; the first has 5 % that the second no longer needs.
  let extra: string[] = [];
  if (kind === 'files') extra = addExtra(store, n);
  let b1: Measured;
  try {
    b1 = await regbackup(config, ['backup']);
  } finally {
    for (const p of extra) unlinkSync(p);
  }
  if (kind === 'couch') await churn(db, n, 0.05, Date.now() % 100000);
  const b2 = await regbackup(config, ['backup']);
  rows.push([
    name,
    'backup (first)',
    fmt(b1.seconds, 2),
    fmt(b1.maxRssMiB),
    `repo ${du(path.join(dir, 'target'))}`,
  ]);
  rows.push([name, 'backup (second)', fmt(b2.seconds, 2), fmt(b2.maxRssMiB), '']);

  const row = (cmd: string, m: Measured, note = '') => {
    rows.push([name, cmd, fmt(m.seconds, 2), fmt(m.maxRssMiB), note]);
    console.log(table([rows[0]!, rows.at(-1)!]));
  };
  if (ops.has('check')) row('check', await regbackup(config, ['check']));
  if (ops.has('read-data')) row('check --read-data', await regbackup(config, ['check', '--read-data']));
  if (ops.has('restore')) {
    if (kind === 'couch') await couch(dest, 'DELETE', `/${db}`);
    else rmSync(restoreTo, { recursive: true, force: true });
    row(
      'restore --to new-primary',
      await regbackup(config, ['restore', '--to', 'new-primary', '--no-resume']),
    );
  }
  if (ops.has('drill')) row('drill', await regbackup(config, ['drill']));
  if (ops.has('forget')) row('forget --keep-last 1', await regbackup(config, ['forget', '--keep-last', '1']));
  if (ops.has('prune')) {
    const p1 = await regbackup(config, ['--json', 'prune', '--grace', '0']);
    row('prune --grace 0 (1st)', p1, summary(p1.stdout));
    const p2 = await regbackup(config, ['--json', 'prune', '--grace', '0']);
    row('prune --grace 0 (2nd)', p2, summary(p2.stdout));
  }
  const blobIndex = execFileSync('sh', ['-c', `du -sh ${path.join(dir, 'cache')} 2>/dev/null || true`])
    .toString()
    .split('\t')[0];
  rows.push([name, '(cache dir)', '', '', `${blobIndex}`]);
}

function summary(stdout: string): string {
  try {
    const r = JSON.parse(stdout) as {
      packs?: { total: number; unneeded: number };
      marked?: { packs: number };
      targets?: { deletedPacks: number }[];
    };
    return `packs ${r.packs?.total} unneeded ${r.packs?.unneeded} marked ${r.marked?.packs} deleted ${r.targets?.reduce((a, t) => a + t.deletedPacks, 0)}`;
  } catch {
    return '';
  }
}

try {
  for (const kind of kinds) for (const n of sizes) await bench(kind, n);
} finally {
  console.log(
    `\n${table(rows)}\n(machine: ${execFileSync('nproc').toString().trim()} cores; load ${readFileSync('/proc/loadavg', 'utf8').trim()})`,
  );
}
