/**
 * Issue 11, CouchDB side: time and peak RSS of `regbackup backup` of a CouchDB database as it grows, beside
 * the server's own read floor (`_all_docs?include_docs=true` streamed to /dev/null, curl) and `couchbackup`,
 * in the same run; then an incremental backup after 1 % churn and a run with no change.
 *
 *   npx tsc -p tsconfig.json && node --openssl-legacy-provider dist/bench/scale-couch.js \
 *       [--sizes 10000,100000] [--big 10] [--url http://admin:secret@127.0.0.1:25984] [--out /tmp/i11-couch/bench]
 *       [--no-couchbackup] [--port 25984] [--data /tmp/i11-couch/couchdb]
 *
 * Without --url it starts a real Apache CouchDB with /work/scratch/couchdb/start.sh (port and data directory
 * of its own) and stops it at the end. Databases `small-<N>` (N packuments of 2–6 KB, test/generate/small.ts)
 * and `big-<K>` (K packuments of ~20 MB) are loaded once and kept in the data directory: a later run only
 * loads what is missing. `--sizes 10000,100000,1000000` gives the whole curve (the 1M load takes a while).
 *
 * Two floors: the server's cheapest full read (`_all_docs?include_docs=true` to /dev/null, curl) and the
 * cheapest revision-exact one (`_changes` + `_bulk_get?revs=true`, bench/couch-read-floor.ts: histories are only
 * in `_bulk_get`/`open_revs` answers), so that the distance between the two is the server's, not regbackup's.
 *
 * Beside the wall time: the CPU seconds (user + system) of each contender, and those CouchDB (beam.smp) spent
 * meanwhile — known when the server was started here, or with --data naming the data directory of the one at
 * --url. On a shared machine the CPU seconds are the steadier figure: on 2 cores the server's own work and the
 * pipeline's must fit side by side.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadIntoCouch } from '../test/generate/couch.js';
import type { Packument } from '../test/generate/registry.js';
import { churnedIndexes, smallPackument, smallPackuments } from '../test/generate/small.js';
import { pageFaultCost, fmt, measure, table, type Measured } from './lib/run.js';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string' },
    big: { type: 'string' },
    url: { type: 'string' },
    out: { type: 'string' },
    port: { type: 'string' },
    data: { type: 'string' },
    'no-couchbackup': { type: 'boolean' },
    'keep-repos': { type: 'boolean' },
  },
});
const out = values.out ?? '/tmp/i11-couch/bench';
const sizes = (values.sizes ?? '10000,100000').split(',').filter(Boolean).map(Number);
const bigDocs = Number(values.big ?? '8');
const here = path.dirname(new URL(import.meta.url).pathname);
const ROOT = path.join(here, '..', '..');
const BIN = path.join(ROOT, 'bin', 'regbackup.js');
const COUCHBACKUP = path.join(ROOT, 'node_modules', '.bin', 'couchbackup');
const SCRATCH = '/work/scratch/couchdb';
await mkdir(out, { recursive: true });
console.log(pageFaultCost());

// --- the server ------------------------------------------------------------------------------------------
let url = values.url;
let stopServer = async () => {};
const dataDir = values.data ?? (values.url ? undefined : '/tmp/i11-couch/couchdb');
if (!url) {
  const port = values.port ?? '25984';
  const data = dataDir!;
  execFileSync(path.join(SCRATCH, 'start.sh'), [port, data], { stdio: 'inherit' });
  url = `http://admin:secret@127.0.0.1:${port}`;
  stopServer = async () => {
    execFileSync(path.join(SCRATCH, 'stop.sh'), [data], { stdio: 'inherit' });
  };
}
const u = new URL(url);
const auth = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
const base = `${u.protocol}//${u.host}`;

async function couch<T>(method: string, p: string, body?: unknown): Promise<{ status: number; json: T }> {
  const res = await fetch(`${base}${p}`, {
    method,
    headers: { authorization: auth, 'content-type': 'application/json', accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as T };
}

async function docCount(db: string): Promise<number> {
  const r = await couch<{ doc_count?: number }>('GET', `/${db}`);
  return r.status === 200 ? (r.json.doc_count ?? 0) : -1;
}

/** Loads the documents a database is missing (a database is filled in order, so the count says which). */
async function ensureLoaded(db: string, n: number, make: (from: number, to: number) => Iterable<unknown>) {
  const have = await docCount(db);
  if (have === n) return 0;
  if (have > n) throw new Error(`${db} has ${have} documents, more than ${n}: drop it`);
  // An interrupted load can leave holes just below the count: start a few batches earlier (the documents
  // already there come back as conflicts, which the loader reports and skips).
  const from = Math.max(0, have - 4000);
  const t0 = performance.now();
  await loadIntoCouch(url!, db, make(from, n) as Iterable<Packument>, {
    batchSize: 1000,
    maxBatchBytes: 32 * 1024 * 1024,
    concurrency: 2,
  });
  const s = (performance.now() - t0) / 1000;
  const now = await docCount(db);
  if (now !== n) throw new Error(`${db} has ${now} documents after loading, not ${n}: run again to fill it`);
  console.log(`loaded ${n - Math.max(0, have)} documents into ${db} in ${fmt(s)} s`);
  return s;
}

/** Publishes one more version of `fraction` of the documents (the current `_rev` read first). */
async function churn(db: string, n: number, fraction: number, day: number): Promise<number> {
  const ids = churnedIndexes(n, fraction, day);
  let changed = 0;
  for (let i = 0; i < ids.length; i += 1000) {
    const part = ids.slice(i, i + 1000);
    const keys = part.map((k) => smallPackument(k)._id);
    const r = await couch<{
      rows: { doc?: Record<string, unknown> & { versions: Record<string, unknown> } }[];
    }>('POST', `/${db}/_all_docs?include_docs=true`, { keys });
    const docs = r.json.rows.flatMap((row, j) => {
      if (!row.doc) return [];
      const gen =
        Object.keys(row.doc.versions).length - Object.keys(smallPackument(part[j]!).versions).length;
      const next = smallPackument(part[j]!, 1, gen + 1);
      return [{ ...next, _rev: row.doc._rev }];
    });
    const w = await couch<{ ok?: boolean }[]>('POST', `/${db}/_bulk_docs`, { docs });
    changed += w.json.filter((x) => x.ok).length;
  }
  return changed;
}

// --- the contenders --------------------------------------------------------------------------------------
/** CPU seconds (user + system) the CouchDB server has used so far, when its pid is known. */
function serverCpu(): number | undefined {
  const pidFile = dataDir ? path.join(dataDir, 'couchdb.pid') : undefined;
  if (!pidFile || !existsSync(pidFile)) return undefined;
  try {
    const stat = readFileSync(`/proc/${readFileSync(pidFile, 'utf8').trim()}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

interface Run extends Measured {
  /** CPU seconds of the contender (user + system, its children included). */
  cpu: number;
  /** CPU seconds of the CouchDB server meanwhile. */
  serverCpu?: number;
}

/** `measure`, with the contender's CPU time (an inner GNU time) and the server's meanwhile. */
async function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const s0 = serverCpu();
  const m = await measure('/usr/bin/time', ['-f', '__CPU__ %U %S', cmd, ...args], env);
  const s1 = serverCpu();
  const c = /__CPU__ ([\d.]+) ([\d.]+)/.exec(m.stderr);
  return {
    ...m,
    cpu: c ? Number(c[1]) + Number(c[2]) : NaN,
    serverCpu: s0 !== undefined && s1 !== undefined ? s1 - s0 : undefined,
  };
}

const cpuCell = (r: Run) => `${fmt(r.cpu)} / ${r.serverCpu === undefined ? '?' : fmt(r.serverCpu)}`;

async function regbackup(config: string, args: string[]): Promise<Run> {
  return timed(BIN, ['--config', config, ...args], { REGBACKUP_LOG_LEVEL: 'warn' });
}

async function initRepo(dir: string, db: string): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const config = path.join(dir, 'regbackup.yaml');
  writeFileSync(
    config,
    `keys: ./keys/worker.key\ncache: ./cache\nsources:\n  couchdb: [{ name: registry, url: "${url}", databases: [${db}] }]\ntargets:\n  - { name: local, type: fs, path: ./target }\n`,
  );
  await regbackup(config, ['keys', 'generate', '--out', path.join(dir, 'keys')]);
  await regbackup(config, ['init']);
  return config;
}

/** The server's own read floor: the whole database streamed to /dev/null. */
function floor(db: string): Promise<Run> {
  return timed('curl', [
    '-sSf',
    '-o',
    '/dev/null',
    '-H',
    `authorization: ${auth}`,
    `${base}/${db}/_all_docs?include_docs=true`,
  ]);
}

/**
 * The floor of a revision-exact read (bench/couch-read-floor.ts): `_changes` + `_bulk_get?revs=true`, the
 * answers dropped. `_all_docs` has no revision histories, so no revision-exact backup can read less.
 */
function exactFloor(db: string): Promise<Run> {
  return timed(process.execPath, [path.join(here, 'couch-read-floor.js'), db], { COUCH_URL: url });
}

async function couchbackup(db: string): Promise<Run> {
  // A log left by an earlier run would make it refuse (it only resumes from one when told to).
  await rm(path.join(out, `couchbackup-${db}.log`), { force: true });
  await rm(path.join(out, `couchbackup-${db}.txt`), { force: true });
  return timed(COUCHBACKUP, [
    '--url',
    url!,
    '--db',
    db,
    '--request-timeout',
    '600000',
    '--output',
    path.join(out, `couchbackup-${db}.txt`),
    '--log',
    path.join(out, `couchbackup-${db}.log`),
  ]);
}

function du(dir: string): string {
  return execFileSync('du', ['-sh', dir]).toString().split('\t')[0]!;
}

const rows: (string | number)[][] = [
  ['database', 'work', 'contender', 'seconds', 'CPU s (own / CouchDB)', 'peak RSS MiB', 'note'],
];

async function bench(db: string, n: number, opts: { churn: boolean }): Promise<void> {
  const f1 = await floor(db);
  const exact = await exactFloor(db);
  const dir = path.join(out, `rb-${db}`);
  const config = await initRepo(dir, db);
  const full = await regbackup(config, ['backup']);
  const cb = values['no-couchbackup'] ? undefined : await couchbackup(db);
  const f2 = await floor(db);
  const fl = Math.min(f1.seconds, f2.seconds);
  rows.push([
    db,
    'read floor',
    'curl _all_docs',
    fmt(fl, 2),
    cpuCell(f1.seconds <= f2.seconds ? f1 : f2),
    fmt(f1.maxRssMiB),
    `runs ${f1.seconds} / ${f2.seconds} s`,
  ]);
  rows.push([
    db,
    'read floor, revision-exact',
    '_changes + _bulk_get?revs=true',
    fmt(exact.seconds, 2),
    cpuCell(exact),
    fmt(exact.maxRssMiB),
    `${fmt(exact.seconds / fl, 2)}x the _all_docs floor: the server's cost of the histories`,
  ]);
  rows.push([
    db,
    'full',
    'regbackup',
    fmt(full.seconds, 2),
    cpuCell(full),
    fmt(full.maxRssMiB),
    `${fmt(full.seconds / fl, 2)}x floor (goal <= 1.5x), ${fmt(full.seconds / exact.seconds, 2)}x the revision-exact floor; ${fmt(n / full.seconds, 0)} docs/s; repo ${du(path.join(dir, 'target'))}`,
  ]);
  if (cb)
    rows.push([
      db,
      'full',
      'couchbackup',
      fmt(cb.seconds, 2),
      cpuCell(cb),
      fmt(cb.maxRssMiB),
      `${fmt(cb.seconds / full.seconds, 2)}x regbackup's time`,
    ]);
  if (opts.churn) {
    const changed = await churn(db, n, 0.01, Date.now() % 1000);
    const inc = await regbackup(config, ['backup']);
    rows.push([
      db,
      `incr. 1% (${changed})`,
      'regbackup',
      fmt(inc.seconds, 2),
      cpuCell(inc),
      fmt(inc.maxRssMiB),
      `${fmt((100 * inc.seconds) / full.seconds, 1)}% of full (goal <= 5%)`,
    ]);
  }
  const none = await regbackup(config, ['backup']);
  const start = await regbackup(config, ['--version']);
  rows.push([
    db,
    'no change',
    'regbackup',
    fmt(none.seconds, 2),
    cpuCell(none),
    fmt(none.maxRssMiB),
    `process start (--version) ${fmt(start.seconds, 2)} s: work ${fmt(none.seconds - start.seconds, 2)} s`,
  ]);
  if (!values['keep-repos']) await rm(dir, { recursive: true, force: true });
  console.log(table(rows));
}

try {
  for (const n of sizes) {
    const db = `small-${n}`;
    await ensureLoaded(db, n, (from, to) => smallPackuments(from, to));
    await bench(db, n, { churn: true });
  }
  if (bigDocs > 0) {
    const db = `big-${bigDocs}`;
    // CouchDB refuses documents over 8 MB by default; the public registry has packuments of ~20 MB.
    await couch('PUT', '/_node/_local/_config/couchdb/max_document_size', '67108864');
    await couch('PUT', '/_node/_local/_config/chttpd/max_http_request_size', '134217728');
    // ~20 MB each: a long readme and many versions (the largest real packuments are like this).
    await ensureLoaded(db, bigDocs, function* (from, to) {
      for (let i = from; i < to; i++) {
        const p = smallPackument(i, 2);
        const filler = p.readme.repeat(Math.ceil((20 * 1024 * 1024) / p.readme.length));
        yield { ...p, _id: `big-${i}`, readme: filler.slice(0, 20 * 1024 * 1024) };
      }
    });
    await bench(db, bigDocs, { churn: false });
  }
} finally {
  console.log(
    `\n${table(rows)}\n(machine: ${execFileSync('nproc').toString().trim()} cores; load ${execFileSync('cat', ['/proc/loadavg']).toString().trim()})`,
  );
  await stopServer();
}
