import { randomBytes } from 'node:crypto';
import { Storage, type CreateBucketRequest } from '@google-cloud/storage';
import { startFakeGcs, type FakeGcs, type FakeGcsOptions } from '../fakes/gcs/server.js';

export { startFakeGcs };
export type { FakeGcs, FakeGcsOptions };

export interface GcsServer {
  /** The fake itself: failNext() for error injection, listObjects(), readObject(), openUploadSessions(). */
  fake: FakeGcs;
  /** The fake's base URL: `apiEndpoint` for `new Storage(...)`. */
  url: string;
  projectId: string;
  /** Every request the fake has seen, in order. */
  requests: FakeGcs['requests'];
  /** A client for the fake (no credentials: the library skips auth with a custom endpoint). */
  storage(): Storage;
  /**
   * Creates a bucket (a fresh unique name unless one is given) and returns its name. Options as for
   * Storage.createBucket, e.g. `{ enableObjectRetention: true }`.
   */
  createBucket(name?: string, options?: CreateBucketRequest): Promise<string>;
  stop(): Promise<void>;
}

let bucketCounter = 0;

/** The in-repo fake of the GCS JSON API (test/fakes/gcs), on a random loopback port. */
export async function startGcs(opts: FakeGcsOptions = {}): Promise<GcsServer> {
  const fake = await startFakeGcs(opts);
  const projectId = 'test';
  const storage = () => new Storage({ apiEndpoint: fake.url, projectId });
  const admin = storage();
  let stopped = false;
  return {
    fake,
    url: fake.url,
    projectId,
    requests: fake.requests,
    storage,
    async createBucket(name?: string, options?: CreateBucketRequest) {
      const bucket = name ?? `test-${++bucketCounter}-${randomBytes(4).toString('hex')}`;
      await admin.createBucket(bucket, options ?? {});
      return bucket;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await fake.stop();
    },
  };
}
