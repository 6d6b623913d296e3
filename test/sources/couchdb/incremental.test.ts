import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { readListingBytes } from '../../../src/repo/format/listing.js';
import type { DbSnapshot } from '../../../src/repo/format/source-snapshots.js';
import { backupDatabase } from '../../../src/sources/couchdb/index.js';
import { sleep, useServers } from '../../harness/index.js';
import { makeTestRepo, type TestRepo } from '../../helpers/repo.js';
import { Couch, listingOf, sourceConfig, startProxy, withCredentialsOf } from './helpers.js';

function counts(d: DbSnapshot) {
  const { docCount, deletedCount, conflictCount, attachmentCount, attachmentBytes, bodyBytes } = d;
  return { docCount, deletedCount, conflictCount, attachmentCount, attachmentBytes, bodyBytes };
}

async function compact(couch: Couch, db: string): Promise<void> {
  await couch.req('POST', `${db}/_compact`, {});
  await sleep(150);
}

describe('CouchDB source: incremental backup', () => {
  const servers = useServers({ couchdb: true });
  let couch: Couch;
  let t: TestRepo;
  const blob = randomBytes(300 * 1024);

  before(async () => {
    couch = new Couch(servers.couchdb);
    t = await makeTestRepo();
    await couch.req('PUT', 'inc');
    for (let i = 0; i < 20; i++)
      await couch.put('inc', `d${String(i).padStart(2, '0')}`, { n: i, text: `dokument ${i} — ünïcödé` });
    const rev = await couch.put('inc', 'att', { kind: 'with attachment' });
    await couch.putAttachment('inc', 'att', rev, 'blob.bin', blob, 'application/octet-stream');
  });
  after(async () => {
    await t.close();
    await rm(t.dir, { recursive: true, force: true });
  });

  it('reads only the changed documents, reuses unchanged attachments, and gives the listing a full backup gives', async () => {
    const cfg = sourceConfig(servers.couchdb.url, { batchSize: 4 });
    const first = await backupDatabase(cfg, 'inc', t.ctx());
    assert.equal(first.db.docCount, 21);
    await t.nextRun();

    // New doc, updated doc, deleted doc, new conflict, a doc updated with its attachment unchanged.
    await couch.put('inc', 'new', { fresh: true });
    const d03 = await couch.get('inc', 'd03');
    await couch.put('inc', 'd03', { ...d03, n: 'updated' });
    await couch.del('inc', 'd05');
    await couch.force('inc', [{ _id: 'd07', _rev: '1-00000000000000000000000000000000', other: 'branch' }]);
    const att = await couch.get('inc', 'att');
    await couch.put('inc', 'att', { ...att, kind: 'updated, attachment kept' });

    const inc = await backupDatabase(cfg, 'inc', t.ctx(), first.db);
    assert.equal(inc.db.mode, 'incremental');
    assert.equal(inc.db.fullReason, undefined);
    assert.equal(inc.stats.docsFetched, 5, 'only the five changed documents are fetched');
    assert.equal(inc.stats.changesRead, 5);
    assert.equal(inc.stats.attachmentsReused, 1);
    assert.equal(inc.stats.attachmentsDownloaded, 0);
    assert.equal(inc.db.docCount, 21);
    assert.equal(inc.db.deletedCount, 1);
    assert.equal(inc.db.conflictCount, 1);
    assert.deepEqual(inc.findings, []);
    await t.nextRun();

    const fresh = await backupDatabase(cfg, 'inc', t.ctx());
    await t.writer.flush();
    const reader = await t.restoreReader();
    assert.deepEqual(await listingOf(reader, inc.db.listing), await listingOf(reader, fresh.db.listing));
    assert.deepEqual(counts(inc.db), counts(fresh.db));
    assert.equal(inc.db.seq, fresh.db.seq);
    // A second incremental run with nothing new reads no document.
    await t.nextRun();
    const idle = await backupDatabase(cfg, 'inc', t.ctx(), inc.db);
    assert.equal(idle.stats.docsFetched, 0);
    assert.equal(idle.db.mode, 'incremental');
    assert.deepEqual(idle.db.listing, inc.db.listing, 'an unchanged database gives the same listing stream');
  });

  it('keeps the counts of an incremental run equal to a full read, _local entries replaced', async () => {
    await couch.req('PUT', 'inclocal');
    for (let i = 0; i < 6; i++) await couch.put('inclocal', `d${i}`, { n: i });
    await couch.put('inclocal', '_local/checkpoint', { history: [1] });
    const locals = ['_local/checkpoint'];
    // The PouchDB server has no _local_docs: the proxy answers it with the one _local document, as CouchDB.
    const auth = {
      authorization: `Basic ${Buffer.from(`${new URL(servers.couchdb.url).username}:${new URL(servers.couchdb.url).password}`).toString('base64')}`,
    };
    const proxy = await startProxy(servers.couchdb.baseUrl, (req, res) => {
      if (!(req.url ?? '').startsWith('/inclocal/_local_docs')) return false;
      void Promise.all(
        locals.map(async (id) => {
          const r = await fetch(`${servers.couchdb.baseUrl}/inclocal/${id}`, { headers: auth });
          const doc = (await r.json()) as { _rev: string };
          return { id, key: id, value: { rev: doc._rev }, doc };
        }),
      ).then((rows) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ rows }));
      });
      return true;
    });
    after(() => proxy.stop());
    const cfg = sourceConfig(withCredentialsOf(servers.couchdb.url, proxy.url), {
      includeLocal: true,
      batchSize: 2,
    });
    const first = await backupDatabase(cfg, 'inclocal', t.ctx());
    assert.equal(first.db.localCount, 1);
    await t.nextRun();

    const d1 = await couch.get('inclocal', 'd1');
    await couch.put('inclocal', 'd1', { ...d1, n: 'a longer body than before' });
    await couch.del('inclocal', 'd2');
    await couch.put('inclocal', 'e0', { fresh: true });
    const cp = await couch.get('inclocal', '_local/checkpoint');
    await couch.put('inclocal', '_local/checkpoint', { ...cp, history: [1, 2, 3, 4] });
    const inc = await backupDatabase(cfg, 'inclocal', t.ctx(), first.db);
    assert.equal(inc.db.mode, 'incremental');
    await t.nextRun();
    const fresh = await backupDatabase(cfg, 'inclocal', t.ctx());
    await t.writer.flush();
    const reader = await t.restoreReader();
    assert.deepEqual(await listingOf(reader, inc.db.listing), await listingOf(reader, fresh.db.listing));
    assert.deepEqual(
      { ...counts(inc.db), localCount: inc.db.localCount },
      { ...counts(fresh.db), localCount: fresh.db.localCount },
    );
    assert.equal(inc.db.docCount, 6);
    assert.equal(inc.db.deletedCount, 1);
    assert.equal(inc.db.localCount, 1);
  });

  it('recounts the previous listing when its recorded counts are not whole numbers, and stays incremental', async () => {
    const cfg = sourceConfig(servers.couchdb.url, { batchSize: 3 });
    await couch.req('PUT', 'recount');
    for (let i = 0; i < 12; i++) await couch.put('recount', `r${String(i).padStart(2, '0')}`, { i });
    const first = await backupDatabase(cfg, 'recount', t.ctx());
    await t.nextRun();
    const r04 = await couch.get('recount', 'r04');
    await couch.put('recount', 'r04', { ...r04, i: 'changed' });
    await couch.del('recount', 'r09');
    // Counts that cannot be trusted (not whole, or below zero): the listing itself is counted instead.
    for (const bad of [{ docCount: 11.5 }, { attachmentBytes: -3 }, { bodyBytes: Number.NaN }]) {
      const prev: DbSnapshot = { ...first.db, ...bad };
      const inc = await backupDatabase(cfg, 'recount', t.ctx(), prev);
      assert.equal(inc.db.mode, 'incremental', `${JSON.stringify(bad)}: ${inc.db.fullReason}`);
      assert.equal(inc.stats.docsFetched, 2);
      assert.equal(inc.db.docCount, 11);
      assert.equal(inc.db.deletedCount, 1);
      await t.nextRun();
      const fresh = await backupDatabase(cfg, 'recount', t.ctx());
      assert.deepEqual(counts(inc.db), counts(fresh.db), JSON.stringify(bad));
      await t.nextRun();
    }
  });

  it('falls back to a full read when the counts carried over go below zero', async () => {
    const cfg = sourceConfig(servers.couchdb.url);
    await couch.req('PUT', 'negative');
    for (let i = 0; i < 5; i++) await couch.put('negative', `n${i}`, { i });
    const first = await backupDatabase(cfg, 'negative', t.ctx());
    await t.nextRun();
    await couch.del('negative', 'n1');
    await couch.del('negative', 'n3');
    // Whole numbers, but too small: taking the two deleted documents' live entries out leaves -1.
    const prev: DbSnapshot = { ...first.db, docCount: 1 };
    const again = await backupDatabase(cfg, 'negative', t.ctx(), prev);
    assert.equal(again.db.mode, 'full');
    assert.match(again.db.fullReason ?? '', /counts carried over from the previous snapshot do not add up/);
    assert.match(again.db.fullReason ?? '', /"docCount":-1/);
    assert.ok(again.findings.some((f) => f.code === 'fallback-full' && f.object === 'negative'));
    assert.equal(again.db.docCount, 3);
    assert.equal(again.db.deletedCount, 2);
    await t.writer.flush();
    const reader = await t.restoreReader();
    assert.deepEqual(
      (await listingOf(reader, again.db.listing)).map((e) => [e.id, e.deleted]),
      [
        ['n0', false],
        ['n1', true],
        ['n2', false],
        ['n3', true],
        ['n4', false],
      ],
    );
  });

  it('merges documents of a later round that fall between the unchanged ones (the kept runs split)', async () => {
    const cfg = sourceConfig(servers.couchdb.url, { batchSize: 2 });
    await couch.req('PUT', 'split');
    for (let i = 0; i < 30; i++)
      await couch.put('split', `s${String(i).padStart(2, '0')}`, { i, pad: 'x'.repeat(i) });
    await couch.put('split', 's/a', { slash: true });
    const first = await backupDatabase(cfg, 'split', t.ctx());
    await t.nextRun();
    const s05 = await couch.get('split', 's05');
    await couch.put('split', 's05', { ...s05, i: 'five' });
    const s25 = await couch.get('split', 's25');
    await couch.put('split', 's25', { ...s25, i: 'twenty-five' });
    let done = false;
    const readBefore = t.reader.bytesRead;
    const inc = await backupDatabase(cfg, 'split', t.ctx(), first.db, {
      // While round 1 reads, documents inside the runs kept between s05 and s25 change: round 2 reads them.
      beforeBulkGet: async (round) => {
        if (round !== 1 || done) return;
        done = true;
        const s12 = await couch.get('split', 's12');
        await couch.put('split', 's12', { ...s12, i: 'twelve' });
        await couch.put('split', 's12a', { inserted: true });
        await couch.del('split', 's17');
        await couch.put('split', 's00a', { before: 'the first change' });
        await couch.put('split', 's29z', { after: 'the last change' });
      },
    });
    assert.equal(inc.db.mode, 'incremental');
    assert.ok(
      inc.stats.rounds >= 3,
      `a later round read the changes made during round 1 (${inc.stats.rounds})`,
    );
    // The previous listing was read once, for round 1 and the merge together.
    const once = await t.restoreReader();
    for await (const _ of readListingBytes(once, first.db.listing)) {
      // read
    }
    assert.ok(once.bytesRead > 0);
    assert.equal(t.reader.bytesRead - readBefore, once.bytesRead);
    await t.nextRun();
    const fresh = await backupDatabase(cfg, 'split', t.ctx());
    await t.writer.flush();
    const reader = await t.restoreReader();
    const got = await listingOf(reader, inc.db.listing);
    assert.deepEqual(got, await listingOf(reader, fresh.db.listing));
    assert.deepEqual(counts(inc.db), counts(fresh.db));
    assert.equal(got.find((e) => e.id === 's12')!.rev.slice(0, 2), '2-');
    assert.ok(got.find((e) => e.id === 's17')!.deleted);
    assert.equal(inc.db.docCount, 33);
  });

  it('falls back to a full read when the database was deleted and re-created, and says why', async () => {
    const cfg = sourceConfig(servers.couchdb.url);
    await couch.req('PUT', 'recreated');
    for (let i = 0; i < 6; i++) await couch.put('recreated', `old${i}`, { i });
    const first = await backupDatabase(cfg, 'recreated', t.ctx());
    await t.nextRun();
    await couch.req('DELETE', 'recreated');
    await couch.req('PUT', 'recreated');
    await couch.put('recreated', 'a', { fresh: 1 });
    await couch.put('recreated', 'b', { fresh: 2 });

    const again = await backupDatabase(cfg, 'recreated', t.ctx(), first.db);
    assert.equal(again.db.mode, 'full');
    assert.match(again.db.fullReason ?? '', /re-created/);
    assert.match(again.db.fullReason ?? '', /doc_count is 2/);
    assert.ok(
      again.findings.some(
        (f) => f.code === 'fallback-full' && f.severity === 'info' && f.object === 'recreated',
      ),
    );
    await t.writer.flush();
    const reader = await t.restoreReader();
    assert.deepEqual(
      (await listingOf(reader, again.db.listing)).map((e) => e.id),
      ['a', 'b'],
    );

    // instance_start_time (CouchDB 1.x; "0" on 2+) that changed is proof enough without reading anything.
    await t.nextRun();
    const forged: DbSnapshot = { ...again.db, info: { ...again.db.info, instanceStartTime: '1234' } };
    const third = await backupDatabase(cfg, 'recreated', t.ctx(), forged);
    assert.equal(third.db.mode, 'full');
    assert.match(third.db.fullReason ?? '', /instance_start_time/);
  });

  it('falls back to a full read when the server refuses the previous sequence (400)', async () => {
    await couch.req('PUT', 'refused');
    await couch.put('refused', 'x', { x: 1 });
    const proxy = await startProxy(servers.couchdb.baseUrl, (req, res) => {
      if (/_changes\?.*since=g1AAAA-bogus/.test(req.url ?? '')) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            error: 'bad_request',
            reason: "Malformed sequence supplied in 'since' parameter.",
          }),
        );
        return true;
      }
      return false;
    });
    try {
      const cfg = sourceConfig(withCredentialsOf(servers.couchdb.url, proxy.url));
      const first = await backupDatabase(cfg, 'refused', t.ctx());
      await t.nextRun();
      const bogus: DbSnapshot = { ...first.db, seq: 'g1AAAA-bogus' };
      const again = await backupDatabase(cfg, 'refused', t.ctx(), bogus);
      assert.equal(again.db.mode, 'full');
      assert.match(again.db.fullReason ?? '', /refused the sequence/);
      assert.equal(again.db.docCount, 1);
    } finally {
      await proxy.stop();
    }
  });

  it('refetches a document whose leaf was gone (compacted) when fetched: it comes back in the next round', async () => {
    await couch.req('PUT', 'rounds');
    for (const id of ['a', 'b', 'c']) await couch.put('rounds', id, { id });
    let newRev = '';
    let done = false;
    const r = await backupDatabase(sourceConfig(servers.couchdb.url), 'rounds', t.ctx(), undefined, {
      beforeBulkGet: async (round) => {
        if (round !== 1 || done) return;
        done = true;
        const a = await couch.get('rounds', 'a');
        newRev = await couch.put('rounds', 'a', { ...a, changed: true });
        await compact(couch, 'rounds');
      },
    });
    assert.ok(r.stats.leavesGone >= 1, 'the superseded leaf was gone');
    assert.equal(r.stats.rounds, 3, 'read, re-read the changed document, then a quiet round');
    await t.writer.flush();
    const reader = await t.restoreReader();
    const listing = await listingOf(reader, r.db.listing);
    assert.equal(listing.find((e) => e.id === 'a')!.rev, newRev);
    assert.equal(r.db.docCount, 3);
  });

  it('accepts the last sequence of a database that never quiets down, with a finding', async () => {
    await couch.req('PUT', 'busy');
    for (const id of ['a', 'b']) await couch.put('busy', id, { n: 0 });
    let n = 0;
    const r = await backupDatabase(sourceConfig(servers.couchdb.url), 'busy', t.ctx(), undefined, {
      maxRounds: 3,
      beforeBulkGet: async () => {
        const b = await couch.get('busy', 'b');
        await couch.put('busy', 'b', { ...b, n: ++n });
      },
    });
    assert.equal(r.stats.rounds, 3);
    assert.ok(r.findings.some((f) => f.code === 'db-busy' && f.severity === 'warning'));
    assert.equal(r.db.docCount, 2);
  });
});
