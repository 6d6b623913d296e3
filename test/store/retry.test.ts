import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { TargetError } from '../../src/errors.js';
import { StoreDecorator } from '../../src/store/decorator.js';
import { isTransient, toTargetError } from '../../src/store/errors.js';
import { MemoryStore } from '../../src/store/memory.js';
import { RetryingStore, type RetryInfo } from '../../src/store/retry.js';
import { ObjectNotFoundError, StoreAbortedError, type ObjectInfo } from '../../src/store/types.js';
import { listKeys } from './conformance.js';

/** Fails the next `failures` calls (any operation) with `makeError()`, then behaves. Counts calls. */
class FlakyStore extends StoreDecorator {
  calls = 0;
  constructor(
    inner: MemoryStore,
    public failures: number,
    private readonly makeError: () => unknown,
  ) {
    super(inner);
  }
  private maybeFail(): void {
    this.calls++;
    if (this.failures > 0) {
      this.failures--;
      throw this.makeError();
    }
  }
  override async put(key: string, body: Buffer | Readable): Promise<void> {
    this.maybeFail();
    return this.inner.put(key, body);
  }
  override async getBuffer(key: string): Promise<Buffer> {
    this.maybeFail();
    return this.inner.getBuffer(key);
  }
  override async stat(key: string): Promise<ObjectInfo | undefined> {
    this.maybeFail();
    return this.inner.stat(key);
  }
  override async delete(key: string): Promise<void> {
    this.maybeFail();
    return this.inner.delete(key);
  }
}

const econnreset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
const s3Error = (name: string, status: number) =>
  Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: status } });

function retrying(flaky: FlakyStore, attempts = 4) {
  const delays: number[] = [];
  const retries: RetryInfo[] = [];
  const store = new RetryingStore(flaky, {
    attempts,
    baseDelayMs: 100,
    maxDelayMs: 1000,
    random: () => 0.999,
    sleep: async (ms) => {
      delays.push(ms);
    },
    onRetry: (info) => retries.push(info),
  });
  return { store, delays, retries };
}

describe('retry decorator', () => {
  it('retries transient failures with exponential backoff, then succeeds', async () => {
    const flaky = new FlakyStore(new MemoryStore('aws'), 3, econnreset);
    const { store, delays, retries } = retrying(flaky);
    await store.put('data/a', Buffer.from('hello'));
    assert.equal(flaky.calls, 4);
    // Full jitter: random · min(max, base · 2^n); random is ~1 here.
    assert.deepEqual(delays, [99, 199, 399]);
    assert.deepEqual(
      retries.map((r) => [r.operation, r.key, r.attempt]),
      [
        ['put', 'data/a', 1],
        ['put', 'data/a', 2],
        ['put', 'data/a', 3],
      ],
    );
    assert.equal((await store.getBuffer('data/a')).toString(), 'hello');
  });

  it('retries HTTP 5xx, 429, 408 and provider throttling; caps the delay', async () => {
    for (const err of [
      s3Error('InternalError', 500),
      s3Error('ServiceUnavailable', 503),
      s3Error('SlowDown', 503),
      Object.assign(new Error('too many'), { code: 429 }), // GCS ApiError: code is the status
      Object.assign(new Error('timeout'), { status: 408 }),
      Object.assign(new Error('throttled'), { name: 'Whatever', $retryable: { throttling: true } }),
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }),
      Object.assign(new Error('ETIMEDOUT'), { code: 'ETIMEDOUT' }),
      new Error('socket hang up'),
    ]) {
      const flaky = new FlakyStore(new MemoryStore('t'), 1, () => err);
      const { store } = retrying(flaky);
      await store.put('k', Buffer.from('x'));
      assert.equal(flaky.calls, 2, `retried ${String(err)}`);
    }
    const flaky = new FlakyStore(new MemoryStore('t'), 6, econnreset);
    const { store, delays } = retrying(flaky, 8);
    await store.stat('k');
    assert.deepEqual(delays, [99, 199, 399, 799, 999, 999]);
  });

  it('does not retry a 403, a 404, a 400 or an authentication failure', async () => {
    for (const err of [
      s3Error('AccessDenied', 403),
      s3Error('InvalidAccessKeyId', 403),
      s3Error('SignatureDoesNotMatch', 403),
      s3Error('NoSuchBucket', 404),
      s3Error('InvalidArgument', 400),
      s3Error('RequestTimeTooSkewed', 403),
      Object.assign(new Error('Unauthorized'), { code: 401 }),
      new ObjectNotFoundError('t', 'k'),
      new Error('invalid object key ""'),
    ]) {
      const flaky = new FlakyStore(new MemoryStore('t'), 1, () => err);
      const { store, delays } = retrying(flaky);
      await assert.rejects(store.getBuffer('k'), (e: unknown) => e === err);
      assert.equal(flaky.calls, 1, `did not retry ${String(err)}`);
      assert.deepEqual(delays, []);
    }
  });

  it('gives up after the configured attempts with a clear TargetError', async () => {
    const flaky = new FlakyStore(new MemoryStore('offsite'), 100, () =>
      toTargetError(econnreset(), {
        target: 'offsite',
        operation: 'put',
        key: 'data/ab/cd',
        endpoint: 'http://127.0.0.1:1234',
      }),
    );
    const { store } = retrying(flaky, 3);
    await assert.rejects(store.put('data/ab/cd', Buffer.from('x')), (err: unknown) => {
      assert.ok(err instanceof TargetError);
      assert.equal(err.exitCode, 4);
      assert.match(
        err.message,
        /^target offsite: cannot connect to http:\/\/127\.0\.0\.1:1234 \(ECONNRESET\) on put data\/ab\/cd/,
      );
      assert.match(err.message, /\(gave up after 3 attempts\)$/);
      assert.equal(err.details.attempts, 3);
      assert.equal(err.details.transient, true);
      return true;
    });
    assert.equal(flaky.calls, 3);
  });

  it('does not retry a streamed put (a stream cannot be rewound)', async () => {
    const flaky = new FlakyStore(new MemoryStore('t'), 1, econnreset);
    const { store } = retrying(flaky);
    await assert.rejects(store.put('k', Readable.from([Buffer.from('x')])), /ECONNRESET/);
    assert.equal(flaky.calls, 1);
  });

  it('an abort during a backoff ends the wait: StoreAbortedError, no further attempt', async () => {
    const inner = new MemoryStore('t');
    await inner.put('k', Buffer.from('v'));
    let calls = 0;
    const ac = new AbortController();
    const failing = new (class extends StoreDecorator {
      override async getBuffer(): Promise<Buffer> {
        calls++;
        // Aborted while the decorator waits its (one hour) backoff before the second attempt.
        setImmediate(() => ac.abort());
        throw econnreset();
      }
    })(inner);
    const store = new RetryingStore(failing, { attempts: 3, baseDelayMs: 3_600_000, random: () => 1 });
    await assert.rejects(store.getBuffer('k', undefined, { signal: ac.signal }), (err: unknown) => {
      assert.ok(err instanceof StoreAbortedError, `expected StoreAbortedError, got ${String(err)}`);
      assert.equal(err.message, 'target t: get k aborted');
      return true;
    });
    assert.equal(calls, 1);
    // An aborted operation is not a transient failure: never retried.
    assert.equal(isTransient(new StoreAbortedError('t', 'get', 'k')), false);
  });

  it('passes everything through on a first listing, even out of byte order', async () => {
    const unordered = new (class extends StoreDecorator {
      override async *list(): AsyncIterable<ObjectInfo> {
        for (const key of ['snap/a/b', 'snap/a-b']) yield { key, size: 1 };
      }
    })(new MemoryStore('t'));
    assert.deepEqual(await listKeys(new RetryingStore(unordered), 'snap/'), ['snap/a/b', 'snap/a-b']);
  });

  it('resumes a failed listing after the last key it returned', async () => {
    const inner = new MemoryStore('t');
    for (let i = 0; i < 10; i++) await inner.put(`k/${i}`, Buffer.from(String(i)));
    let failuresLeft = 2;
    let listCalls = 0;
    const flakyList = new (class extends StoreDecorator {
      override async *list(prefix: string): AsyncIterable<ObjectInfo> {
        listCalls++;
        let n = 0;
        for await (const info of this.inner.list(prefix)) {
          if (failuresLeft > 0 && n === 3 + listCalls) {
            failuresLeft--;
            throw econnreset();
          }
          n++;
          yield info;
        }
      }
    })(inner);
    const store = new RetryingStore(flakyList, { attempts: 5, sleep: async () => undefined });
    assert.deepEqual(
      await listKeys(store, 'k/'),
      Array.from({ length: 10 }, (_, i) => `k/${i}`),
    );
    assert.equal(listCalls, 3);
  });
});
