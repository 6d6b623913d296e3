import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RestoreReport } from '../../restore/types.js';
import {
  BIG_ATTACHMENT,
  couch,
  databaseState,
  makeFixture,
  startChildCouch,
  type Fixture,
} from './fixture.js';

function files(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...files(dir, r));
    else out.push(r);
  }
  return out.sort();
}

function sha1(file: string): string {
  return createHash('sha1').update(readFileSync(file)).digest('hex');
}

/**
 * Environment for a `regbackup` child watched through its resume journal: a preloaded module wraps
 * fs.renameSync, with which the journal is replaced, and moves the clock a second ahead at every read so that
 * every change of the journal is written (it is written at most every 500 ms). With `past`, the child SIGKILLs
 * itself right after it wrote a journal that has documents of `db` as written up to `past` or further (a
 * checkpoint at or after it in the listing's order), or the whole database as done: a kill at a known point,
 * whatever the speed of the machine. With `record`, each journal's state of `db` is appended to that file.
 */
function journalHook(dir: string, db: string, opts: { past?: string; record?: string }): NodeJS.ProcessEnv {
  const hook = path.join(dir, 'journal-hook.mjs');
  writeFileSync(
    hook,
    `import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
const renameSync = fs.renameSync;
const key = (id) => id.replaceAll('/', '\\0');
const past = ${JSON.stringify(opts.past ?? null)};
const record = ${JSON.stringify(opts.record ?? null)};
const now = Date.now;
let ahead = 0;
Date.now = () => now() + (ahead += 1000);
fs.renameSync = (from, to) => {
  renameSync(from, to);
  if (!String(to).endsWith('.json') || !String(to).includes('/restore/')) return;
  const state = JSON.parse(fs.readFileSync(to, 'utf8')).dbs?.[${JSON.stringify(db)}];
  if (record && state) fs.appendFileSync(record, JSON.stringify(state) + '\\n');
  if (past !== null && (state?.done || (state?.checkpoint !== undefined && key(state.checkpoint) >= key(past))))
    process.kill(process.pid, 'SIGKILL');
};
syncBuiltinESMExports();
`,
  );
  return { NODE_OPTIONS: `--import ${pathToFileURL(hook).href}` };
}

/** The resume journal's state of `db` (one restore journal in the cache). */
function journalState(dir: string, db: string): { checkpoint?: string; done?: boolean } | undefined {
  const cache = path.join(dir, 'cache');
  for (const repo of readdirSync(cache)) {
    const d = path.join(cache, repo, 'restore');
    if (!existsSync(d)) continue;
    for (const n of readdirSync(d).filter((x) => x.endsWith('.json')))
      return (JSON.parse(readFileSync(path.join(d, n), 'utf8')) as { dbs?: Record<string, never> }).dbs?.[db];
  }
  return undefined;
}

describe('regbackup restore into an empty CouchDB and a directory', () => {
  let f: Fixture;
  before(async () => {
    f = await makeFixture();
  });
  after(() => f.stop());

  test('--dry-run says what would be written, and writes nothing', async () => {
    const r = await f.cli(['restore', '--to', 'new-primary', '--dry-run', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.equal(rep.dryRun, true);
    const reg = rep.databases.find((d) => d.name === 'registry')!;
    assert.match(reg.note!, /would create registry/);
    assert.ok(reg.planned.docs > 10);
    assert.ok(reg.planned.deleted >= 1);
    assert.ok(rep.tarballs[0]!.planned.files > 0);
    assert.equal((await couch(f.dest.url, 'GET', 'registry')).status, 404);
    const text = await f.cli(['restore', '--to', 'new-primary', '--dry-run']);
    assert.match(text.stdout, /DRY RUN/);
    assert.match(text.stdout, /would create registry/);
    // --at picks the newest snapshot at or before a time; --snapshot takes an ID prefix.
    const at = await f.cli([
      'restore',
      '--to',
      'new-primary',
      '--dry-run',
      '--json',
      '--at',
      new Date(Date.now() + 60_000).toISOString(),
    ]);
    assert.equal((JSON.parse(at.stdout) as RestoreReport).snapshot.id, f.snapshot);
    const byId = await f.cli([
      'restore',
      '--to',
      'new-primary',
      '--dry-run',
      '--json',
      '--snapshot',
      f.snapshot.slice(0, 8),
    ]);
    assert.equal((JSON.parse(byId.stdout) as RestoreReport).snapshot.id, f.snapshot);
    const tooOld = await f.cli(['restore', '--to', 'new-primary', '--dry-run', '--at', '2h']);
    assert.equal(tooOld.code, 2);
    assert.match(tooOld.stderr, /no snapshot was taken at or before .* \(the oldest is from /);
  });

  test('a full restore is revision-exact: conflicts, tombstones, attachments, design docs, _security, non-ASCII', async () => {
    const r = await f.cli(['restore', '--to', 'new-primary', '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.equal(rep.verified, true);
    assert.equal(rep.snapshot.id, f.snapshot);
    for (const d of rep.databases) for (const c of d.checks) assert.ok(c.ok, `${c.object} ${c.check}`);
    assert.ok(
      rep.databases
        .find((d) => d.name === 'registry')!
        .checks.some((c) => c.check === 'conflict leaves' && c.expected === 2),
    );
    assert.ok(rep.totals.docs > 10 && rep.totals.files > 0 && rep.totals.durationMs > 0);
    for (const db of ['registry', 'extra']) {
      assert.deepEqual(await databaseState(f.dest.url, db), await databaseState(f.source.url, db), db);
    }
    // The source's history limit, set on the new database before its documents; the other keeps the default.
    assert.equal((await couch<number>(f.dest.url, 'GET', 'registry/_revs_limit')).body, 777);
    assert.equal((await couch<number>(f.dest.url, 'GET', 'extra/_revs_limit')).body, 1000);
    const att = await fetch(`${f.dest.baseUrl}/registry/with-attachments/big.bin`, {
      headers: {
        authorization: `Basic ${Buffer.from(`${f.dest.admin!.username}:${f.dest.admin!.password}`).toString('base64')}`,
      },
    });
    assert.ok(Buffer.from(await att.arrayBuffer()).equals(BIG_ATTACHMENT));
    // The tarball store: same files, same bytes, nothing else (no temporary file left).
    const dest = path.join(f.dir, 'restored-tarballs');
    assert.deepEqual(files(dest), files(f.tarballsDir));
    for (const p of files(f.tarballsDir)) {
      assert.equal(sha1(path.join(dest, p)), sha1(path.join(f.tarballsDir, p)), p);
      assert.equal(
        Math.floor(statSync(path.join(dest, p)).mtimeMs),
        Math.floor(statSync(path.join(f.tarballsDir, p)).mtimeMs),
      );
    }
    const text = await f.cli(['restore', '--to', 'new-primary', '--dry-run']);
    assert.match(text.stdout, /would refuse/);
    assert.equal(text.code, 8);
  });

  // A resumed restore checks what its journal has as written BEFORE it writes anything else: once it wrote
  // the design documents first, and rewrote everything under their validate_doc_update (which the stand-in
  // answers by dropping `_revisions`: histories cut to one revision, yet reported verified).
  test('killed once the journal has registry documents as written; database emptied; run again: written again, verified', async () => {
    const dest = await startChildCouch();
    try {
      const args = ['restore', '--couchdb', dest.url, '--db', 'registry', '--json'];
      // Killed once the journal has the documents with several revisions (conflicted, gone, half-deleted) as
      // written, before the design document: the resume must write them again ahead of _design/app.
      // One document per request, one at a time, so that the journal moves past them one by one.
      const r1 = await f.cli(
        [...args, '--batch-bytes', '1', '--parallel', '1'],
        journalHook(f.dir, 'registry', { past: 'half-deleted' }),
      );
      assert.equal(r1.signal, 'SIGKILL', r1.stderr);
      const had = journalState(f.dir, 'registry');
      assert.ok(had?.checkpoint !== undefined && !had.done, JSON.stringify(had));
      // The database loses what the journal has as written (dropped and created again, empty).
      assert.equal((await couch(dest.url, 'DELETE', 'registry')).status, 200);
      assert.equal((await couch(dest.url, 'PUT', 'registry')).status, 201);
      assert.equal((await couch<{ doc_count: number }>(dest.url, 'GET', 'registry')).body.doc_count, 0);
      const r = await f.cli(args);
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const rep = JSON.parse(r.stdout) as RestoreReport;
      assert.equal(rep.resumed, true);
      const reg = rep.databases.find((d) => d.name === 'registry')!;
      assert.match(reg.checks[0]!.check, /missing or different ones written again/);
      assert.ok(
        reg.checks.every((c) => c.ok),
        JSON.stringify(reg.checks),
      );
      assert.deepEqual(
        await databaseState(dest.url, 'registry'),
        await databaseState(f.source.url, 'registry'),
      );
    } finally {
      await dest.stop();
    }
  });

  test("the resume journal's checkpoint never names a design document (they are written after every other document)", async () => {
    const dest = await startChildCouch();
    try {
      const record = path.join(f.dir, 'journal-states.jsonl');
      writeFileSync(record, '');
      const args = ['restore', '--couchdb', dest.url, '--db', 'registry', '--json'];
      // One document per request, one at a time: the checkpoint moves document by document.
      const r = await f.cli(
        [...args, '--batch-bytes', '1', '--parallel', '1'],
        journalHook(f.dir, 'registry', { record }),
      );
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const states = readFileSync(record, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { checkpoint?: string; done?: boolean });
      const checkpoints = [
        ...new Set(states.flatMap((x) => (x.checkpoint === undefined ? [] : [x.checkpoint]))),
      ];
      assert.ok(checkpoints.length > 5, JSON.stringify(checkpoints));
      assert.deepEqual(
        checkpoints.filter((c) => c.startsWith('_design/')),
        [],
      );
      assert.equal(states.at(-1)!.done, true);
    } finally {
      await dest.stop();
    }
  });

  test('refuses a non-empty database without --force, naming it; nothing is written', async () => {
    await couch(f.dest.url, 'PUT', 'fresh-target');
    const r = await f.cli(['restore', '--couchdb', f.dest.url, '--db', 'extra']);
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, /database extra on .* is not empty \(2 documents/);
    assert.match(r.stderr, /--force/);
    // Nothing was written: no resume journal is left to block another restore.
    const cache = path.join(f.dir, 'cache');
    for (const repo of readdirSync(cache)) {
      const dir = path.join(cache, repo, 'restore');
      assert.deepEqual(existsSync(dir) ? readdirSync(dir).filter((n) => n.endsWith('.json')) : [], []);
    }
    const forced = await f.cli(['restore', '--couchdb', f.dest.url, '--db', 'extra', '--force', '--json']);
    assert.equal(forced.code, 0, forced.stderr);
  });

  test('--package puts one package back into the live database as a new revision, with its tarballs', async () => {
    const ids = (
      await couch<{ rows: { id: string }[] }>(f.source.url, 'GET', 'registry/_all_docs')
    ).body.rows.map((r) => r.id);
    const pkg = ids.find(
      (id) =>
        !id.startsWith('_') &&
        !['conflicted', 'half-deleted', 'unicode-doc', 'with-attachments', '@scope/pkg', 'gone'].includes(id),
    )!;
    const before = (
      await couch<Record<string, unknown>>(f.dest.url, 'GET', `registry/${encodeURIComponent(pkg)}`)
    ).body;
    // The mistake: overwritten with junk, its tarballs deleted.
    await couch(f.dest.url, 'PUT', `registry/${encodeURIComponent(pkg)}`, {
      _rev: before._rev,
      name: pkg,
      junk: true,
    });
    const tarDir = path.join(f.dir, 'restored-tarballs', pkg);
    const { rmSync } = await import('node:fs');
    rmSync(tarDir, { recursive: true, force: true });
    const refused = await f.cli(['restore', '--to', 'new-primary', '--package', pkg]);
    assert.equal(refused.code, 8, refused.stderr + refused.stdout);
    const r = await f.cli(['restore', '--to', 'new-primary', '--package', pkg, '--force', '--json']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const rep = JSON.parse(r.stdout) as RestoreReport;
    assert.equal(rep.packages![0]!.name, pkg);
    assert.ok(rep.packages![0]!.files > 0);
    const after = (
      await couch<Record<string, unknown>>(f.dest.url, 'GET', `registry/${encodeURIComponent(pkg)}`)
    ).body;
    assert.equal(after.junk, undefined);
    assert.deepEqual({ ...after, _rev: undefined }, { ...before, _rev: undefined });
    assert.match(String(after._rev), /^3-/);
    assert.ok(files(path.join(f.dir, 'restored-tarballs')).some((p) => p.startsWith(`${pkg}/-/`)));
    const missing = await f.cli([
      'restore',
      '--to',
      'new-primary',
      '--package',
      'no-such-package',
      '--force',
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /package no-such-package/);
  });
});
