import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN } from '../helpers/cli.js';
import { couch, databaseState, makeFixture, type Fixture } from './fixture.js';

function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; stdoutFile?: string; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const fd = opts.stdoutFile ? openSync(opts.stdoutFile, 'w') : undefined;
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', fd ?? 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      if (fd !== undefined) closeSync(fd);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

function walk(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(dir, r));
    else out.push(r);
  }
  return out.sort();
}

describe('regbackup dump', () => {
  let f: Fixture;
  let tarFile: string;
  let listed: string[];
  before(async () => {
    f = await makeFixture({ packages: 5 });
    tarFile = path.join(f.dir, 'out.tar');
    const r = await run(process.execPath, [BIN, 'dump'], {
      env: f.env,
      stdoutFile: tarFile,
    });
    assert.equal(r.code, 0, r.stderr);
    const t = await run('tar', ['-tf', tarFile]);
    assert.equal(t.code, 0, t.stderr);
    listed = t.stdout.trim().split('\n');
  });
  after(() => f.stop());

  test('is a standard tar archive that `tar -t` lists: manifest, databases, tarball store', () => {
    assert.equal(listed[0], 'manifest.json');
    for (const p of [
      'couchdb/registry/docs.jsonl',
      'couchdb/registry/security.json',
      'couchdb/extra/docs.jsonl',
    ])
      assert.ok(listed.includes(p), p);
    assert.deepEqual(
      listed.filter((p) => p.startsWith('tarballs/')).map((p) => p.slice('tarballs/'.length)),
      walk(f.tarballsDir),
    );
  });

  test('holds every revision of every document; loaded with _bulk_docs new_edits=false, the database comes back exact', async () => {
    const out = path.join(f.dir, 'x');
    mkdirSync(out);
    assert.equal((await run('tar', ['-xf', tarFile, '-C', out])).code, 0);
    for (const p of walk(f.tarballsDir))
      assert.ok(
        readFileSync(path.join(out, 'tarballs', p)).equals(readFileSync(path.join(f.tarballsDir, p))),
        p,
      );
    const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as {
      snapshot: string;
    };
    assert.equal(manifest.snapshot, f.snapshot);
    const lines = readFileSync(path.join(out, 'couchdb/registry/docs.jsonl'), 'utf8').trim().split('\n');
    const revs = lines.map((l) => JSON.parse(l) as { _id: string; _rev: string; _revisions: unknown });
    assert.ok(
      revs.every((d) => d._revisions),
      'every line carries its history',
    );
    assert.deepEqual(
      revs
        .filter((d) => d._id === 'conflicted')
        .map((d) => d._rev)
        .sort(),
      ['2-d2', '3-c3'],
    );
    assert.equal(revs[revs.length - 1]!._id, '_design/app', 'design documents come last');
    // The manual load of the runbook: batches of lines as they are, into a new database.
    const db = 'from-dump';
    await couch(f.dest.url, 'PUT', db);
    await couch(
      f.dest.url,
      'PUT',
      `${db}/_security`,
      readFileSync(path.join(out, 'couchdb/registry/security.json'), 'utf8'),
    );
    for (let i = 0; i < lines.length; i += 5) {
      const r = await couch(
        f.dest.url,
        'POST',
        `${db}/_bulk_docs`,
        `{"new_edits":false,"docs":[${lines.slice(i, i + 5).join(',')}]}`,
      );
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    assert.deepEqual(await databaseState(f.dest.url, db), await databaseState(f.source.url, 'registry'));
  });

  test('--db and --tarballs select one part; a terminal is refused', async () => {
    const one = path.join(f.dir, 'extra.tar');
    assert.equal(
      (
        await run(process.execPath, [BIN, 'dump', '--db', 'extra'], {
          env: f.env,
          stdoutFile: one,
        })
      ).code,
      0,
    );
    assert.deepEqual((await run('tar', ['-tf', one])).stdout.trim().split('\n'), [
      'manifest.json',
      'couchdb/extra/security.json',
      'couchdb/extra/docs.jsonl',
    ]);
    const tb = path.join(f.dir, 'tb.tar');
    assert.equal(
      (
        await run(process.execPath, [BIN, 'dump', '--tarballs'], {
          env: f.env,
          stdoutFile: tb,
        })
      ).code,
      0,
    );
    const names = (await run('tar', ['-tf', tb])).stdout.trim().split('\n');
    assert.equal(names[0], 'manifest.json');
    assert.ok(names.slice(1).every((n) => n.startsWith('tarballs/')));
    const none = await run(process.execPath, [BIN, 'dump', '--db', 'nope'], {
      env: f.env,
      stdoutFile: path.join(f.dir, 'nope.tar'),
    });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /has no database nope/);
    writeFileSync(path.join(f.dir, 'unused'), '');
  });
});
