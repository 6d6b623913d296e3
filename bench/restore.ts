/**
 * Issue 5's benchmark: restore, side by side with the peers, in one run.
 *
 * - Tarball store: `regbackup restore --tarballs DIR` of a snapshot of the corpus' tarballs (fs target) beside
 *   `restic restore` of the same files (goal: >= 1.5x restic's throughput). Destination on tmpfs by default
 *   (`--dest-root`), so that the pipeline is measured rather than this VM's disk; `--dest-root /tmp/…` for disk.
 * - CouchDB: `regbackup restore --couchdb URL --db registry` beside `couchrestore` (@cloudant/couchbackup) of a
 *   `couchbackup` of the same database, into the same server (goal: >= 2x faster).
 * - Peak RSS of every run (goal: regbackup <= 200 MB).
 *
 * Each contender runs `--rounds` times (default 3), alternating, from a warm page cache; the table shows the
 * range. Numbers are noisy when other work runs on the machine.
 *
 *   npx tsc -p tsconfig.json && node --openssl-legacy-provider dist/bench/restore.js --corpus /tmp/corpus-1g
 *     [--out /tmp/bench-restore] [--rounds 3] [--dest-root /dev/shm] [--skip-couch] [--skip-tarballs]
 *     [--couch-port 45985 [--couch-data /tmp/bench-restore/couchdb]]
 *
 * With --couch-port, the CouchDB restored into (by both contenders) is a real Apache CouchDB started with
 * /work/scratch/couchdb/start.sh on that port (data directory --couch-data, emptied first) and stopped at the
 * end; without it, the in-process test stand-in (express-pouchdb) behind a proxy that inflates couchrestore's
 * gzip'd bodies. The source the backup reads stays the stand-in (only the restore is measured).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createGunzip } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { loadIntoCouch } from '../test/generate/couch.js';
import { fmt, measure, table, warm, type Measured } from './lib/run.js';

const { values } = parseArgs({
  options: {
    corpus: { type: 'string', default: '/tmp/corpus-1g' },
    out: { type: 'string', default: '/tmp/bench-restore' },
    rounds: { type: 'string', default: '3' },
    'dest-root': { type: 'string', default: '/dev/shm' },
    'skip-couch': { type: 'boolean', default: false },
    'skip-tarballs': { type: 'boolean', default: false },
    parallel: { type: 'string' },
    'couchrestore-args': { type: 'string' },
    'couch-port': { type: 'string' },
    'couch-data': { type: 'string' },
  },
});
const corpus = values.corpus!;
const out = values.out!;
const rounds = Number(values.rounds);
const destRoot = path.join(values['dest-root']!, `bench-restore-${process.pid}`);
const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.join(here, '..', '..', 'bin', 'regbackup.js');
const COUCHBACKUP = path.join(here, '..', '..', 'node_modules', '.bin');
mkdirSync(out, { recursive: true });

function du(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += du(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

const range = (xs: number[], d = 1) =>
  xs.length ? `${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)}` : '-';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

function regbackup(args: string[], env: NodeJS.ProcessEnv): Promise<Measured> {
  return measure('node', [BIN, ...args], {
    REGBACKUP_LOG_LEVEL: 'warn',
    ...env,
  });
}

/** A repository on an fs target with one snapshot of `sources` (reused when it exists). */
async function repoWith(name: string, sourcesYaml: string): Promise<NodeJS.ProcessEnv> {
  const dir = path.join(out, name);
  const config = path.join(dir, 'regbackup.yaml');
  const env = { REGBACKUP_CONFIG: config };
  if (
    existsSync(path.join(dir, 'target', 'snapshots')) &&
    readdirSync(path.join(dir, 'target', 'snapshots')).length
  )
    return env;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    config,
    `keys: ./keys/worker.key\nidentity: ./keys/restore.key\ncache: ./cache\nsources:\n${sourcesYaml}\ntargets:\n  - name: local\n    type: fs\n    path: ./target\n`,
  );
  await regbackup(['keys', 'generate', '--out', path.join(dir, 'keys')], env);
  await regbackup(['init'], env);
  const b = await regbackup(['backup'], env);
  console.log(`  ${name}: backup in ${fmt(b.seconds, 1)} s`);
  return env;
}

async function tarballs(env: NodeJS.ProcessEnv): Promise<void> {
  const src = path.join(corpus, 'tarballs');
  const bytes = du(src);
  console.log(`\n== tarball store: ${src}, ${fmt(bytes / 1e6)} MB; restored into ${destRoot}`);
  const restic = path.join(out, 'restic');
  const renv = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(out, 'restic-cache') };
  if (!existsSync(path.join(restic, 'config'))) {
    await measure('restic', ['init', '--repo', restic], renv);
    await measure('restic', ['backup', '--repo', restic, '--quiet', src], renv);
  }
  await warm(path.join(out, 'rb-registry', 'target'));
  await warm(restic);
  const rb: Measured[] = [];
  const rs: Measured[] = [];
  /** The restore's own duration (its report), without the CLI's start-up (loading every command's modules). */
  const inner: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const d1 = path.join(destRoot, `rb-${i}`);
    const r = await regbackup(
      ['restore', '--tarballs', d1, '--json', ...(values.parallel ? ['--parallel', values.parallel] : [])],
      env,
    );
    const rep = JSON.parse(r.stdout) as {
      verified: boolean;
      totals: { files: number; bytes: number; durationMs: number };
    };
    if (!rep.verified) throw new Error('regbackup restore did not verify');
    rb.push(r);
    inner.push(rep.totals.durationMs / 1000);
    rmSync(d1, { recursive: true, force: true });
    const d2 = path.join(destRoot, `restic-${i}`);
    rs.push(
      await measure('restic', ['restore', 'latest', '--repo', restic, '--target', d2, '--quiet'], renv),
    );
    rmSync(d2, { recursive: true, force: true });
    console.log(
      `  round ${i + 1}: regbackup ${fmt(r.seconds, 2)} s (${fmt(r.maxRssMiB)} MiB), restic ${fmt(rs[i]!.seconds, 2)} s (${fmt(rs[i]!.maxRssMiB)} MiB)`,
    );
  }
  const mbs = (m: Measured) => bytes / 1e6 / m.seconds;
  console.log(
    table([
      ['tarball restore', 'seconds', 'MB/s', 'peak RSS MiB'],
      [
        'regbackup',
        range(
          rb.map((m) => m.seconds),
          2,
        ),
        range(rb.map(mbs)),
        range(rb.map((m) => m.maxRssMiB)),
      ],
      [
        'restic 0.14',
        range(
          rs.map((m) => m.seconds),
          2,
        ),
        range(rs.map(mbs)),
        range(rs.map((m) => m.maxRssMiB)),
      ],
    ]),
  );
  console.log(
    `throughput ratio regbackup/restic (medians): ${fmt(median(rs.map((m) => m.seconds)) / median(rb.map((m) => m.seconds)), 2)}x (goal >= 1.5x)`,
  );
  console.log(
    `regbackup's own restore time (report, without the CLI start-up): ${range(inner, 2)} s, ${range(inner.map((s) => bytes / 1e6 / s))} MB/s; ratio to restic (medians): ${fmt(median(rs.map((m) => m.seconds)) / median(inner), 2)}x`,
  );
}

/** The test CouchDB (express-pouchdb) in a process of its own. */
async function couchServer(): Promise<{ url: string; child: ChildProcess; stop: () => void }> {
  const child = spawn(process.execPath, [path.join(here, '..', 'test', 'restore', 'couch-child.js')], {
    stdio: ['pipe', 'pipe', 'inherit'],
    // No admin: couchbackup logs in with a _session cookie, which this server gives to no configuration admin.
    env: { ...process.env, REGBACKUP_COUCH_ADMIN_PARTY: '1' },
  });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      if (buf.includes('\n')) resolve(buf.slice(0, buf.indexOf('\n')));
    });
    child.once('exit', (c) => reject(new Error(`couch child exited ${c}`)));
  });
  return { url: (JSON.parse(line) as { url: string }).url, child, stop: () => child.stdin!.end() };
}

/**
 * couchbackup/couchrestore (the Cloudant SDK) always gzip their request bodies; CouchDB inflates them, the
 * express-pouchdb stand-in hangs on them. This proxy inflates them in front of it (CPU a real CouchDB spends too),
 * and adds the doc_del_count the stand-in does not report.
 */
async function gunzipProxy(target: string): Promise<{ url: string; close(): void }> {
  const t = new URL(target);
  const server = createServer((req, res) => {
    const headers = { ...req.headers };
    let body: NodeJS.ReadableStream = req;
    if (headers['content-encoding'] === 'gzip') {
      delete headers['content-encoding'];
      delete headers['content-length'];
      body = req.pipe(createGunzip());
    }
    const up = request(
      { host: t.hostname, port: t.port, path: req.url, method: req.method, headers },
      (r) => {
        // couchrestore refuses a database whose doc_del_count is not 0; express-pouchdb does not report it.
        if (req.method === 'GET' && /^\/[^/_][^/?]*\/?$/.test(req.url ?? '') && r.statusCode === 200) {
          const parts: Buffer[] = [];
          r.on('data', (b: Buffer) => parts.push(b));
          r.on('end', () => {
            const info = JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown>;
            info.doc_del_count ??= 0;
            const body = JSON.stringify(info);
            res.writeHead(200, {
              'content-type': 'application/json',
              'content-length': Buffer.byteLength(body),
            });
            res.end(body);
          });
          return;
        }
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    body.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

/** A backup file in couchbackup's format (v2.11, mode full, no attachments) of database `db`. */
async function writeCouchbackupFile(url: string, db: string, file: string): Promise<void> {
  const base = new URL(url).origin;
  const changes = (await (await fetch(`${base}/${db}/_changes?style=all_docs`)).json()) as {
    results: { id: string }[];
  };
  const out = openSync(file, 'w');
  writeSync(out, '{"name":"@cloudant/couchbackup","version":"2.11.12","mode":"full","attachments":false}\n');
  let batch: string[] = [];
  for (const { id } of changes.results) {
    const leaves = (await (
      await fetch(`${base}/${db}/${encodeURIComponent(id)}?open_revs=all&revs=true`, {
        headers: { accept: 'application/json' },
      })
    ).json()) as { ok?: unknown }[];
    for (const l of leaves) if (l.ok) batch.push(JSON.stringify(l.ok));
    if (batch.length >= 20) {
      writeSync(out, `[${batch.join(',')}]\n`);
      batch = [];
    }
  }
  if (batch.length) writeSync(out, `[${batch.join(',')}]\n`);
  closeSync(out);
}

async function http(url: string, method: string, p: string): Promise<number> {
  const u = new URL(url);
  const headers: Record<string, string> = {};
  if (u.username)
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  const res = await fetch(`${u.origin}/${p}`, { method, headers });
  await res.arrayBuffer();
  return res.status;
}

async function couch(source: { url: string }, env: NodeJS.ProcessEnv): Promise<void> {
  const packuments = path.join(corpus, 'packuments');
  const bytes = du(packuments);
  console.log(
    `\n== CouchDB: ${packuments}, ${readdirSync(packuments).length} packuments, ${fmt(bytes / 1e6)} MB`,
  );
  const real = values['couch-port'];
  const dest = real ? await realCouch(real) : await couchServer();
  try {
    const backupFile = path.join(out, 'couchbackup.txt');
    // couchbackup itself cannot back up from this server (its gzip'd _bulk_get requests hang express-pouchdb,
    // even inflated by a proxy): the bench writes the same file format (a metadata line, then JSON arrays of
    // every leaf revision with _revisions, as couchbackup gets them from _bulk_get?revs=true).
    // A real CouchDB inflates couchrestore's gzip'd bodies itself.
    const destProxy = real ? { url: dest.url } : await gunzipProxy(dest.url);
    const t1 = Date.now();
    await writeCouchbackupFile(source.url, 'registry', backupFile);
    const cb = { seconds: (Date.now() - t1) / 1000 };
    console.log(`  couchbackup-format file written in ${fmt(cb.seconds, 1)} s`);
    const rb: Measured[] = [];
    const cr: Measured[] = [];
    for (let i = 0; i < rounds; i++) {
      await http(dest.url, 'DELETE', 'registry');
      const r = await regbackup(
        ['restore', '--couchdb', dest.url, '--db', 'registry', '--json', '--no-resume'],
        env,
      );
      const rep = JSON.parse(r.stdout) as { verified: boolean };
      if (!rep.verified) throw new Error(`regbackup restore did not verify: ${r.stdout.slice(0, 2000)}`);
      rb.push(r);
      await http(dest.url, 'DELETE', 'registry');
      await http(dest.url, 'PUT', 'registry');
      cr.push(
        await measure('bash', [
          '-c',
          `${COUCHBACKUP}/couchrestore --url '${destProxy.url}' --db registry ${values['couchrestore-args'] ?? ''} < ${backupFile}`,
        ]),
      );
      console.log(
        `  round ${i + 1}: regbackup ${fmt(r.seconds, 2)} s (${fmt(r.maxRssMiB)} MiB), couchrestore ${fmt(cr[i]!.seconds, 2)} s (${fmt(cr[i]!.maxRssMiB)} MiB)`,
      );
    }
    const mbs = (m: Measured) => bytes / 1e6 / m.seconds;
    console.log(
      table([
        ['CouchDB restore', 'seconds', 'MB/s', 'peak RSS MiB'],
        [
          'regbackup',
          range(
            rb.map((m) => m.seconds),
            2,
          ),
          range(rb.map(mbs)),
          range(rb.map((m) => m.maxRssMiB)),
        ],
        [
          'couchrestore',
          range(
            cr.map((m) => m.seconds),
            2,
          ),
          range(cr.map(mbs)),
          range(cr.map((m) => m.maxRssMiB)),
        ],
      ]),
    );
    console.log(
      `speed-up regbackup vs couchrestore (medians): ${fmt(median(cr.map((m) => m.seconds)) / median(rb.map((m) => m.seconds)), 2)}x (goal >= 2.5x)`,
    );
  } finally {
    dest.stop();
  }
}

const SCRATCH = '/work/scratch/couchdb';

/** A real Apache CouchDB 3.5 (start.sh: admin admin/secret) on `port`, with a fresh data directory. */
async function realCouch(port: string): Promise<{ url: string; stop: () => void }> {
  const data = values['couch-data'] ?? path.join(out, 'couchdb');
  rmSync(data, { recursive: true, force: true });
  execFileSync(path.join(SCRATCH, 'start.sh'), [port, data], { stdio: 'inherit' });
  return {
    url: `http://admin:secret@127.0.0.1:${port}`,
    stop: () => execFileSync(path.join(SCRATCH, 'stop.sh'), [data], { stdio: 'inherit' }),
  };
}

// One backup of the whole registry (packuments in CouchDB and the tarball store, as in production): the
// tarball listing then records each referenced tarball's sha1, which the restore verifies.
const reuse = values['skip-couch'] && existsSync(path.join(out, 'rb-registry', 'target', 'snapshots'));
const source = reuse ? undefined : await couchServer();
try {
  if (source) {
    const t0 = Date.now();
    await loadIntoCouch(source.url, 'registry', corpus);
    console.log(
      `loaded the corpus' packuments into the source CouchDB in ${fmt((Date.now() - t0) / 1000)} s`,
    );
    rmSync(path.join(out, 'rb-registry'), { recursive: true, force: true });
  }
  const env = await repoWith(
    'rb-registry',
    `  couchdb:\n    - name: skimdb\n      url: "${source?.url ?? 'http://127.0.0.1:1'}"\n      databases: [registry]\n  tarballs:\n    - name: tarballs\n      path: ${path.join(corpus, 'tarballs')}\n`,
  );
  if (!values['skip-tarballs']) await tarballs(env);
  if (!values['skip-couch'] && source) await couch(source, env);
} finally {
  source?.child.stdin!.end();
  rmSync(destRoot, { recursive: true, force: true });
}
// A keep-alive socket of a peer tool must not keep the bench running once it has printed its figures.
process.exit(process.exitCode ?? 0);
