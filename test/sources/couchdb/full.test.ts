import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { readAll } from '../../../src/repo/stream-ref.js';
import { backupDatabase } from '../../../src/sources/couchdb/index.js';
import { comparePaths } from '../../../src/repo/format/order.js';
import { useServers } from '../../harness/index.js';
import { makeTestRepo, type TestRepo } from '../../helpers/repo.js';
import { Couch, expectationsOf, jsonOf, listingOf, packument, sourceConfig } from './helpers.js';

/** A string whose UTF-8 form puts 2-, 3- and 4-byte characters across every 64 KiB boundary. */
function straddlingText(bytes: number): string {
  const parts: string[] = [];
  let size = 0;
  const chars = ['é', '€', '😀', 'ß', '中', '𝄞'];
  let i = 0;
  while (size < bytes) {
    const c = chars[i++ % chars.length]!;
    parts.push(c);
    size += Buffer.byteLength(c);
  }
  return parts.join('');
}

describe('CouchDB source: full backup', () => {
  const servers = useServers({ couchdb: true });
  let couch: Couch;
  let t: TestRepo;
  const small = randomBytes(1000);
  const big = randomBytes(5 * 1024 * 1024 + 17);
  const text = straddlingText(300 * 1024);
  let conflictRevs: string[] = [];

  before(async () => {
    couch = new Couch(servers.couchdb);
    t = await makeTestRepo();
    await couch.req('PUT', 'registry');
    await couch.put('registry', 'left-pad', packument('left-pad', ['1.0.0', '1.1.0']));
    await couch.put('registry', '@scope/pkg', packument('@scope/pkg', ['2.0.0']));
    await couch.put('registry', 'evil', {
      ...packument('evil', ['1.0.0']),
      versions: { '../../etc/passwd': { dist: { shasum: 'x' } }, '1.0.0': { dist: { shasum: 'y' } } },
    });
    await couch.put('registry', '_design/app', {
      views: { all: { map: 'function (doc) { emit(doc._id) }' } },
    });
    await couch.put('registry', 'unicode', { text, name: 'ünïcödé' });
    const r1 = await couch.put('registry', 'conflicted', { side: 'a' });
    await couch.force('registry', [
      { _id: 'conflicted', _rev: '1-ffffffffffffffffffffffffffffffff', side: 'b' },
    ]);
    conflictRevs = [r1, '1-ffffffffffffffffffffffffffffffff'];
    await couch.put('registry', 'tomb', { soon: 'gone' });
    await couch.del('registry', 'tomb');
    let rev = await couch.put('registry', 'files', { kind: 'files' });
    rev = await couch.putAttachment('registry', 'files', rev, 'small.bin', small, 'application/octet-stream');
    await couch.putAttachment('registry', 'files', rev, 'dir/big file.bin', big, 'application/octet-stream');
    await couch.req('PUT', 'registry/_security', {
      admins: { names: ['ops'], roles: [] },
      members: { names: [], roles: ['readers'] },
    });
    await couch.put('registry', '_local/checkpoint', { history: [] });
  });
  after(async () => {
    await t.close();
    await rm(t.dir, { recursive: true, force: true });
  });

  it('stores every leaf, body, attachment and the _security object, readable with the restore identity', async () => {
    const cfg = sourceConfig(servers.couchdb.url, { includeLocal: true, batchSize: 3 });
    const ctx = t.ctx();
    const r = await backupDatabase(cfg, 'registry', ctx);
    await t.writer.flush();
    const reader = await t.restoreReader();

    const db = r.db;
    assert.equal(db.mode, 'full');
    assert.equal(db.name, 'registry');
    assert.equal(typeof db.seq, 'number', 'the PouchDB server gives integer sequences: stored as given');
    // left-pad, @scope/pkg, evil, _design/app, unicode, conflicted, files live; tomb deleted
    assert.equal(db.docCount, 7);
    assert.equal(db.deletedCount, 1);
    assert.equal(db.conflictCount, 1);
    assert.equal(db.attachmentCount, 2);
    assert.equal(db.attachmentBytes, small.length + big.length);
    assert.ok(db.bodyBytes > text.length);
    assert.equal(r.snapshot.url, servers.couchdb.baseUrl);
    assert.ok(!JSON.stringify(r).includes(servers.couchdb.admin!.password));

    const listing = await listingOf(reader, db.listing);
    const ids = listing.map((e) => e.id);
    assert.deepEqual(ids, [...ids].sort(comparePaths));
    assert.deepEqual(ids, [
      '@scope/pkg',
      '_design/app',
      'conflicted',
      'evil',
      'files',
      'left-pad',
      'tomb',
      'unicode',
    ]);
    const by = new Map(listing.map((e) => [e.id, e]));

    // Conflicts: both leaves, the winner first (same generation: the greater hash wins).
    const conflicted = by.get('conflicted')!;
    assert.equal(conflicted.leaves.length, 2);
    assert.deepEqual(
      conflicted.leaves.map((l) => l.rev),
      [...conflictRevs].sort().reverse(),
    );
    assert.equal(conflicted.rev, conflicted.leaves[0]!.rev);
    const server = await couch.get<{ _rev: string }>('registry', 'conflicted');
    assert.equal(conflicted.rev, server._rev, 'the same winner as CouchDB picks');
    const loser = await jsonOf<{ side: string; _revisions: unknown }>(reader, conflicted.leaves[1]!.body);
    assert.ok(loser._revisions, 'bodies carry their revision history');

    // Tombstones.
    const tomb = by.get('tomb')!;
    assert.equal(tomb.deleted, true);
    assert.equal(tomb.leaves[0]!.deleted, true);
    assert.equal((await jsonOf<{ _deleted: boolean }>(reader, tomb.leaves[0]!.body))._deleted, true);

    // The ancestors a restore checks: the parent and the oldest revision of each leaf's history.
    const historyOf = async (id: string) => {
      const h = (
        await jsonOf<{ _revisions: { start: number; ids: string[] } }>(reader, by.get(id)!.leaves[0]!.body)
      )._revisions;
      return h.ids.map((x, i) => `${h.start - i}-${x}`);
    };
    const tombHistory = await historyOf('tomb');
    assert.equal(tombHistory.length, 2);
    assert.deepEqual(tomb.leaves[0]!.ancestors, [tombHistory[1]]);
    const filesHistory = await historyOf('files');
    assert.equal(filesHistory.length, 3);
    assert.deepEqual(by.get('files')!.leaves[0]!.ancestors, [filesHistory[1], filesHistory[2]]);
    assert.equal(by.get('left-pad')!.leaves[0]!.ancestors, undefined, 'a history of one revision: none');

    // Bodies as served, with multi-byte characters intact across 64 KiB boundaries.
    const uni = await jsonOf<{ text: string; name: string }>(reader, by.get('unicode')!.leaves[0]!.body);
    assert.equal(uni.text, text);
    assert.equal(uni.name, 'ünïcödé');
    const design = await jsonOf<{ views: unknown }>(reader, by.get('_design/app')!.leaves[0]!.body);
    assert.deepEqual(design.views, { all: { map: 'function (doc) { emit(doc._id) }' } });
    const served = await couch.get('registry', 'left-pad', '?revs=true');
    assert.deepEqual(await jsonOf(reader, by.get('left-pad')!.leaves[0]!.body), served);

    // Attachments: stubs in the body, bytes streamed into their own stream.
    const files = by.get('files')!;
    const atts = files.leaves[0]!.atts!;
    assert.deepEqual(atts.map((a) => [a.name, a.length, a.type]).sort(), [
      ['dir/big file.bin', big.length, 'application/octet-stream'],
      ['small.bin', small.length, 'application/octet-stream'],
    ]);
    for (const a of atts) {
      const bytes = await readAll(reader, a.data);
      assert.ok(bytes.equals(a.name === 'small.bin' ? small : big), `bytes of ${a.name}`);
      assert.match(a.digest, /^md5-/);
      assert.equal(typeof a.revpos, 'number');
    }
    const filesBody = await jsonOf<{ _attachments: Record<string, { stub?: boolean; data?: string }> }>(
      reader,
      files.leaves[0]!.body,
    );
    assert.equal(filesBody._attachments['small.bin']!.stub, true);
    assert.equal(filesBody._attachments['small.bin']!.data, undefined);

    // _security.
    assert.ok(db.security);
    assert.deepEqual(await jsonOf(reader, db.security), {
      admins: { names: ['ops'], roles: [] },
      members: { names: [], roles: ['readers'] },
    });

    // The PouchDB server has no _local_docs: a warning, not a failure.
    assert.ok(r.findings.some((f) => f.code === 'local-docs-unsupported' && f.severity === 'warning'));
    // A hostile version name is refused with a warning.
    assert.ok(r.findings.some((f) => f.code === 'tarball-path-unsafe' && f.message.includes('passwd')));

    // Tarball expectations of the packuments, sorted by path.
    assert.ok(r.expectations);
    const exp = await expectationsOf(reader, r.expectations);
    assert.deepEqual(
      exp.map((e) => e.path),
      [
        '@scope/pkg/-/pkg-2.0.0.tgz',
        'evil/-/evil-1.0.0.tgz',
        'left-pad/-/left-pad-1.0.0.tgz',
        'left-pad/-/left-pad-1.1.0.tgz',
      ],
    );
    const scoped = exp[0]!;
    assert.equal(scoped.doc, '@scope/pkg');
    assert.equal(scoped.db, 'registry');
    assert.match(scoped.integrity!, /^sha512-/);
    assert.equal(scoped.shasum!.length, 40);

    assert.deepEqual(
      r.findings.filter((f) => f.severity === 'error' || f.code === 'count-mismatch'),
      [],
      'the counts agree with the server and nothing failed',
    );
    assert.equal(r.stats.rounds, 2, 'one round reading, one seeing no change');
    assert.equal(r.stats.docsFetched, 8);
    assert.ok(ctx.progress.docs >= 8);
    assert.ok(ctx.progress.bytes >= big.length);
  });
});
