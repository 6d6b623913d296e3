import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CouchDestination } from '../../restore/couch-http.js';
import { verifyDatabase } from '../../restore/couch-verify.js';
import { checkDocEntry, type DocEntry } from '../../src/repo/format/couchdb-listing.js';
import { historyAncestors } from '../../src/sources/couchdb/inspect.js';
import { startCouchDB, type CouchServer } from '../harness/couchdb.js';
import { couch } from './fixture.js';

const NO_BODY = { size: 0, chunks: [] };

function entry(id: string, rev: string, ancestors?: string[]): DocEntry {
  return {
    id,
    rev,
    deleted: false,
    leaves: [{ rev, deleted: false, body: NO_BODY, ...(ancestors ? { ancestors } : {}) }],
  };
}

async function* listOf(entries: DocEntry[]): AsyncGenerator<DocEntry> {
  yield* entries;
}

describe('historyAncestors: what a restore must find of a revision history', () => {
  test('the parent, and the oldest revision when it is another one', () => {
    assert.deepEqual(historyAncestors('3-c', { start: 3, ids: ['c', 'b', 'a'] }), ['2-b', '1-a']);
    assert.deepEqual(historyAncestors('2-b', { start: 2, ids: ['b', 'a'] }), ['1-a']);
    // A stemmed history (CouchDB keeps _revs_limit revisions): the oldest kept one.
    assert.deepEqual(historyAncestors('9-z', { start: 9, ids: ['z', 'y', 'x'] }), ['8-y', '7-x']);
  });
  test('nothing for one revision, or a _revisions that is not the history of the revision', () => {
    assert.equal(historyAncestors('1-a', { start: 1, ids: ['a'] }), undefined);
    assert.equal(historyAncestors('3-c', undefined), undefined);
    assert.equal(historyAncestors('3-c', { start: 3, ids: ['x', 'b', 'a'] }), undefined);
    assert.equal(historyAncestors('3-c', { start: 2, ids: ['c', 'b', 'a'] }), undefined);
    assert.equal(historyAncestors('3-c', { start: '3', ids: ['c', 'b'] }), undefined);
    assert.equal(historyAncestors('3-c', { start: 3, ids: ['c', 7] }), undefined);
  });
  test('a listing line with ancestors that cannot be the history of its leaf is refused', () => {
    assert.equal(checkDocEntry(entry('a', '3-c', ['2-b', '1-a'])).id, 'a');
    assert.equal(checkDocEntry(entry('a', '9-z', ['8-y', '7-x'])).id, 'a');
    for (const bad of [[], ['2-b', '1-a', '1-z'], ['3-b'], ['1-a'], ['2-b', '2-a'], ['x'], [7], 'nope'])
      assert.throws(
        () => checkDocEntry(entry('a', '3-c', bad as string[])),
        /bad ancestors of a revision 3-c/,
        JSON.stringify(bad),
      );
  });
});

describe('verifyDatabase: revision histories are checked on the destination', () => {
  let server: CouchServer;
  before(async () => {
    server = await startCouchDB();
    assert.equal((await couch(server.url, 'PUT', 'db')).status, 201);
    const docs = [
      { _id: 'whole', _rev: '3-c', v: 1, _revisions: { start: 3, ids: ['c', 'b', 'a'] } },
      { _id: 'constructor', _rev: '2-b', v: 2, _revisions: { start: 2, ids: ['b', 'a'] } },
      // Written short: only its own revision (the way a history is lost: stemmed, or dropped on the way).
      { _id: 'short', _rev: '3-c', v: 3 },
      { _id: 'old-line', _rev: '2-b', v: 4, _revisions: { start: 2, ids: ['b', 'a'] } },
      // Two leaves: 3-c whole, 3-d written short. Its would-be ancestors are in the tree (on 3-c's path), so
      // only reading 3-d's own history shows it.
      { _id: 'twin', _rev: '3-c', v: 5, _revisions: { start: 3, ids: ['c', 'b', 'a'] } },
      { _id: 'twin', _rev: '3-d', v: 6 },
    ];
    const r = await couch<unknown[]>(server.url, 'POST', 'db/_bulk_docs', { new_edits: false, docs });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  });
  after(() => server.stop());

  test('a history written short fails the check, named; whole ones pass', async () => {
    const dest = new CouchDestination(server.url);
    const checks = await verifyDatabase(
      dest,
      'db',
      listOf([
        entry('constructor', '2-b', ['1-a']),
        entry('old-line', '2-b'), // a line written before histories were recorded
        entry('short', '3-c', ['2-b', '1-a']),
        {
          id: 'twin',
          rev: '3-d',
          deleted: false,
          leaves: [
            { rev: '3-d', deleted: false, body: NO_BODY, ancestors: ['2-b', '1-a'] },
            { rev: '3-c', deleted: false, body: NO_BODY, ancestors: ['2-b', '1-a'] },
          ],
        },
        entry('whole', '3-c', ['2-b', '1-a']),
      ]),
      {},
    );
    const winners = checks.find((c) => c.check === 'winning revisions')!;
    assert.equal(winners.ok, true, 'the winning revisions alone cannot see it');
    const h = checks.find((c) => c.check.startsWith('revision histories'))!;
    assert.equal(h.ok, false);
    assert.equal(h.expected, 5);
    assert.equal(h.actual, 3);
    assert.match(h.check, /1 revisions of this snapshot have no recorded history: not checked/);
    assert.deepEqual(h.details, [
      '"short" 3-c: its history lacks 2-b, 1-a (written short)',
      '"twin" 3-d: its history lacks 2-b, 1-a (written short)',
    ]);
    assert.equal(checks.find((c) => c.check === 'conflict leaves')!.ok, true);
  });

  test('every history whole: the check passes', async () => {
    const dest = new CouchDestination(server.url);
    const checks = await verifyDatabase(
      dest,
      'db',
      listOf([entry('constructor', '2-b', ['1-a']), entry('whole', '3-c', ['2-b', '1-a'])]),
      {},
    );
    const h = checks.find((c) => c.check.startsWith('revision histories'))!;
    assert.deepEqual([h.check, h.ok, h.expected, h.actual], ['revision histories', true, 2, 2]);
  });
});
