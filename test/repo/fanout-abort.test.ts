import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InterruptedError } from '../../src/errors.js';
import { Fanout } from '../../src/repo/fanout.js';
import { MemoryStore } from '../../src/store/memory.js';
import { StoreAbortedError, type PutBody, type PutOptions } from '../../src/store/types.js';

/** A target whose uploads take until they are aborted (a slow link when the worker gets SIGTERM). */
class StuckStore extends MemoryStore {
  started?: () => void;
  override async put(key: string, _body: PutBody, opts?: PutOptions): Promise<void> {
    this.started?.();
    await new Promise<void>((_, reject) => {
      if (!opts?.signal) return; // never ends: the bug this test is about
      opts.signal.addEventListener('abort', () =>
        reject(new StoreAbortedError(this.name, 'put', key, opts.signal!.reason)),
      );
    });
  }
}

test("the run's signal reaches every upload: aborted, an interruption (no target left behind), no object", async () => {
  const a = new StuckStore('a');
  const b = new StuckStore('b');
  const stop = new AbortController();
  const fanout = new Fanout([a, b], new Map(), stop.signal);
  const started = new Promise<void>((r) => (a.started = r));
  const put = fanout.put('data/ab/abcd', Buffer.from('pack'));
  await started;
  stop.abort(new Error('SIGTERM'));
  await assert.rejects(put, (err: Error) => err instanceof InterruptedError);
  assert.deepEqual([...fanout.failed.keys()], []);
  for (const s of [a, b]) assert.equal(await s.stat('data/ab/abcd'), undefined);
});

/** A target that takes a while to notice the abort (an upload finishing its last part). */
class LateStore extends MemoryStore {
  settled = false;
  override async put(key: string, _body: PutBody, opts?: PutOptions): Promise<void> {
    await new Promise<void>((_, reject) =>
      opts!.signal!.addEventListener('abort', () =>
        setTimeout(() => {
          this.settled = true;
          reject(new StoreAbortedError(this.name, 'put', key, opts!.signal!.reason));
        }, 50),
      ),
    );
  }
}

test('an interrupted put returns only once every target has let go of the body (the caller removes it next)', async () => {
  const a = new StuckStore('a');
  const b = new LateStore('b');
  const stop = new AbortController();
  const fanout = new Fanout([a, b], new Map(), stop.signal);
  const started = new Promise<void>((r) => (a.started = r));
  const put = fanout.put('data/ab/abcd', Buffer.from('pack'));
  await started;
  stop.abort(new Error('SIGTERM'));
  await assert.rejects(put, (err: Error) => err instanceof InterruptedError);
  assert.equal(b.settled, true, 'the slower target was still uploading');
});
