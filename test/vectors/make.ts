/**
 * Makes the test vectors of docs/FORMAT.md §20 with regbackup's own writers: a tiny repository (one CouchDB
 * database holding one document) in test/vectors/repo/, written with the committed test keys of
 * test/vectors/keys/ (made on the first run), what a reader must decode from it in test/vectors/expected.json,
 * and the worked example of FORMAT §19 between its markers in docs/FORMAT.md.
 *
 *   npx tsc -p tsconfig.json && node dist/test/vectors/make.js
 *
 * Run it again whenever the format changes on purpose (a new blob-ID hash, say) and commit what it writes
 * (`git add -A test/vectors docs/FORMAT.md`: the old objects' files are gone);
 * test/repo/vectors.test.ts fails until then. The keys are kept; everything else is new each time: `init`
 * picks a new repository ID, and age encryption is randomised (packs, index object and snapshot get new
 * bytes and names).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as prettier from 'prettier';
import { decrypt, headerLength, Identities } from '../../src/repo/age.js';
import { gearTable } from '../../src/repo/chunker.js';
import { Fanout } from '../../src/repo/fanout.js';
import {
  deriveKeys,
  generateKeys,
  loadRestoreIdentity,
  loadWorkerKey,
  writeKeyFiles,
} from '../../src/repo/keys.js';
import { decodeIndexBody } from '../../src/repo/index-object.js';
import { packKey, parsePackTrailer } from '../../src/repo/pack.js';
import { Repository } from '../../src/repo/repository.js';
import { newManifest, sealSnapshot } from '../../src/repo/snapshot.js';
import { writeBuffer } from '../../src/repo/stream-ref.js';
import { decodeSigned } from '../../src/repo/signed.js';
import { BlobWriter } from '../../src/repo/writer.js';
import { FsStore } from '../../src/store/fs.js';
import {
  EXPECTED_FILE,
  FORMAT_MD,
  generatedBlock,
  KEYS_DIR,
  renderExample,
  REPO_DIR,
  type Expected,
  type ExpectedSigned,
} from './vectors.js';

/** The document: a packument as CouchDB serves it (with `_id`, `_rev`, `_revisions`). */
const DOC = {
  _id: 'tiny',
  _rev: '1-5f1c0b6a8d2e4c3b9a7f6e5d4c3b2a19',
  _revisions: { start: 1, ids: ['5f1c0b6a8d2e4c3b9a7f6e5d4c3b2a19'] },
  name: 'tiny',
  'dist-tags': { latest: '1.0.0' },
  versions: {
    '1.0.0': {
      name: 'tiny',
      version: '1.0.0',
      description: 'a tiny package, for the test vectors',
      dist: {
        tarball: 'http://registry.example/tiny/-/tiny-1.0.0.tgz',
        shasum: 'a3f1d5c2e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39',
      },
    },
  },
  time: {
    created: '2026-12-01T00:00:00.000Z',
    modified: '2026-12-01T00:00:00.000Z',
    '1.0.0': '2026-12-01T00:00:00.000Z',
  },
};

async function keys() {
  const worker = path.join(KEYS_DIR, 'worker.key');
  if (!existsSync(worker)) writeKeyFiles(KEYS_DIR, await generateKeys());
  return {
    worker: await loadWorkerKey(worker),
    restore: await loadRestoreIdentity(path.join(KEYS_DIR, 'restore.key')),
  };
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** What a signed object (plain: the config; else decrypted) shows of itself. */
function signedOf(key: string, stored: Buffer, plain: Buffer): ExpectedSigned {
  return {
    key,
    sha256: sha256(stored),
    size: stored.length,
    headHex: plain.subarray(0, 13).toString('hex'),
    signatureHex: plain.subarray(plain.length - 64).toString('hex'),
  };
}

async function main(): Promise<void> {
  const k = await keys();
  const cacheRoot = mkdtempSync(path.join(os.tmpdir(), 'regbackup-vectors-'));
  rmSync(REPO_DIR, { recursive: true, force: true });
  const store = new FsStore({ name: 'vectors', root: REPO_DIR });
  try {
    await Repository.init([store], k.worker, { packSize: 16 * 1024 * 1024, compressionLevel: 3 });
    const { repo } = await Repository.open([store], { worker: k.worker }, { cacheRoot });
    const index = await repo.loadIndex();
    const writer = new BlobWriter(repo, index, new Fanout(repo.targets), { workers: 1 });
    const body = Buffer.from(JSON.stringify(DOC));
    const bodyRef = await writeBuffer(writer, body, 'json');
    const entry = {
      id: DOC._id,
      rev: DOC._rev,
      deleted: false,
      leaves: [{ rev: DOC._rev, deleted: false, body: bodyRef }],
    };
    const listing = Buffer.from(`${JSON.stringify(entry)}\n`);
    const listingRef = await writeBuffer(writer, listing, 'tree');
    await writer.flush();
    await writer.close();
    const source = {
      kind: 'couchdb',
      name: 'registry',
      url: 'http://127.0.0.1:5984/',
      databases: [
        {
          name: 'registry',
          seq: '1-g1AAAABXeJzLYWBgYMpgTmHgz8tPSTV0MDQy1zMAQsMcoARTIkOS_P___7MSGUAKmFIYWOSzgAqSyFQ',
          mode: 'full',
          docCount: 1,
          deletedCount: 0,
          conflictCount: 0,
          attachmentCount: 0,
          attachmentBytes: 0,
          bodyBytes: body.length,
          info: { purgeSeq: 0, instanceStartTime: '0' },
          listing: listingRef,
        },
      ],
    };
    const manifest = newManifest(repo, [source], { host: 'vectors', stats: { ...writer.stats } });
    const sealed = await sealSnapshot(repo, manifest);
    await store.put(sealed.key, sealed.bytes);
    repo.close();

    // What a reader must find: read back with the restore identity.
    const ids = new Identities([k.restore.identity]);
    const configBytes = await store.getBuffer('config');
    const indexKey = writer.indexKeys[0]!;
    const indexBytes = await store.getBuffer(indexKey);
    const indexPlain = await decrypt(ids, indexBytes);
    const indexBody = decodeSigned('index', indexPlain, k.restore.verifyKey, indexKey);
    const snapPlain = await decrypt(ids, sealed.bytes);
    const packs = [];
    for (const p of decodeIndexBody(indexBody, indexKey)) {
      const key = packKey(p.info.type, p.info.id);
      const bytes = await store.getBuffer(key);
      const plain = await decrypt(ids, bytes);
      packs.push({
        key,
        id: p.info.id,
        type: p.info.type,
        size: bytes.length,
        sha256: sha256(bytes),
        ageHeader: bytes.subarray(0, headerLength(bytes)).toString('latin1'),
        plaintextHex: plain.toString('hex'),
        entries: parsePackTrailer(plain, key).map((e) => ({
          id: e.id.toString('hex'),
          type: e.type,
          compression: e.compression,
          offset: e.offset,
          length: e.length,
          rawLength: e.rawLength,
        })),
      });
    }
    const derived = deriveKeys(k.worker.repositorySecret);
    const expected: Expected = {
      generatedBy: 'test/vectors/make.ts',
      keys: {
        keyId: k.worker.keyId,
        recipient: k.restore.recipient,
        metadataRecipient: k.worker.metadataRecipient,
        verifyKey: k.worker.verifyKeyRaw.toString('base64'),
        repositorySecret: k.worker.repositorySecret.toString('base64'),
        idKey: derived.idKey.toString('hex'),
        chunkerKey: derived.chunkerKey.toString('hex'),
        gearHead: [...gearTable(derived.chunkerKey).subarray(0, 4)],
      },
      config: {
        ...signedOf('config', configBytes, configBytes),
        body: configBytes.subarray(13, configBytes.length - 64).toString('utf8'),
      },
      blobs: [
        { name: 'body', id: bodyRef.chunks![0]!, type: 0, plaintext: body.toString('utf8') },
        { name: 'listing', id: listingRef.chunks![0]!, type: 1, plaintext: listing.toString('utf8') },
      ],
      packs,
      index: { ...signedOf(indexKey, indexBytes, indexPlain), bodyHex: indexBody.toString('hex') },
      snapshot: {
        ...signedOf(sealed.key, sealed.bytes, snapPlain),
        id: sealed.id,
        manifest: manifest as unknown as Record<string, unknown>,
      },
      streams: { body: bodyRef, listing: listingRef },
    };
    // Formatted as `prettier --check .` (CI) wants it.
    const options = { ...(await prettier.resolveConfig(EXPECTED_FILE)), filepath: EXPECTED_FILE };
    writeFileSync(EXPECTED_FILE, await prettier.format(JSON.stringify(expected), options));

    const md = readFileSync(FORMAT_MD, 'utf8');
    const old = generatedBlock(md);
    if (!old) throw new Error(`${FORMAT_MD} lacks the test-vector markers`);
    writeFileSync(
      FORMAT_MD,
      md.replace(old, () => renderExample(expected)),
    );
    console.log(`wrote ${REPO_DIR}, ${EXPECTED_FILE} and the worked example in ${FORMAT_MD}`);
  } finally {
    rmSync(cacheRoot, { recursive: true, force: true });
  }
}

await main();
