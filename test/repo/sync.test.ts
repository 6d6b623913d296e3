import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { encrypt } from '../../src/repo/age.js';
import { encodeIndexBody } from '../../src/repo/index-object.js';
import { generateKeys } from '../../src/repo/keys.js';
import { encodeSigned, type MagicName } from '../../src/repo/signed.js';
import { newManifest, sealSnapshot } from '../../src/repo/snapshot.js';
import { writeBuffer } from '../../src/repo/stream-ref.js';
import { catchUp } from '../../src/repo/sync.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { ObjectStore } from '../../src/store/types.js';
import { makeTestRepo, type TestRepo } from '../helpers/repo.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const nameTime = (d: Date) =>
  d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');

async function keys(store: ObjectStore): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for await (const o of store.list('')) out.set(o.key, await store.getBuffer(o.key));
  return out;
}

/**
 * A repository written to target `a` alone (one run: packs, index object, snapshot, a mark); `b` and `c`
 * hold only its config, as targets that missed the run.
 */
async function repoOnA(): Promise<{ t: TestRepo; a: MemoryStore; b: MemoryStore; c: MemoryStore }> {
  const a = new MemoryStore('a');
  const t = await makeTestRepo({ stores: [a] });
  await writeBuffer(t.writer, randomBytes(200_000), 'bulk');
  await writeBuffer(t.writer, Buffer.from('{"listing":1}\n'.repeat(1000)), 'tree');
  await t.writer.flush();
  const snap = await sealSnapshot(t.repo, newManifest(t.repo, [{ kind: 'test', name: 's' }]));
  await a.put(snap.key, snap.bytes);
  const mark = await t.repo.sealMeta('mark', Buffer.from('{"version":1}'), '20260101T000000Z-');
  await a.put(mark.key, mark.bytes);
  const b = new MemoryStore('b');
  const c = new MemoryStore('c');
  for (const s of [b, c]) await s.put('config', await a.getBuffer('config'));
  return { t, a, b, c };
}

/** A signed object of `kind`, validly encrypted to the repository's recipients, signed by another key. */
async function forged(t: TestRepo, kind: MagicName, body: Buffer): Promise<Buffer> {
  const other = await generateKeys();
  const cfg = t.repo.config;
  return encrypt(
    [...cfg.recipients, cfg.metadataRecipient],
    encodeSigned(kind, body, other.worker.signingKey),
  );
}

describe('catching targets up', () => {
  let fixture: Awaited<ReturnType<typeof repoOnA>>;
  before(async () => {
    fixture = await repoOnA();
  });
  after(() => fixture.t.close());

  test('copies what a target lacks once it verifies; on a target that locks objects, the copies of backup objects are locked too', async () => {
    const { t, a, b } = fixture;
    const started = Date.now();
    const r = await catchUp(t.repo, { targets: [a, b], retentionDays: new Map([['b', 2]]) });
    assert.equal(r.failed.size, 0);
    assert.deepEqual(r.skipped, []);
    const onA = await keys(a);
    assert.equal(r.copied.get('b')!.objects, onA.size - 1); // all but the config
    for (const [key, body] of onA) {
      assert.deepEqual(await b.getBuffer(key), body, key);
      const until = (await b.stat(key))!.retainUntil;
      if (key.startsWith('marks/') || key === 'config') {
        assert.equal(until, undefined, `${key} is not locked (marks are deleted once acted on)`);
      } else {
        assert.ok(until, `${key} is locked on b`);
        assert.ok(until.getTime() >= started + 2 * 86_400_000 - 1000, `${key} is locked for two days`);
      }
    }
    // Nothing went the other way, and a is not locked (no retention there).
    for (const key of onA.keys()) assert.equal((await a.stat(key))!.retainUntil, undefined);
    // In line now: a second catch-up copies nothing.
    const again = await catchUp(t.repo, { targets: [a, b] });
    assert.equal(again.copied.get('b')!.objects + again.copied.get('a')!.objects, 0);
  });

  test('a forged or corrupt object is never copied to another target: it is named with its target and why, and a good copy elsewhere is used', async () => {
    const { t, a, c } = fixture;
    const genuine = await keys(a);
    const time = new Date(Date.now() + 60_000);
    const manifest = Buffer.from(
      JSON.stringify(newManifest(t.repo, [{ kind: 'test', name: 's' }], { time: time.toISOString() })),
    );
    const bad = new Map<string, RegExp>();
    const plant = async (key: string, bytes: Buffer, why: RegExp) => {
      await a.put(key, bytes);
      bad.set(key, why);
    };
    // Snapshots: random bytes, and a validly encrypted one signed by another key, each named by its SHA-256.
    const garbage = randomBytes(3000);
    await plant(`snapshots/${nameTime(time)}-${sha(garbage)}`, garbage, /not an age v1 file/);
    const fakeSnap = await forged(t, 'snapshot', manifest);
    await plant(`snapshots/${nameTime(time)}-${sha(fakeSnap)}`, fakeSnap, /signature does not verify/);
    // Index objects: garbage, and a forged one naming a forged pack (which is planted as well).
    const garbageIndex = randomBytes(500);
    await plant(`index/${sha(garbageIndex)}`, garbageIndex, /not an age v1 file/);
    const fakePack = randomBytes(4000);
    const fakePackId = randomBytes(16).toString('hex');
    const fakeIndex = await forged(
      t,
      'index',
      encodeIndexBody([
        { info: { id: fakePackId, type: 0, size: fakePack.length, sha256: sha(fakePack) }, entries: [] },
      ]),
    );
    await plant(`index/${sha(fakeIndex)}`, fakeIndex, /signature does not verify/);
    await a.put(`data/${fakePackId.slice(0, 2)}/${fakePackId}`, fakePack);
    // A drill report and a mark of the wrong kind: a genuine signature, but not a drill report.
    const mark = await t.repo.sealMeta('mark', Buffer.from('{}'), `${nameTime(time)}-`);
    const asDrill = `drills/${nameTime(time)}-${mark.hash}`;
    await plant(asDrill, mark.bytes, /holds a mark object, not a drill/);
    // A genuine object corrupt on a but intact on c: c's copy is taken.
    const genuineSnap = [...genuine.keys()].find((k) => k.startsWith('snapshots/'))!;
    const flipped = Buffer.from(genuine.get(genuineSnap)!);
    flipped[100]! ^= 1;
    await a.delete(genuineSnap);
    await a.put(genuineSnap, flipped);
    bad.set(genuineSnap, /does not match its name/);
    // c: holds the genuine objects (as b got them above), while d missed everything.
    for (const [k, v] of genuine) if (k !== 'config') await c.put(k, v);
    const d = new MemoryStore('d');
    await d.put('config', genuine.get('config')!);

    const r = await catchUp(t.repo, { targets: [a, c, d] });
    assert.equal(r.failed.size, 0);
    // d holds exactly the genuine objects, byte for byte.
    assert.deepEqual(await keys(d), genuine);
    // c, too: nothing of a's crossed.
    assert.deepEqual(await keys(c), genuine);
    // Each bad object is named, with its target and why.
    for (const [key, why] of bad) {
      const hits = r.skipped.filter((s) => s.key === key);
      assert.equal(hits.length, 1, `${key} is reported once: ${JSON.stringify(r.skipped)}`);
      assert.equal(hits[0]!.from, 'a');
      assert.match(hits[0]!.reason, why, key);
    }
    assert.equal(r.skipped.length, bad.size, JSON.stringify(r.skipped));
    // Names stay as planted on a (catch-up adds, never deletes): `repair` is what replaces.
    assert.deepEqual(await a.getBuffer(genuineSnap), flipped);
    assert.equal(r.copied.get('a')!.objects, 0);
  });

  test('when the targets differ only by objects that do not verify, nothing is copied and no pack is even listed', async () => {
    const { t, a, c } = fixture; // as the previous test left them: forged objects on a only
    const listed: string[] = [];
    const list = c.list.bind(c);
    c.list = (prefix: string) => {
      listed.push(prefix);
      return list(prefix);
    };
    const r = await catchUp(t.repo, { targets: [a, c] });
    assert.equal(r.copied.get('c')!.objects + r.copied.get('a')!.objects, 0);
    assert.ok(r.skipped.length >= 5, JSON.stringify(r.skipped));
    assert.ok(r.skipped.every((s) => s.from === 'a'));
    assert.deepEqual(
      listed.filter((p) => p.startsWith('data/') || p.startsWith('tree/')),
      [],
    );
  });
});
