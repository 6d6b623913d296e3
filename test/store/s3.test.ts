import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { openStore } from '../../src/store/index.js';
import { S3Store } from '../../src/store/s3.js';
import { StoreAbortedError } from '../../src/store/types.js';
import { useServers } from '../harness/index.js';
import { storeConformance } from './conformance.js';

const servers = useServers({ s3: true });

const MiB = 1024 * 1024;
let n = 0;
storeConformance('s3 (s3rver)', {
  async open({ pageSize }) {
    const bucket = await servers.s3.createBucket();
    const store = new S3Store({
      name: 'aws',
      bucket,
      // Half the stores under a prefix, so that prefix handling is covered too.
      prefix: ++n % 2 ? `backups/registry-${n}` : '',
      region: servers.s3.region,
      endpoint: servers.s3.endpoint,
      forcePathStyle: true,
      credentials: servers.s3.credentials,
      pageSize,
      partSize: 5 * 1024 * 1024,
      queueSize: 1,
    });
    return store;
  },
  // The SDK path holds a few parts at a time (lib-storage copies and concatenates each 5 MiB part, and
  // sent request bodies stay referenced for a moment), plus s3rver in the same process: measured 15-31 MiB
  // whatever the body size. A larger body keeps "bounded" and "holds it all" clearly apart.
  streamSize: 64 * 1024 * 1024,
  streamMemoryLimit: 44 * 1024 * 1024,
  knownGaps: {
    listOrder: 's3rver walks its directory tree ("a/b" before "a-b"); S3 lists in UTF-8 byte order',
  },
  // Beyond one 5 MiB part, so that the aborted put is a multipart upload.
  abortAfter: 6 * MiB,
});

// What a command works with: openStore's retry and metrics decorators around a LazyStore that loads the
// S3 provider, configured as a target is (default part size and queue: 8 MiB, 2).
storeConformance('s3 (s3rver), decorated by openStore', {
  async open() {
    const bucket = await servers.s3.createBucket();
    return openStore({
      name: 'aws',
      type: 's3',
      bucket,
      prefix: ++n % 2 ? `backups/registry-${n}` : '',
      region: servers.s3.region,
      endpoint: servers.s3.endpoint,
      forcePathStyle: true,
      credentials: servers.s3.credentials,
      storageClass: 'STANDARD',
    });
  },
  // Two 8 MiB parts in flight, each copied by lib-storage, plus s3rver in this process.
  streamSize: 96 * MiB,
  streamMemoryLimit: 64 * MiB,
  knownGaps: {
    listOrder: 's3rver walks its directory tree ("a/b" before "a-b"); S3 lists in UTF-8 byte order',
  },
  abortAfter: 9 * MiB,
});

describe('s3 store: provider specifics (against s3rver)', () => {
  /** A client whose outgoing requests (method, path, headers) are recorded. */
  function recordingClient() {
    const client = new S3Client(servers.s3.clientConfig());
    const sent: Array<{
      method: string;
      path: string;
      query: Record<string, unknown>;
      headers: Record<string, string>;
    }> = [];
    client.middlewareStack.add(
      (next) => async (args) => {
        const req = args.request as {
          method: string;
          path: string;
          query: Record<string, unknown>;
          headers: Record<string, string>;
        };
        sent.push({
          method: req.method,
          path: req.path,
          query: { ...req.query },
          headers: { ...req.headers },
        });
        return next(args);
      },
      { step: 'finalizeRequest', name: 'record' },
    );
    return { client, sent };
  }

  it('sends Object Lock retention, the storage class and plain byte ranges', async () => {
    const { client, sent } = recordingClient();
    try {
      const store = new S3Store({
        name: 'aws',
        bucket: await servers.s3.createBucket(),
        client,
        storageClass: 'STANDARD_IA',
        objectLockMode: 'COMPLIANCE',
      });
      const until = new Date('2031-01-02T03:04:05.000Z');
      await store.put('snapshots/one', Buffer.from('{"a":1}'), { retainUntil: until });
      const put = sent.find((r) => r.method === 'PUT')!;
      assert.equal(put.headers['x-amz-object-lock-mode'], 'COMPLIANCE');
      assert.equal(
        new Date(put.headers['x-amz-object-lock-retain-until-date']!).toISOString(),
        until.toISOString(),
      );
      assert.equal(put.headers['x-amz-storage-class'], 'STANDARD_IA');
      assert.ok(put.headers['x-amz-checksum-crc32'], 'Object Lock puts carry a checksum');

      await store.getBuffer('snapshots/one', { offset: 2, length: 3 });
      assert.equal(sent.at(-1)!.headers.range, 'bytes=2-4');
      await store.getBuffer('snapshots/one', { offset: 0, length: 1 });
      assert.equal(sent.at(-1)!.headers.range, 'bytes=0-0');
    } finally {
      client.destroy();
    }
  });

  it('an aborted multipart put aborts the upload (AbortMultipartUpload) before it rejects', async () => {
    const { client, sent } = recordingClient();
    try {
      const store = new S3Store({
        name: 'aws',
        bucket: await servers.s3.createBucket(),
        client,
        partSize: 5 * MiB,
        queueSize: 1,
      });
      const ac = new AbortController();
      let given = 0;
      const body = new Readable({
        read() {
          // Two parts, then nothing more (and no end): the abort comes while the third part is awaited.
          if (given >= 10 * MiB) {
            ac.abort();
            return;
          }
          given += MiB;
          this.push(randomBytes(MiB));
        },
      });
      await assert.rejects(store.put('packs/cut', body, { signal: ac.signal }), StoreAbortedError);
      const created = sent.filter((r) => r.method === 'POST' && 'uploads' in r.query);
      const aborted = sent.filter((r) => r.method === 'DELETE' && 'uploadId' in r.query);
      assert.equal(created.length, 1, 'a multipart upload was started');
      assert.equal(aborted.length, 1, 'and aborted');
      assert.equal(
        sent.filter((r) => r.method === 'POST' && 'uploadId' in r.query).length,
        0,
        'never completed',
      );
      assert.equal(await store.stat('packs/cut'), undefined);
    } finally {
      client.destroy();
    }
  });

  it('close() destroys the client it made, and leaves a client passed in to its owner', async () => {
    const bucket = await servers.s3.createBucket();
    const own = new S3Store({
      name: 'aws',
      bucket,
      region: servers.s3.region,
      endpoint: servers.s3.endpoint,
      forcePathStyle: true,
      credentials: servers.s3.credentials,
    });
    await own.put('k', Buffer.from('v'));
    const handler = (own as unknown as { client: S3Client }).client.config.requestHandler as unknown as {
      destroy(): void;
    };
    let destroyed = 0;
    const destroy = handler.destroy.bind(handler);
    handler.destroy = () => {
      destroyed++;
      destroy();
    };
    await own.close();
    await own.close();
    assert.equal(destroyed, 1, "the client's request handler (its sockets) was destroyed, once");

    const client = new S3Client(servers.s3.clientConfig());
    try {
      const lent = new S3Store({ name: 'aws', bucket, client });
      await lent.close();
      assert.equal((await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'k' }))).ContentLength, 1);
    } finally {
      client.destroy();
    }
  });

  it('a streamed body larger than one part goes up as a multipart upload', async () => {
    const { client, sent } = recordingClient();
    try {
      const store = new S3Store({
        name: 'aws',
        bucket: await servers.s3.createBucket(),
        client,
        partSize: 5 * MiB,
      });
      const body = randomBytes(11 * MiB);
      await store.put('packs/multi', Readable.from([body.subarray(0, 4 * MiB), body.subarray(4 * MiB)]));
      const parts = sent.filter((r) => r.method === 'PUT' && 'partNumber' in r.query);
      assert.deepEqual(
        parts.map((r) => r.query.partNumber),
        ['1', '2', '3'],
      );
      assert.equal(sent.filter((r) => r.method === 'POST').length, 2, 'CreateMultipartUpload and Complete');
      assert.deepEqual(await store.getBuffer('packs/multi'), body);
    } finally {
      client.destroy();
    }
  });
});
