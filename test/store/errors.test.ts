import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TargetError } from '../../src/errors.js';
import { classify } from '../../src/store/errors.js';
import { GcsStore } from '../../src/store/gcs.js';
import { openStore, openProvider, StoreMetrics } from '../../src/store/index.js';
import { S3Store } from '../../src/store/s3.js';
import type { ObjectStore } from '../../src/store/types.js';
import { freePort, startS3, tmpDir } from '../harness/index.js';
import { ConfigError } from '../../src/errors.js';

const destroyers: Array<() => void> = [];
after(() => destroyers.forEach((d) => d()));

function s3(opts: ConstructorParameters<typeof S3Store>[0]): S3Store {
  const store = new S3Store({ maxAttempts: 1, connectionTimeout: 2000, ...opts });
  destroyers.push(() => void store.close());
  return store;
}

async function expectTargetError(p: Promise<unknown>, check: (err: TargetError) => void): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof TargetError, `expected a TargetError, got ${String(err)}`);
    check(err);
    return true;
  });
}

describe('error mapping', () => {
  it('a port nobody listens on: TargetError naming the target, the endpoint and the operation', async () => {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const store = s3({
      name: 'offsite',
      bucket: 'b',
      endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 'super-secret-value' },
    });
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['put data/ab/cd', () => store.put('data/ab/cd', Buffer.from('x'))],
      ['get data/ab/cd', () => store.getBuffer('data/ab/cd')],
      ['stat data/ab/cd', () => store.stat('data/ab/cd')],
      ['list data/', async () => store.list('data/')[Symbol.asyncIterator]().next()],
      ['delete data/ab/cd', () => store.delete('data/ab/cd')],
    ];
    for (const [what, op] of ops) {
      await expectTargetError(op(), (err) => {
        assert.equal(
          err.message,
          `target offsite: cannot connect to ${endpoint} (ECONNREFUSED) on ${what}: check that the endpoint is right and reachable`,
        );
        assert.equal(err.details.transient, true);
        assert.equal(err.details.target, 'offsite');
        assert.doesNotMatch(JSON.stringify(err.toJSON()), /super-secret-value/);
      });
    }
  });

  it('a stopped s3rver: TargetError, and the retry decorator gives up after its attempts', async () => {
    const server = await startS3();
    const bucket = await server.createBucket();
    const metrics = new StoreMetrics();
    const store = openStore(
      {
        name: 'aws',
        type: 's3',
        bucket,
        prefix: '',
        region: 'us-east-1',
        endpoint: server.endpoint,
        forcePathStyle: true,
        credentials: server.credentials,
        storageClass: 'STANDARD',
      },
      { metrics, retry: { attempts: 3, baseDelayMs: 1 } },
    );
    await store.put('data/x', Buffer.from('x'));
    await server.stop();
    await expectTargetError(store.getBuffer('data/x'), (err) => {
      assert.match(
        err.message,
        /^target aws: cannot connect to http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\) on get data\/x/,
      );
      assert.match(err.message, /gave up after 3 attempts/);
    });
    // The SDK makes its own attempts (3) under each of ours (3).
    assert.equal(metrics.snapshot().requests.get, 3);
    assert.equal(metrics.snapshot().errors.get, 3);
  });

  describe('against a live s3rver', () => {
    let server: Awaited<ReturnType<typeof startS3>>;
    let store: ObjectStore;
    let bucket: string;
    // Setup, not a test: a server that does not start fails every test below through this hook.
    before(async () => {
      server = await startS3();
      bucket = await server.createBucket();
      store = s3({
        name: 'aws',
        bucket,
        endpoint: server.endpoint,
        forcePathStyle: true,
        credentials: server.credentials,
      });
    });
    after(() => server?.stop());

    // s3rver checks the access key id but not SigV4 signatures (a wrong secret passes): test with a wrong id.
    it('wrong credentials: 403, not retried, message says to check the credentials, secret not shown', async () => {
      const metrics = new StoreMetrics();
      const bad = openStore(
        {
          name: 'aws',
          type: 's3',
          bucket,
          prefix: '',
          region: 'us-east-1',
          endpoint: server.endpoint,
          forcePathStyle: true,
          credentials: { accessKeyId: 'AKIAWRONG', secretAccessKey: 'not-the-secret-123' },
          storageClass: 'STANDARD',
        },
        { metrics, retry: { attempts: 5, baseDelayMs: 1 } },
      );
      await expectTargetError(bad.put('data/ab/cd', Buffer.from('x')), (err) => {
        assert.equal(
          err.message,
          'target aws: credentials rejected (403 InvalidAccessKeyId) on put data/ab/cd: check the access key and secret (or token) for this target',
        );
        assert.equal(err.details.transient, false);
        assert.doesNotMatch(JSON.stringify({ m: err.message, d: err.details }), /not-the-secret-123/);
      });
      assert.equal(metrics.snapshot().requests.put, 1);
    });

    it('a bucket that does not exist', async () => {
      const none = s3({
        name: 'aws',
        bucket: 'no-such-bucket',
        endpoint: server.endpoint,
        forcePathStyle: true,
        credentials: server.credentials,
      });
      await expectTargetError(none.put('k', Buffer.from('x')), (err) => {
        assert.match(
          err.message,
          /^target aws: the bucket does not exist \(404 NoSuchBucket\) on put k: create it/,
        );
      });
    });

    it('the same server with the right credentials still writes and reads', async () => {
      await store.put('ok', Buffer.from('fine'));
      assert.equal((await store.getBuffer('ok')).toString(), 'fine');
    });
  });

  it('GCS on a port nobody listens on: TargetError naming the target', async () => {
    const port = await freePort();
    const store = new GcsStore({
      name: 'gcs-dr',
      bucket: 'b',
      apiEndpoint: `http://127.0.0.1:${port}`,
      projectId: 'test',
      maxRetries: 0,
    });
    await expectTargetError(store.put('data/x', Buffer.from('x')), (err) => {
      assert.match(
        err.message,
        new RegExp(
          `^target gcs-dr: cannot connect to http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\) on put data/x`,
        ),
      );
    });
    await expectTargetError(store.getBuffer('data/x'), (err) => {
      assert.match(err.message, /^target gcs-dr: cannot connect to .* on get data\/x/);
    });
    await expectTargetError(store.stat('data/x'), (err) => assert.match(err.message, /on stat data\/x/));
  });

  it('fs: a symbolic link out of the root is refused, not followed', async (t) => {
    const { symlink, mkdir, writeFile } = await import('node:fs/promises');
    const root = await tmpDir(t);
    const outside = await tmpDir(t);
    await writeFile(`${outside}/secret`, 'outside');
    await mkdir(`${root}/store`);
    await symlink(outside, `${root}/store/link`);
    const store = openProvider({
      name: 'local',
      type: 'fs',
      path: `${root}/store`,
      storageClass: 'STANDARD',
    });
    await expectTargetError(store.getBuffer('link/secret'), (err) => {
      assert.match(err.message, /^target local: permission denied \(EPERM\) on get link\/secret/);
    });
    await expectTargetError(store.put('link/new', Buffer.from('x')), (err) =>
      assert.match(err.message, /leads outside/),
    );
    const keys: string[] = [];
    for await (const o of store.list('')) keys.push(o.key);
    assert.deepEqual(keys, []);
  });

  it('fs: a key that would need an object to be a directory', async (t) => {
    const root = await tmpDir(t);
    const store = openProvider({ name: 'local', type: 'fs', path: root, storageClass: 'STANDARD' });
    await store.put('a', Buffer.from('x'));
    await expectTargetError(store.put('a/b', Buffer.from('y')), (err) =>
      assert.match(
        err.message,
        /^target local: cannot put a\/b: a directory and an object would have the same name/,
      ),
    );
  });

  it('classifies provider errors', () => {
    const kinds = [
      [Object.assign(new Error('x'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }), 'not-found'],
      [Object.assign(new Error('The specified bucket does not exist.'), { code: 404 }), 'no-bucket'],
      [
        Object.assign(new Error('x'), { name: 'AccessDenied', $metadata: { httpStatusCode: 403 } }),
        'forbidden',
      ],
      [
        Object.assign(new Error('x'), { name: 'RequestTimeTooSkewed', $metadata: { httpStatusCode: 403 } }),
        'clock-skew',
      ],
      [Object.assign(new Error('x'), { code: 'ENOTFOUND' }), 'dns'],
      [Object.assign(new Error('x'), { code: 'ENOSPC' }), 'local'],
      [new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]), 'network'],
      [new Error('x', { cause: Object.assign(new Error('y'), { code: 'ECONNRESET' }) }), 'network'],
      [Object.assign(new Error('x'), { name: 'TimeoutError' }), 'timeout'],
    ] as const;
    for (const [err, kind] of kinds) assert.equal(classify(err).kind, kind, String(err));
  });

  it('openStore refuses a storage class of another provider', () => {
    assert.throws(
      () =>
        openStore({
          name: 'aws',
          type: 's3',
          bucket: 'b',
          prefix: '',
          region: 'us-east-1',
          forcePathStyle: false,
          storageClass: 'NEARLINE',
        }),
      (err: unknown) => err instanceof ConfigError && /NEARLINE is not an S3 class/.test(err.message),
    );
  });
});
