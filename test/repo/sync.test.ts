import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { catchUp } from '../../src/repo/sync.js';
import { MemoryStore } from '../../src/store/memory.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('catching a target up copies what it lacks; on a target that locks objects, the copies of backup objects are locked too', async () => {
  const a = new MemoryStore('a');
  const b = new MemoryStore('b');
  const objects = new Map<string, Buffer>();
  const put = async (key: string, body: Buffer) => {
    objects.set(key, body);
    await a.put(key, body);
  };
  const pack = randomBytes(1000);
  const packId = 'ab'.repeat(16);
  await put(`data/${packId.slice(0, 2)}/${packId}`, pack);
  for (const kind of ['index', 'snapshots', 'marks']) {
    const body = randomBytes(100);
    await put(`${kind}/${sha(body)}`, body);
  }
  // Already on both: not copied again.
  const shared = randomBytes(50);
  await put(`snapshots/${sha(shared)}`, shared);
  await b.put(`snapshots/${sha(shared)}`, shared);

  const started = Date.now();
  const r = await catchUp([a, b], {
    packHash: (id) => (id === packId ? sha(pack) : undefined),
    retentionDays: new Map([['b', 2]]),
  });
  assert.equal(r.failed.size, 0);
  assert.equal(r.copied.get('b')!.objects, 4);
  for (const [key, body] of objects) {
    assert.deepEqual(await b.getBuffer(key), body, key);
    const until = (await b.stat(key))!.retainUntil;
    if (key.startsWith('marks/') || key === `snapshots/${sha(shared)}`) {
      assert.equal(until, undefined, `${key} is not locked (marks are deleted once acted on)`);
    } else {
      assert.ok(until, `${key} is locked on b`);
      assert.ok(until.getTime() >= started + 2 * 86_400_000 - 1000, `${key} is locked for two days`);
    }
  }
  // Nothing went the other way, and a is not locked (no retention there).
  for (const key of objects.keys()) assert.equal((await a.stat(key))!.retainUntil, undefined);
});
