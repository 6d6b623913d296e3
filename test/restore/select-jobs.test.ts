import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type {
  CouchSourceSnapshot,
  DbSnapshot,
  TarballSourceSnapshot,
} from '../../src/repo/format/source-snapshots.js';
import { UsageError } from '../../src/errors.js';
import type { StreamRef } from '../../src/repo/stream-ref.js';
import { journalKeyOf, selectJobs, type JobSelection } from '../../restore/engine.js';

const listing = { size: 0 } as unknown as StreamRef; // never read: selection looks at names only

function dbSnap(name: string): DbSnapshot {
  return {
    name,
    seq: '1',
    mode: 'full',
    docCount: 1,
    deletedCount: 0,
    conflictCount: 0,
    attachmentCount: 0,
    attachmentBytes: 0,
    bodyBytes: 1,
    listing,
  };
}

const couch = (name: string, dbs: string[]): CouchSourceSnapshot => ({
  kind: 'couchdb',
  name,
  url: 'http://couch',
  databases: dbs.map(dbSnap),
});
const tarballs = (name: string): TarballSourceSnapshot => ({
  kind: 'tarballs',
  name,
  location: '/srv/tarballs',
  files: 1,
  bytes: 1,
  listing,
});

function selection(
  sources: (CouchSourceSnapshot | TarballSourceSnapshot)[],
  over: Partial<JobSelection> = {},
): JobSelection {
  return {
    snapshot: { id: 'abcdef0123456789abcdef', key: 'snapshots/x', time: new Date(0) },
    manifest: {
      version: 1,
      time: '2026-01-01T00:00:00.000Z',
      host: 'h',
      repository: 'r',
      keyId: 'k',
      tags: [],
      sources,
    },
    couchdb: { url: 'http://dest' },
    tarballs: { dir: '/restore' },
    ...over,
  };
}

const usage = (message: RegExp) => (err: unknown) => err instanceof UsageError && message.test(err.message);

describe('which parts of a snapshot a restore writes', () => {
  test('everything, into a destination with both: every database and the tarball store', () => {
    const s = selectJobs(selection([couch('skimdb', ['registry', 'users']), tarballs('store')]));
    assert.deepEqual(
      s.dbJobs.map((j) => [j.source, j.db.name, j.dest, j.packages]),
      [
        ['skimdb', 'registry', 'registry', undefined],
        ['skimdb', 'users', 'users', undefined],
      ],
    );
    assert.deepEqual(
      s.tarballJobs.map((j) => [j.source.name, j.packages]),
      [['store', undefined]],
    );
    assert.deepEqual(s.notes, []);
  });

  test('--db (by name or source/name) leaves the tarball store out, with a note; dbName renames', () => {
    const s = selectJobs(
      selection([couch('skimdb', ['registry', 'users']), tarballs('store')], {
        only: { dbs: ['skimdb/users'] },
        couchdb: { url: 'http://dest', dbName: (db) => `drill-${db}` },
      }),
    );
    assert.deepEqual(
      s.dbJobs.map((j) => [j.db.name, j.dest]),
      [['users', 'drill-users']],
    );
    assert.deepEqual(s.tarballJobs, []);
    assert.deepEqual(s.notes, ['--db: the tarball store is not restored']);
  });

  test('--package selects its documents and its tarballs', () => {
    const s = selectJobs(
      selection([couch('skimdb', ['registry']), tarballs('store')], { only: { packages: ['a'] } }),
    );
    assert.deepEqual([...s.dbJobs[0]!.packages!], ['a']);
    assert.deepEqual(s.tarballJobs[0]!.packages, ['a']);
  });

  test('a destination without CouchDB or without a tarball store: the other part, and a note', () => {
    const noCouch = selectJobs(
      selection([couch('skimdb', ['registry']), tarballs('store')], { couchdb: undefined }),
    );
    assert.deepEqual(noCouch.dbJobs, []);
    assert.deepEqual(noCouch.notes, [
      'the CouchDB databases of the snapshot are not restored: the destination has no CouchDB',
    ]);
    const noStore = selectJobs(
      selection([couch('skimdb', ['registry']), tarballs('store')], { tarballs: undefined }),
    );
    assert.equal(noStore.tarballJobs.length, 0);
    assert.deepEqual(noStore.notes, [
      'the tarball store of the snapshot is not restored: the destination has no tarball store',
    ]);
  });

  test('names the snapshot does not have, and selections the destination cannot take, are refused', () => {
    const both = [couch('skimdb', ['registry']), tarballs('store')];
    assert.throws(
      () => selectJobs(selection(both, { only: { sources: ['nope'] } })),
      usage(/^snapshot abcdef012345 has no source nope \(it has skimdb, store\)$/),
    );
    assert.throws(
      () => selectJobs(selection(both, { only: { dbs: ['nope'] } })),
      usage(/^snapshot abcdef012345 has no database nope \(it has registry\)$/),
    );
    assert.throws(
      () => selectJobs(selection(both, { couchdb: undefined, only: { packages: ['a'] } })),
      usage(/needs a CouchDB destination/),
    );
    assert.throws(
      () => selectJobs(selection(both, { tarballs: undefined, only: { packages: ['a'] } })),
      usage(
        /^--package restores the tarballs too: give a tarball destination \(--tarballs, or a destination/,
      ),
    );
    assert.throws(
      () => selectJobs(selection([couch('a', ['registry']), couch('b', ['registry'])])),
      usage(
        /^databases a\/registry and b\/registry would both be restored into registry: select one with --db$/,
      ),
    );
    assert.throws(
      () => selectJobs(selection([tarballs('one'), tarballs('two')])),
      usage(
        /^the snapshot has several tarball stores \(one, two\) and the destination one: select one with --source$/,
      ),
    );
    assert.throws(
      () => selectJobs(selection([tarballs('store')], { tarballs: undefined })),
      usage(/^nothing to restore: /),
    );
  });

  test('the journal key: the destination alone, or with the selection', () => {
    assert.equal(journalKeyOf('tarballs /r', {}), 'tarballs /r');
    assert.equal(journalKeyOf('tarballs /r', { packages: [] }), 'tarballs /r');
    assert.equal(journalKeyOf('tarballs /r', { packages: ['a'] }), 'tarballs /r [[],[],["a"]]');
    assert.equal(journalKeyOf('x', { sources: ['s'], dbs: ['d'] }), 'x [["s"],["d"],[]]');
  });
});
