import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import type { DocEntry } from '../../src/repo/format/couchdb-listing.js';
import {
  auditBatches,
  integrityDetail,
  judgeDigest,
  packageJsonOf,
  presenceDetail,
  Reservoir,
  sampleMismatch,
  sha512Of,
  versionOfFile,
} from '../../restore/drill-tarballs.js';

const content = Buffer.from('the tarball');
const sha512 = createHash('sha512').update(content).digest('base64');
const sha1 = createHash('sha1').update(content).digest('hex');
const got = { sha512, sha1 };

async function tgz(files: Record<string, string>): Promise<Readable> {
  const pack = tar.pack();
  for (const [name, body] of Object.entries(files)) pack.entry({ name }, body);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Readable.from([gzipSync(Buffer.concat(chunks))]);
}

const counts = {
  referenced: 10,
  inStore: 6,
  asAttachment: 2,
  absent: 2,
  bySha512: 5,
  bySha1: 1,
  noChecksum: 1,
  mismatched: 1,
  flaggedMismatch: 0,
  unreadable: 0,
};

describe('the drill tarball checks: the pure parts', () => {
  test('sha512Of: the sha512 digests of an SRI string, options dropped, other algorithms ignored', () => {
    assert.deepEqual(sha512Of(undefined), []);
    assert.deepEqual(sha512Of(`sha1-xyz sha512-${sha512}?opt  sha512-other`), [sha512, 'other']);
  });

  test('judgeDigest: sha512 first, then a 40-hex shasum, else no checksum; a difference is a mismatch', () => {
    assert.equal(judgeDigest({ integrity: `sha512-${sha512}`, shasum: '0'.repeat(40) }, got), 'sha512');
    assert.equal(judgeDigest({ integrity: 'sha512-AAAA', shasum: sha1 }, got), 'mismatch');
    assert.equal(judgeDigest({ shasum: sha1.toUpperCase() }, got), 'sha1');
    assert.equal(judgeDigest({ shasum: '1'.repeat(40) }, got), 'mismatch');
    assert.equal(judgeDigest({ shasum: 'not-hex' }, got), 'no-checksum');
    assert.equal(judgeDigest({ integrity: 'sha1-abc' }, got), 'no-checksum');
  });

  test('versionOfFile: the version from <base>-<version>.tgz, the scope left out', () => {
    assert.equal(versionOfFile('left-pad', 'left-pad-1.3.0.tgz'), '1.3.0');
    assert.equal(versionOfFile('@babel/core', 'core-7.0.0-beta.1.tgz'), '7.0.0-beta.1');
  });

  test('Reservoir: the first `size` items, then each later one replaces slot floor(random * seen) if in range', () => {
    const r = new Reservoir<number>(2, () => 0.5);
    for (const n of [1, 2]) r.offer(n);
    assert.deepEqual(r.items, [1, 2]);
    r.offer(3); // seen 3: slot floor(1.5) = 1
    assert.deepEqual(r.items, [1, 3]);
    r.offer(4); // seen 4: slot 2, out of range: not taken
    assert.deepEqual(r.items, [1, 3]);
    const none = new Reservoir<number>(0);
    none.offer(1);
    assert.deepEqual(none.items, []);
  });

  test('packageJsonOf: package/package.json, or another root when there is no package/', async () => {
    const pj = await packageJsonOf(
      await tgz({ 'package/README': 'x', 'package/package.json': '{"name":"a","version":"1.0.0"}' }),
    );
    assert.deepEqual(pj, { name: 'a', version: '1.0.0' });
    const other = await packageJsonOf(await tgz({ 'node/package.json': '{"name":"b","version":"2.0.0"}' }));
    assert.deepEqual(other, { name: 'b', version: '2.0.0' });
    await assert.rejects(packageJsonOf(await tgz({ 'x/y/package.json': '{}' })), /no package\/package\.json/);
  });

  test('the detail lines of the checks', () => {
    assert.equal(
      integrityDetail(counts),
      '6 in the tarball store and 2 as attachments: 5 match by sha512, 1 by sha1 (no integrity recorded), ' +
        '1 without any checksum',
    );
    assert.match(
      integrityDetail({ ...counts, flaggedMismatch: 3 }),
      /; 3 did not match already when backed up \(restored as they were\)$/,
    );
    assert.equal(
      presenceDetail(counts, 1, 0, 9),
      '10 referenced: 6 in the tarball store, 2 as attachments of their packument; 1 were not in the ' +
        'tarball store when the snapshot was taken (the backup reported them as missing); ' +
        '2 stored files no packument names',
    );
    assert.match(
      presenceDetail(counts, 0, 4, 0),
      /\(the backup reported them as missing\) \(4 not looked up\); 0 stored/,
    );
    assert.equal(
      sampleMismatch({ where: 'a/-/a-1.tgz', name: 'a', version: '1' }, { name: 'b', version: '2' }),
      'a/-/a-1.tgz: package.json says "b"@"2", the packument entry is a@1',
    );
  });
});

describe('the drill reads the restored packuments in batches', () => {
  const doc = (id: string, size: number, more: Partial<DocEntry> = {}): DocEntry => ({
    id,
    rev: '1-a',
    deleted: false,
    leaves: [
      { rev: '0-old', deleted: false, body: { size: 999_999, chunks: [] } },
      { rev: '1-a', deleted: false, body: { size, chunks: [] } },
    ],
    ...more,
  });
  async function* of(docs: DocEntry[]) {
    yield* docs;
  }
  const batches = async (docs: DocEntry[], maxDocs: number, maxBytes: number) => {
    const out: string[][] = [];
    for await (const b of auditBatches(of(docs), maxDocs, maxBytes)) out.push(b);
    return out;
  };

  test('at most maxDocs per batch, in listing order; local, deleted and design documents left out', async () => {
    const docs = [
      doc('a', 10),
      doc('_design/x', 10),
      doc('b', 10),
      doc('c', 10, { deleted: true }),
      doc('_local/y', 10, { local: true }),
      doc('d', 10),
      doc('e', 10),
      doc('f', 10),
    ];
    assert.deepEqual(await batches(docs, 2, 1000), [['a', 'b'], ['d', 'e'], ['f']]);
  });

  test("at most maxBytes of winning bodies per batch (the winner's size, not another leaf's); a bigger one alone", async () => {
    const docs = [doc('a', 40), doc('b', 40), doc('c', 40), doc('big', 500), doc('d', 10), doc('e', 100)];
    assert.deepEqual(await batches(docs, 100, 100), [['a', 'b'], ['c'], ['big'], ['d'], ['e']]);
  });

  test('nothing to read: no batch', async () => {
    assert.deepEqual(await batches([doc('_design/x', 1)], 10, 10), []);
  });
});
