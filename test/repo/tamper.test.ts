import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { IntegrityError, KeyError, RegbackupError } from '../../src/errors.js';
import { decrypt, encrypt, Identities, openAge } from '../../src/repo/age.js';
import { BlobReader } from '../../src/repo/reader.js';
import { encodeRestoreIdentity, generateKeys } from '../../src/repo/keys.js';
import { decodeIndexBody } from '../../src/repo/index-object.js';
import { parsePackTrailer } from '../../src/repo/pack.js';
import { Repository } from '../../src/repo/repository.js';
import { decodeSigned, encodeSigned } from '../../src/repo/signed.js';
import {
  listSnapshots,
  loadSnapshot,
  newManifest,
  sealSnapshot,
  resolveSnapshot,
} from '../../src/repo/snapshot.js';
import { readAll, writeBuffer, type StreamRef } from '../../src/repo/stream-ref.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { ObjectStore } from '../../src/store/types.js';
import { ageDecrypt } from '../harness/index.js';
import { makeTestRepo, type TestRepo } from '../helpers/repo.js';

/** Keys of a store under a prefix. */
async function keys(store: ObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

describe('a repository with two snapshots', () => {
  let t: TestRepo;
  let store: MemoryStore;
  let refs: { doc: StreamRef; blob: StreamRef };
  const doc = Buffer.from(
    JSON.stringify({ _id: 'left-pad-known-name', readme: 'naïve 日本語 😀 '.repeat(5000) }),
  );
  const blob = randomBytes(3_000_000);

  before(async () => {
    store = new MemoryStore('mem');
    t = await makeTestRepo({ stores: [store] });
    refs = { doc: await writeBuffer(t.writer, doc, 'json'), blob: await writeBuffer(t.writer, blob, 'bulk') };
    await t.writer.flush();
    const m1 = newManifest(t.repo, [{ kind: 'test', name: 's', refs }], { time: '2026-01-01T00:00:00.000Z' });
    const s1 = await sealSnapshot(t.repo, m1);
    await store.put(s1.key, s1.bytes);
    const m2 = newManifest(t.repo, [{ kind: 'test', name: 's', refs }], { time: '2026-01-02T00:00:00.000Z' });
    const s2 = await sealSnapshot(t.repo, m2);
    await store.put(s2.key, s2.bytes);
  });
  after(() => t.close());

  async function restoreRepo() {
    const { repo } = await Repository.open(
      [store],
      { restore: t.keys.restore },
      { cacheRoot: path.join(t.dir, `c-${randomBytes(4).toString('hex')}`) },
    );
    return { repo, reader: new BlobReader(repo, await repo.loadIndex()) };
  }

  test('reads back with the restore identity; the worker key decrypts no content', async () => {
    const { repo, reader } = await restoreRepo();
    const snap = await loadSnapshot(repo, store, resolveSnapshot(await listSnapshots(store), 'latest'));
    const r = snap.sources[0]!.refs as typeof refs;
    assert.deepEqual(await readAll(reader, r.doc), doc);
    assert.deepEqual(await readAll(reader, r.blob), blob);
    // The worker key: reads the index (metadata) but no data blob.
    await assert.rejects(readAll(t.reader, refs.doc), KeyError);
    await assert.rejects(readAll(t.reader, refs.blob), KeyError);
    // And not a single data pack decrypts with the worker's identities.
    const workerIds = new Identities([t.keys.worker.metadataIdentity]);
    for (const k of await keys(store, 'data/'))
      await assert.rejects(decrypt(workerIds, await store.getBuffer(k)), KeyError);
  });

  test('the age CLI decrypts every object with the restore identity file', async () => {
    const idFile = path.join(t.dir, 'restore.key');
    writeFileSync(idFile, encodeRestoreIdentity(t.keys.restore), { mode: 0o600 });
    const all = [
      ...(await keys(store, 'data/')),
      ...(await keys(store, 'index/')),
      ...(await keys(store, 'snapshots/')),
    ];
    assert.ok(all.length >= 4);
    for (const k of all) {
      const plain = await ageDecrypt(idFile, await store.getBuffer(k));
      if (k.startsWith('data/'))
        assert.equal(plain.subarray(plain.length - 8).toString('latin1'), 'RBPACK01');
      if (k.startsWith('data/')) assert.ok(parsePackTrailer(plain).length > 0);
    }
  });

  test('no object name, metadata or unencrypted byte contains a document ID or content', async () => {
    const needles = [
      'left-pad-known-name',
      'naïve',
      Buffer.from(blob.subarray(1000, 1032)).toString('latin1'),
    ];
    for (const k of await keys(store, '')) {
      const bytes = (await store.getBuffer(k)).toString('latin1');
      for (const n of needles) {
        assert.ok(!k.includes(n), `name ${k}`);
        assert.ok(!bytes.includes(Buffer.from(n).toString('latin1')), `bytes of ${k}`);
      }
    }
  });

  test('a corrupted, truncated, deleted or substituted pack is detected and named', async () => {
    const [k] = await keys(store, 'data/');
    const original = await store.getBuffer(k!);
    const expectRead = async (cls: typeof RegbackupError, re: RegExp) => {
      const { reader } = await restoreRepo();
      await assert.rejects(
        (async () => {
          await readAll(reader, refs.doc);
          await readAll(reader, refs.blob);
        })(),
        (err: Error) => err instanceof cls && re.test(err.message),
      );
    };
    try {
      const flipped = Buffer.from(original);
      flipped[flipped.length - 200]! ^= 0x40;
      await store.put(k!, flipped);
      await expectRead(RegbackupError, /pack/);
      await store.put(k!, original.subarray(0, original.length - 100));
      await expectRead(RegbackupError, /pack/);
      // Substituted: a valid age file made by someone holding only the public recipient.
      const forged = await encrypt(t.repo.config.recipients, randomBytes(original.length - 400));
      await store.put(k!, forged);
      await expectRead(IntegrityError, /pack|ID/);
      await store.delete(k!);
      await expectRead(RegbackupError, /pack/);
    } finally {
      await store.put(k!, original);
    }
    const { reader } = await restoreRepo();
    assert.deepEqual(await readAll(reader, refs.blob), blob);
  });

  test('swapped, forged, renamed (replayed) snapshots are detected', async () => {
    const { repo } = await restoreRepo();
    const list = await listSnapshots(store);
    const [a, b] = list;
    const ba = await store.getBuffer(a!.key);
    const bb = await store.getBuffer(b!.key);
    try {
      // Swap the contents of the two snapshots.
      await store.put(a!.key, bb);
      await assert.rejects(loadSnapshot(repo, store, a!), /does not match its name/);
      // Replay: the old snapshot under a newer time, with a correct hash for its bytes.
      const { sha256Hex } = await import('../../src/repo/signed.js');
      const replayKey = `snapshots/20270101T000000Z-${sha256Hex(ba)}`;
      await store.put(replayKey, ba);
      const replayed = resolveSnapshot(await listSnapshots(store), 'latest');
      assert.equal(replayed.key, replayKey);
      await assert.rejects(loadSnapshot(repo, store, replayed), /renamed/);
      await store.delete(replayKey);
      // Forged: signed by another key, encrypted to the right recipients.
      const other = await generateKeys();
      const fake = encodeSigned(
        'snapshot',
        Buffer.from(JSON.stringify(newManifest(repo, []))),
        other.worker.signingKey,
      );
      const fakeBytes = await encrypt([...repo.config.recipients, repo.config.metadataRecipient], fake);
      const fakeKey = `snapshots/20270101T000000Z-${sha256Hex(fakeBytes)}`;
      await store.put(fakeKey, fakeBytes);
      await assert.rejects(
        loadSnapshot(repo, store, resolveSnapshot(await listSnapshots(store), 'latest')),
        /signature/,
      );
      await store.delete(fakeKey);
      // An index object presented as a snapshot: the signed type differs.
      const idx = (await keys(store, 'index/'))[0]!;
      const idxBytes = await store.getBuffer(idx);
      const asSnap = `snapshots/20270101T000000Z-${idx.split('/')[1]}`;
      await store.put(asSnap, idxBytes);
      await assert.rejects(
        loadSnapshot(repo, store, resolveSnapshot(await listSnapshots(store), 'latest')),
        /index object, not a snapshot/,
      );
      await store.delete(asSnap);
    } finally {
      await store.put(a!.key, ba);
      await store.put(b!.key, bb);
    }
    assert.ok(await loadSnapshot(repo, store, a!));
  });

  test('a deleted index object makes the blob unfindable with a clear error', async () => {
    const [idx] = await keys(store, 'index/');
    const bytes = await store.getBuffer(idx!);
    await store.delete(idx!);
    try {
      const { reader } = await restoreRepo();
      await assert.rejects(readAll(reader, refs.doc), /not in the index/);
    } finally {
      await store.put(idx!, bytes);
    }
  });
});

describe('hostile bytes in every object type give a clean error', () => {
  const rnd = (n: number) => randomBytes(n);
  /** Mutations of a valid object: random bytes, truncations, flipped bytes, absurd length fields. */
  function* mutations(valid: Buffer, count: number): Generator<Buffer> {
    for (let i = 0; i < count; i++) {
      const r = i % 5;
      if (r === 0) yield rnd(Math.floor(Math.random() * 512));
      else if (r === 1) yield valid.subarray(0, Math.floor(Math.random() * valid.length));
      else if (r === 2) {
        const b = Buffer.from(valid);
        for (let k = 0; k < 1 + (i % 4); k++)
          b[Math.floor(Math.random() * b.length)] = Math.floor(Math.random() * 256);
        yield b;
      } else if (r === 3) {
        const b = Buffer.from(valid);
        const at = Math.floor(Math.random() * Math.max(1, b.length - 4));
        b.writeUInt32LE(0xffffffff - (i % 7), at);
        yield b;
      } else yield Buffer.concat([valid, rnd(i % 64)]);
    }
  }
  const cleanly = async (what: string, fn: () => Promise<unknown> | unknown) => {
    try {
      await fn();
    } catch (err) {
      assert.ok(err instanceof RegbackupError, `${what}: ${(err as Error).name}: ${(err as Error).message}`);
    }
  };

  test('signed objects, index bodies, pack trailers and age headers (4000 cases)', async () => {
    const keys = await generateKeys();
    const body = Buffer.from(JSON.stringify({ hello: 'world', n: [1, 2, 3] }));
    const signed = encodeSigned('snapshot', body, keys.worker.signingKey);
    const heap = process.memoryUsage().heapUsed;
    for (const m of mutations(signed, 1000)) {
      await cleanly('signed', () => decodeSigned('snapshot', m, keys.worker.verifyKey, 'fuzz'));
    }
    const { encodeIndexBody } = await import('../../src/repo/index-object.js');
    const idxBody = encodeIndexBody([
      {
        info: {
          id: randomBytes(16).toString('hex'),
          type: 0,
          size: 100000,
          sha256: randomBytes(32).toString('hex'),
        },
        entries: [{ id: randomBytes(32), type: 0, compression: 1, offset: 0, length: 100, rawLength: 300 }],
      },
    ]);
    for (const m of mutations(idxBody, 1000)) await cleanly('index', () => decodeIndexBody(m, 'fuzz'));
    const trailer = Buffer.concat([
      rnd(100),
      Buffer.alloc(48),
      Buffer.from([1, 0, 0, 0]),
      Buffer.from('RBPACK01'),
    ]);
    for (const m of mutations(trailer, 1000)) await cleanly('pack', () => parsePackTrailer(m, 'fuzz'));
    const ids = new Identities([keys.restore.identity]);
    const file = await encrypt([keys.restore.recipient], rnd(70000));
    for (const m of mutations(file, 1000)) await cleanly('age', () => decrypt(ids, m));
    for (const m of mutations(file.subarray(0, 300), 200)) await cleanly('age header', () => openAge(ids, m));
    // No mutation made us allocate anything large.
    assert.ok(process.memoryUsage().heapUsed - heap < 200 * 1024 * 1024);
  });
});
