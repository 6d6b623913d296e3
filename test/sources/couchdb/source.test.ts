import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { SourceError } from '../../../src/errors.js';
import {
  backupCouchSource,
  backupDatabase,
  DbGoneError,
  listDatabases,
} from '../../../src/sources/couchdb/index.js';
import { freePort, useServers } from '../../harness/index.js';
import { makeTestRepo, type TestRepo } from '../../helpers/repo.js';
import { Couch, expectationsOf, packument, sourceConfig, startProxy, withCredentialsOf } from './helpers.js';

const fast = { attempts: 2, backoffMs: 10 };

describe('CouchDB source: databases, errors, several databases', () => {
  const servers = useServers({ couchdb: true });
  let couch: Couch;
  let t: TestRepo;

  before(async () => {
    couch = new Couch(servers.couchdb);
    t = await makeTestRepo();
    for (const db of ['alpha', 'beta', 'tmp-1', 'tmp-2']) await couch.req('PUT', db);
    await couch.put('alpha', 'left-pad', packument('left-pad', ['1.0.0']));
    await couch.put('beta', '@types/node', packument('@types/node', ['20.0.0']));
    await couch.put('beta', 'zzz', packument('zzz', ['0.0.1']));
  });
  after(async () => {
    await t.close();
    await rm(t.dir, { recursive: true, force: true });
  });

  it('lists "*" without system databases, applies exclude globs, adds named and system ones when asked', async () => {
    const url = servers.couchdb.url;
    const all = await listDatabases(sourceConfig(url));
    assert.deepEqual(all, ['alpha', 'beta', 'tmp-1', 'tmp-2']);
    assert.deepEqual(await listDatabases(sourceConfig(url, { exclude: ['tmp-*'] })), ['alpha', 'beta']);
    assert.deepEqual(await listDatabases(sourceConfig(url, { exclude: ['?eta', 'tmp-?'] })), ['alpha']);
    assert.deepEqual(await listDatabases(sourceConfig(url, { includeSystem: true, exclude: ['tmp-*'] })), [
      '_replicator',
      '_users',
      'alpha',
      'beta',
    ]);
    assert.deepEqual(await listDatabases(sourceConfig(url, { databases: ['_users', 'beta'] })), [
      '_users',
      'beta',
    ]);
    assert.deepEqual(
      await listDatabases(sourceConfig(url, { databases: ['*', '_replicator'], exclude: ['tmp*'] })),
      ['_replicator', 'alpha', 'beta'],
    );
  });

  it('reports an unreachable server as a SourceError naming the source and the URL, never the password', async () => {
    const port = await freePort();
    const cfg = sourceConfig(`http://admin:s3cret-pw@127.0.0.1:${port}`, { name: 'registry-main' });
    await assert.rejects(listDatabases(cfg, fast), (err: Error) => {
      assert.ok(err instanceof SourceError);
      assert.match(err.message, /registry-main/);
      assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.match(err.message, /ECONNREFUSED/);
      assert.ok(!err.message.includes('s3cret-pw') && !JSON.stringify(err.toJSON()).includes('s3cret-pw'));
      return true;
    });
    await assert.rejects(
      backupDatabase({ ...cfg, databases: ['alpha'] }, 'alpha', t.ctx(), undefined, fast),
      SourceError,
    );
  });

  it('reports refused credentials (401) naming the source, without the password', async () => {
    const url = servers.couchdb.urlWith({ username: 'admin', password: 'wrong-password' });
    await assert.rejects(listDatabases(sourceConfig(url, { name: 'mirror' })), (err: Error) => {
      assert.ok(err instanceof SourceError);
      assert.match(err.message, /CouchDB refused the credentials \(401\)/);
      assert.match(err.message, /mirror/);
      assert.ok(!err.message.includes('wrong-password'));
      return true;
    });
  });

  it('names the source, database and request when an answer is not JSON', async () => {
    const proxy = await startProxy(servers.couchdb.baseUrl, (req, res) => {
      if (req.url === '/alpha') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html>maintenance</html>');
        return true;
      }
      return false;
    });
    try {
      const cfg = sourceConfig(withCredentialsOf(servers.couchdb.url, proxy.url), { name: 'behind-proxy' });
      await assert.rejects(backupDatabase(cfg, 'alpha', t.ctx()), (err: Error) => {
        assert.ok(err instanceof SourceError);
        assert.match(err.message, /behind-proxy/);
        assert.match(err.message, /database alpha/);
        assert.match(err.message, /GET \/alpha is not JSON/);
        return true;
      });
    } finally {
      await proxy.stop();
    }
  });

  it('retries transient failures (5xx, dropped connections, an answer cut short)', async () => {
    let failures = 0;
    const proxy = await startProxy(servers.couchdb.baseUrl, (req, res) => {
      if (req.url?.includes('_bulk_get') && failures < 3) {
        failures++;
        if (failures === 1) {
          res.writeHead(503, { 'content-type': 'application/json' });
          res.end('{"error":"unavailable"}');
        } else if (failures === 2) res.socket?.destroy();
        else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('{"results":[{"id":"left-pad","docs":[{"ok":{"_id":"left-pad","na');
          setTimeout(() => res.socket?.destroy(), 20);
        }
        return true;
      }
      return false;
    });
    try {
      const cfg = sourceConfig(withCredentialsOf(servers.couchdb.url, proxy.url));
      const r = await backupDatabase(cfg, 'alpha', t.ctx(), undefined, { backoffMs: 5 });
      assert.equal(failures, 3);
      assert.equal(r.db.docCount, 1);
    } finally {
      await proxy.stop();
    }
  });

  it('gives up on a server that does not answer within the timeout', async () => {
    const proxy = await startProxy(servers.couchdb.baseUrl, (req) => req.url === '/alpha');
    try {
      const cfg = sourceConfig(withCredentialsOf(servers.couchdb.url, proxy.url), { timeout: 150 });
      await assert.rejects(backupDatabase(cfg, 'alpha', t.ctx(), undefined, fast), (err: Error) => {
        assert.ok(err instanceof SourceError);
        assert.match(err.message, /timed out/);
        assert.match(err.message, /after 2 attempts/);
        return true;
      });
      assert.equal(proxy.seen.filter((r) => r === 'GET /alpha').length, 2);
    } finally {
      await proxy.stop();
    }
  });

  it('backs up every database; one deleted during the run gets a db-gone finding and the others continue', async () => {
    await couch.req('PUT', 'doomed');
    await couch.put('doomed', 'x', { x: 1 });
    const cfg = sourceConfig(servers.couchdb.url, { exclude: ['tmp-*'], databases: ['*', 'never-existed'] });
    let deleted = false;
    const ctx = t.ctx();
    const r = await backupCouchSource(cfg, ctx, {
      // While alpha is read (the first database), doomed is deleted: listed, then gone.
      beforeBulkGet: async () => {
        if (deleted) return;
        deleted = true;
        await couch.req('DELETE', 'doomed');
      },
    });
    assert.deepEqual(
      r.snapshot.databases.map((d) => d.name),
      ['alpha', 'beta'],
    );
    const gone = r.findings.filter((f) => f.code === 'db-gone');
    assert.deepEqual(
      gone.map((f) => [f.object, f.severity, f.source]),
      [
        ['doomed', 'error', 'main'],
        ['never-existed', 'error', 'main'],
      ],
    );
    assert.equal(r.snapshot.kind, 'couchdb');
    assert.equal(r.snapshot.url, servers.couchdb.baseUrl);
    assert.equal(r.stats.databases, 2);
    await assert.rejects(backupDatabase(cfg, 'doomed', t.ctx()), DbGoneError);

    // Deleted while its own documents are being fetched.
    await couch.req('PUT', 'doomed2');
    await couch.put('doomed2', 'x', { x: 1 });
    await assert.rejects(
      backupDatabase(cfg, 'doomed2', t.ctx(), undefined, {
        beforeBulkGet: async () => {
          await couch.req('DELETE', 'doomed2');
        },
      }),
      (err: Error) => err instanceof DbGoneError && /doomed2/.test(err.message),
    );

    // One sorted expectations stream for all databases.
    await t.writer.flush();
    const reader = await t.restoreReader();
    assert.deepEqual(
      (await expectationsOf(reader, r.expectations!)).map((e) => [e.path, e.db]),
      [
        ['@types/node/-/node-20.0.0.tgz', 'beta'],
        ['left-pad/-/left-pad-1.0.0.tgz', 'alpha'],
        ['zzz/-/zzz-0.0.1.tgz', 'beta'],
      ],
    );

    // The next run continues each database from its entry in ctx.previous.
    await t.nextRun();
    await couch.put('beta', 'another', { a: 1 });
    const next = await backupCouchSource({ ...cfg, databases: ['*'] }, t.ctx(r.snapshot));
    assert.deepEqual(
      next.snapshot.databases.map((d) => [d.name, d.mode, d.docCount]),
      [
        ['alpha', 'incremental', 1],
        ['beta', 'incremental', 3],
      ],
    );
    assert.equal(next.stats.docsFetched, 1);
    assert.equal(next.expectations, undefined, 'no packument was read in this run');
  });
});
