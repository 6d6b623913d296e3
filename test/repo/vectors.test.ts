import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KeyError } from '../../src/errors.js';
import { decrypt, headerLength, Identities } from '../../src/repo/age.js';
import { gearTable } from '../../src/repo/chunker.js';
import { decompressBlob } from '../../src/repo/compress.js';
import { decodeIndexBody } from '../../src/repo/index-object.js';
import {
  deriveKeys,
  loadRestoreIdentity,
  loadWorkerKey,
  type RestoreIdentity,
  type WorkerKey,
} from '../../src/repo/keys.js';
import { packKey, parsePackTrailer } from '../../src/repo/pack.js';
import { BlobReader } from '../../src/repo/reader.js';
import { Repository } from '../../src/repo/repository.js';
import { decodeSigned } from '../../src/repo/signed.js';
import { listSnapshots, loadSnapshot } from '../../src/repo/snapshot.js';
import { readAll, type StreamRef } from '../../src/repo/stream-ref.js';
import { FsStore } from '../../src/store/fs.js';
import { tmpDir } from '../harness/tmp.js';
import {
  EXPECTED_FILE,
  FORMAT_MD,
  generatedBlock,
  KEYS_DIR,
  renderExample,
  REPO_DIR,
  type Expected,
  type ExpectedSigned,
} from '../vectors/vectors.js';

/**
 * The test vectors of docs/FORMAT.md §20: the committed bytes of test/vectors/repo/, read with the production
 * readers, decode to what test/vectors/expected.json records, and FORMAT §19 shows those values. After a
 * deliberate format change: `npx tsc -p tsconfig.json && node dist/test/vectors/make.js`, and commit.
 */
const REGENERATE = 'if the format changed on purpose, run `node dist/test/vectors/make.js` and commit';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const file = (key: string) => readFileSync(path.join(REPO_DIR, key));

function assertSigned(plain: Buffer, x: ExpectedSigned): void {
  assert.equal(plain.subarray(0, 13).toString('hex'), x.headHex, `signed head of ${x.key}`);
  assert.equal(plain.subarray(plain.length - 64).toString('hex'), x.signatureHex, `signature of ${x.key}`);
}

describe('test vectors (docs/FORMAT.md §20)', () => {
  let x: Expected;
  let worker: WorkerKey;
  let restore: RestoreIdentity;
  let store: FsStore;
  let repo: Repository;

  before(async () => {
    x = JSON.parse(readFileSync(EXPECTED_FILE, 'utf8')) as Expected;
    worker = await loadWorkerKey(path.join(KEYS_DIR, 'worker.key'));
    restore = await loadRestoreIdentity(path.join(KEYS_DIR, 'restore.key'));
    store = new FsStore({ name: 'vectors', root: REPO_DIR });
    ({ repo } = await Repository.open([store], { restore }, { cacheRoot: await tmpDir() }));
  });
  after(() => repo?.close());

  test('the key files, and the keys derived from the repository secret', () => {
    assert.equal(worker.keyId, x.keys.keyId);
    assert.equal(restore.keyId, x.keys.keyId);
    assert.equal(restore.recipient, x.keys.recipient);
    assert.deepEqual(worker.recipients, [x.keys.recipient]);
    assert.equal(worker.metadataRecipient, x.keys.metadataRecipient);
    assert.equal(restore.verifyKeyRaw.toString('base64'), x.keys.verifyKey);
    assert.equal(worker.verifyKeyRaw.toString('base64'), x.keys.verifyKey);
    assert.equal(restore.repositorySecret.toString('base64'), x.keys.repositorySecret);
    const d = deriveKeys(restore.repositorySecret);
    assert.equal(d.idKey.toString('hex'), x.keys.idKey, REGENERATE);
    assert.equal(d.chunkerKey.toString('hex'), x.keys.chunkerKey, REGENERATE);
    assert.deepEqual([...gearTable(d.chunkerKey).subarray(0, 4)], x.keys.gearHead, REGENERATE);
  });

  test('the config: signed head, JSON body, signature; the repository opens with it', () => {
    const bytes = file('config');
    assert.equal(bytes.length, x.config.size);
    assert.equal(sha256(bytes), x.config.sha256);
    assertSigned(bytes, x.config);
    assert.equal(bytes.subarray(13, bytes.length - 64).toString('utf8'), x.config.body);
    assert.deepEqual(repo.config, JSON.parse(x.config.body));
  });

  test('each pack: its age header, its plaintext, its entries and blobs; only the restore identity opens a data pack', async () => {
    const restoreIds = new Identities([restore.identity]);
    const metadataIds = new Identities([worker.metadataIdentity]);
    assert.deepEqual(x.packs.map((p) => p.type).sort(), [0, 1]);
    for (const p of x.packs) {
      assert.equal(p.key, packKey(p.type, p.id));
      const bytes = file(p.key);
      assert.equal(bytes.length, p.size, p.key);
      assert.equal(sha256(bytes), p.sha256, p.key);
      assert.equal(bytes.subarray(0, headerLength(bytes)).toString('latin1'), p.ageHeader, p.key);
      const plain = await decrypt(restoreIds, bytes);
      assert.equal(plain.toString('hex'), p.plaintextHex, p.key);
      const entries = parsePackTrailer(plain, p.key);
      assert.deepEqual(
        entries.map((e) => ({ ...e, id: e.id.toString('hex') })),
        p.entries,
        p.key,
      );
      for (const e of entries) {
        const blob = x.blobs.find((b) => b.id === e.id.toString('hex'));
        assert.ok(blob, `blob ${e.id.toString('hex')} of ${p.key} is one of the vectors' blobs`);
        assert.equal(e.type, blob.type);
        const raw = decompressBlob(plain.subarray(e.offset, e.offset + e.length), e.compression, e.rawLength);
        assert.equal(raw.toString('utf8'), blob.plaintext);
      }
      if (p.type === 0) {
        await assert.rejects(decrypt(metadataIds, bytes), KeyError, 'the worker key opens no data pack');
      } else {
        assert.equal((await decrypt(metadataIds, bytes)).toString('hex'), p.plaintextHex);
      }
    }
  });

  test('the index object: its name, head, body and signature, and the packs it records', async () => {
    const bytes = file(x.index.key);
    assert.equal(bytes.length, x.index.size);
    assert.equal(sha256(bytes), x.index.sha256);
    assert.equal(x.index.key, `index/${x.index.sha256}`);
    const plain = await decrypt(new Identities([restore.identity]), bytes);
    assertSigned(plain, x.index);
    const body = decodeSigned('index', plain, restore.verifyKey, x.index.key);
    assert.equal(body.toString('hex'), x.index.bodyHex);
    assert.deepEqual(
      decodeIndexBody(body, x.index.key).map((p) => ({
        id: p.info.id,
        type: p.info.type,
        size: p.info.size,
        sha256: p.info.sha256,
        entries: p.entries.map((e) => ({ ...e, id: e.id.toString('hex') })),
      })),
      x.packs.map((p) => ({ id: p.id, type: p.type, size: p.size, sha256: p.sha256, entries: p.entries })),
    );
  });

  test('the snapshot: its name, ID, head, signature and manifest', async () => {
    const list = await listSnapshots(store);
    assert.deepEqual(
      list.map((s) => ({ key: s.key, id: s.id })),
      [{ key: x.snapshot.key, id: x.snapshot.id }],
    );
    const bytes = file(x.snapshot.key);
    assert.equal(bytes.length, x.snapshot.size);
    assert.equal(sha256(bytes), x.snapshot.id);
    assertSigned(await decrypt(new Identities([restore.identity]), bytes), x.snapshot);
    const manifest = await loadSnapshot(repo, store, list[0]!);
    assert.deepEqual(manifest, x.snapshot.manifest);
    assert.equal(manifest.repository, repo.config.id);
  });

  test('the stream references read back, through the index, to the listing and the document', async () => {
    const reader = new BlobReader(repo, await repo.loadIndex());
    const listingRef = x.streams.listing as StreamRef;
    const db = (x.snapshot.manifest.sources as { databases: { listing: unknown }[] }[])[0]!.databases[0]!;
    assert.deepEqual(db.listing, listingRef);
    const listing = (await readAll(reader, listingRef)).toString('utf8');
    assert.equal(listing, x.blobs.find((b) => b.name === 'listing')!.plaintext);
    const entry = JSON.parse(listing) as { leaves: { body: StreamRef }[] };
    assert.deepEqual(entry.leaves[0]!.body, x.streams.body);
    const body = await readAll(reader, entry.leaves[0]!.body);
    assert.equal(body.toString('utf8'), x.blobs.find((b) => b.name === 'body')!.plaintext);
  });

  test('docs/FORMAT.md §19 shows exactly these vectors', () => {
    const block = generatedBlock(readFileSync(FORMAT_MD, 'utf8'));
    assert.ok(block, 'docs/FORMAT.md has the test-vector markers');
    assert.equal(block, renderExample(x), `FORMAT §19 is out of date: ${REGENERATE}`);
  });
});
