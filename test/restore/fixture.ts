import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadIntoCouch } from '../generate/couch.js';
import { writeRegistry } from '../generate/registry.js';
import { startServers, tmpDir, type CouchServer, type GcsServer, type S3Server } from '../harness/index.js';
import { runCli, type CliResult } from '../helpers/cli.js';

/**
 * A backed-up registry for the restore tests: a source CouchDB with a generated registry plus the hard cases
 * (conflicts, tombstones, attachments including a multi-MiB one, a design document, `_security`, non-ASCII
 * text across chunk boundaries, a second database), a tarball store, keys, a configuration with two targets
 * (S3 "aws" and GCS "offsite"), one backup — and an empty destination CouchDB.
 */
export interface Fixture {
  dir: string;
  configFile: string;
  env: NodeJS.ProcessEnv;
  source: CouchServer;
  dest: CouchServer;
  s3: S3Server;
  gcs: GcsServer;
  s3Bucket: string;
  gcsBucket: string;
  tarballsDir: string;
  identity: string;
  snapshot: string;
  cli(args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult>;
  stop(): Promise<void>;
}

/** A destination CouchDB in a child process (two in-process test servers would share their databases). */
export async function startChildCouch(): Promise<CouchServer> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./couch-child.js', import.meta.url))], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`the CouchDB child exited (${code})`)));
  });
  const info = JSON.parse(line) as Pick<CouchServer, 'url' | 'baseUrl' | 'admin'>;
  return {
    ...info,
    urlWith: (c) =>
      info.url.replace(
        /\/\/[^@]*@/,
        `//${encodeURIComponent(c.username)}:${encodeURIComponent(c.password)}@`,
      ),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin.end();
      await exited;
    },
  };
}

/** A proxy in front of a CouchDB that holds every write request for `delayMs` (to catch a restore mid-way). */
export async function slowProxy(
  target: string,
  delayMs: number,
): Promise<{ url: (creds: { username: string; password: string }) => string; stop(): Promise<void> }> {
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const forward = () => {
      const up = http.request(
        { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers },
        (r) => {
          res.writeHead(r.statusCode ?? 502, r.headers);
          r.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    if (req.method === 'POST' || req.method === 'PUT') setTimeout(forward, delayMs);
    else forward();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (c) =>
      `http://${encodeURIComponent(c.username)}:${encodeURIComponent(c.password)}@127.0.0.1:${port}`,
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

export function basicAuth(url: string): { base: string; headers: Record<string, string> } {
  const u = new URL(url);
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (u.username)
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  u.username = '';
  u.password = '';
  return { base: u.toString().replace(/\/$/, ''), headers };
}

/** A JSON request to a CouchDB (credentials from the URL). */
export async function couch<T = unknown>(
  url: string,
  method: string,
  p: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const { base, headers } = basicAuth(url);
  const res = await fetch(`${base}/${p}`, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function ok<T>(p: Promise<{ status: number; body: T }>): Promise<T> {
  const r = await p;
  assert.ok(r.status < 300, `HTTP ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Text with multi-byte characters everywhere, so that chunk boundaries fall inside characters. */
export function unicodeText(n: number): string {
  const pieces = ['é', '漢字', '😀', 'Ж', 'ß', 'ü', '→', '𝄞', ' ', 'a'];
  let s = '';
  for (let i = 0; s.length < n; i++) s += pieces[(i * 7 + (i >> 3)) % pieces.length];
  return s;
}

export const BIG_ATTACHMENT = randomBytes(3 * 1024 * 1024 + 12345);

/** Adds the hard cases to database `db` of the source. */
async function hardCases(url: string, db: string): Promise<void> {
  const p = encodeURIComponent(db);
  // Conflicts: two branches of one document, one of them deeper; and a deleted branch beside a live one.
  await ok(
    couch(url, 'POST', `${p}/_bulk_docs`, {
      new_edits: false,
      docs: [
        {
          _id: 'conflicted',
          _rev: '3-c3',
          _revisions: { start: 3, ids: ['c3', 'b2', 'a1'] },
          v: 'long branch',
        },
        { _id: 'conflicted', _rev: '2-d2', _revisions: { start: 2, ids: ['d2', 'a1'] }, v: 'short branch' },
        { _id: 'half-deleted', _rev: '2-x2', _revisions: { start: 2, ids: ['x2', 'x1'] }, v: 'alive' },
        {
          _id: 'half-deleted',
          _rev: '3-y3',
          _deleted: true,
          _revisions: { start: 3, ids: ['y3', 'y2', 'x1'] },
        },
      ],
    }),
  );
  // A tombstone.
  const gone = await ok(couch<{ rev: string }>(url, 'PUT', `${p}/gone`, { temporary: true }));
  await ok(couch(url, 'DELETE', `${p}/gone?rev=${gone.rev}`));
  // Attachments: a small text one and a multi-MiB binary one (several 1 MiB chunks).
  const a = await ok(
    couch<{ rev: string }>(url, 'PUT', `${p}/with-attachments`, {
      note: 'has attachments',
      ü: unicodeText(500),
    }),
  );
  const { base, headers } = basicAuth(url);
  const put = async (doc: string, name: string, rev: string, type: string, data: Buffer) => {
    const res = await fetch(`${base}/${p}/${doc}/${encodeURIComponent(name)}?rev=${rev}`, {
      method: 'PUT',
      headers: { ...headers, 'content-type': type },
      body: data,
    });
    const j = (await res.json()) as { rev: string };
    assert.ok(res.ok, JSON.stringify(j));
    return j.rev;
  };
  let rev = await put('with-attachments', 'readme.txt', a.rev, 'text/plain', Buffer.from(unicodeText(5000)));
  rev = await put('with-attachments', 'big.bin', rev, 'application/octet-stream', BIG_ATTACHMENT);
  void rev;
  // Non-ASCII text long enough to be cut into several chunks, with boundaries inside characters.
  await ok(
    couch(url, 'PUT', `${p}/unicode-doc`, {
      _id: 'unicode-doc',
      text: unicodeText(400_000),
      'clé 漢': ['😀', 'Ж'],
    }),
  );
  // A scoped package name (slash in the ID).
  await ok(
    couch(url, 'PUT', `${p}/${encodeURIComponent('@scope/pkg')}`, { name: '@scope/pkg', versions: {} }),
  );
  // A design document (with a validate function that refuses non-admins) and _security.
  await ok(
    couch(url, 'PUT', `${p}/_design/app`, {
      views: { by_name: { map: 'function (doc) { if (doc.name) emit(doc.name, null); }' } },
      validate_doc_update:
        "function (newDoc, oldDoc, userCtx) { if (userCtx.roles.indexOf('_admin') < 0) throw({forbidden: 'admins only'}); }",
    }),
  );
  await ok(
    couch(url, 'PUT', `${p}/_security`, {
      admins: { names: ['ops'], roles: [] },
      members: { names: [], roles: ['readers'] },
    }),
  );
}

export async function makeFixture(opts: { packages?: number } = {}): Promise<Fixture> {
  const dir = await tmpDir();
  const servers = await startServers({ couchdb: true, s3: true, gcs: true });
  const dest = await startChildCouch();
  const source = servers.couchdb;
  const registry = path.join(dir, 'registry');
  await writeRegistry({
    out: registry,
    packages: opts.packages ?? 10,
    seed: 5,
    maxVersionsPerPackage: 15,
    tarballVersions: 3,
  });
  await loadIntoCouch(source.url, 'registry', registry);
  await hardCases(source.url, 'registry');
  // A history limit other than the default: the restore sets it on the new database.
  await ok(couch(source.url, 'PUT', 'registry/_revs_limit', 777));
  await ok(couch(source.url, 'PUT', 'extra'));
  await ok(
    couch(source.url, 'POST', 'extra/_bulk_docs', {
      docs: [
        { _id: 'one', n: 1 },
        { _id: 'two', n: 2 },
      ],
    }),
  );
  const s3Bucket = await servers.s3.createBucket();
  const gcsBucket = await servers.gcs.createBucket();
  const tarballsDir = path.join(registry, 'tarballs');
  const configFile = path.join(dir, 'regbackup.yaml');
  writeFileSync(
    configFile,
    `keys: ./keys/worker.key
identity: ./keys/restore.key
cache: ./cache
sources:
  couchdb:
    - name: skimdb
      url: "${source.url}"
      databases: ["registry", "extra"]
  tarballs:
    - name: tarballs
      path: ${tarballsDir}
targets:
  - name: aws
    type: s3
    bucket: ${s3Bucket}
    endpoint: ${servers.s3.endpoint}
    forcePathStyle: true
    region: us-east-1
    prefix: regbackup/
    credentials: { accessKeyId: S3RVER, secretAccessKey: S3RVER }
  - name: offsite
    type: gcs
    bucket: ${gcsBucket}
    prefix: regbackup/
    projectId: test
    apiEndpoint: ${servers.gcs.url}
destinations:
  new-primary:
    couchdb: "${dest.url}"
    tarballs: ${path.join(dir, 'restored-tarballs')}
`,
  );
  const env: NodeJS.ProcessEnv = {
    REGBACKUP_CONFIG: configFile,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    REGBACKUP_LOG_LEVEL: 'warn',
  };
  const cli = (args: string[], extra: NodeJS.ProcessEnv = {}) => runCli(args, { env: { ...env, ...extra } });
  mkdirSync(path.join(dir, 'keys'), { recursive: true });
  for (const args of [
    ['keys', 'generate', '--out', path.join(dir, 'keys')],
    ['init'],
    ['backup', '--json'],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    if (args[0] === 'backup') {
      const out = JSON.parse(r.stdout) as { snapshot: { id: string }; findings: unknown[] };
      return {
        dir,
        configFile,
        env,
        source,
        dest,
        s3: servers.s3,
        gcs: servers.gcs,
        s3Bucket,
        gcsBucket,
        tarballsDir,
        identity: path.join(dir, 'keys', 'restore.key'),
        snapshot: out.snapshot.id,
        cli,
        async stop() {
          await dest.stop();
          await servers.stop();
        },
      };
    }
  }
  throw new Error('unreachable');
}

/** Everything of one document: every leaf with its body, history and attachment data. */
async function docState(url: string, db: string, id: string): Promise<unknown> {
  const docPath = id.startsWith('_design/')
    ? `_design/${encodeURIComponent(id.slice(8))}`
    : encodeURIComponent(id);
  const r = await couch<{ ok?: Record<string, unknown> }[]>(
    url,
    'GET',
    `${encodeURIComponent(db)}/${docPath}?open_revs=all&revs=true&attachments=true`,
  );
  assert.equal(r.status, 200, `${db}/${id}: ${JSON.stringify(r.body)}`);
  const leaves = r.body.map((x) => x.ok).sort((a, b) => String(a?._rev).localeCompare(String(b?._rev)));
  // The PouchDB stand-in sets `revpos` of every attachment written with its data to the revision being
  // written (pouchdb-adapter-leveldb-core saveAttachment), even with new_edits=false; CouchDB keeps the
  // revpos sent. The restore sends the backed-up revpos; it is not compared here.
  for (const l of leaves)
    for (const a of Object.values((l?._attachments ?? {}) as Record<string, { revpos?: number }>))
      delete a.revpos;
  return leaves;
}

/**
 * A database as comparable data: `_all_docs`, every document (live and deleted) with all its leaves,
 * histories and attachments, `_security` and the document count.
 */
export async function databaseState(
  url: string,
  db: string,
  only?: (id: string) => boolean,
): Promise<unknown> {
  const p = encodeURIComponent(db);
  const changes = await ok(couch<{ results: { id: string }[] }>(url, 'GET', `${p}/_changes?style=all_docs`));
  const ids = [...new Set(changes.results.map((r) => r.id))].filter((id) => !only || only(id)).sort();
  const all = await ok(couch<{ rows: unknown[] }>(url, 'POST', `${p}/_all_docs`, { keys: ids }));
  const docs: Record<string, unknown> = {};
  for (const id of ids) docs[id] = await docState(url, db, id);
  const security = await ok(couch(url, 'GET', `${p}/_security`));
  const info = await ok(couch<{ doc_count: number }>(url, 'GET', p));
  return {
    rows: all.rows,
    docs,
    security: only ? undefined : security,
    docCount: only ? undefined : info.doc_count,
  };
}
