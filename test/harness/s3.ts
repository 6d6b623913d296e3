import { createCipheriv, randomBytes } from 'node:crypto';
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { removeTmpDir, tmpDir } from './tmp.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface S3Server {
  /** http://127.0.0.1:PORT (path-style addressing: the client needs `forcePathStyle: true`). */
  endpoint: string;
  region: string;
  /** The only credentials s3rver accepts (it checks signatures against them). */
  credentials: S3Credentials;
  /** A ready S3ClientConfig for this server (path style, no checksum trailers s3rver cannot parse). */
  clientConfig(overrides?: Partial<S3ClientConfig>): S3ClientConfig;
  /** Creates a bucket (a fresh unique name unless one is given) and returns its name. */
  createBucket(name?: string): Promise<string>;
  stop(): Promise<void>;
}

export const S3RVER_CREDENTIALS: S3Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

let bucketCounter = 0;

/**
 * s3rver 3.7 in-process on a random loopback port, storing in a temporary directory removed at stop().
 * It encrypts ListObjectsV2 continuation tokens with DES, which Node 20 only offers with
 * `--openssl-legacy-provider`: without it every truncated listing fails with a 500, so start() refuses.
 */
export async function startS3(): Promise<S3Server> {
  assertLegacyProvider();
  const dir = await tmpDir(undefined, 'regbackup-s3rver-');
  const server = new S3rver({ port: 0, address: '127.0.0.1', directory: dir, silent: true });
  let addr;
  try {
    addr = await server.run();
  } catch (err) {
    await removeTmpDir(dir);
    throw err;
  }
  const endpoint = `http://127.0.0.1:${addr.port}`;
  const region = 'us-east-1';
  const clientConfig = (overrides: Partial<S3ClientConfig> = {}): S3ClientConfig => ({
    endpoint,
    region,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...overrides,
  });
  const admin = new S3Client(clientConfig());
  let stopped = false;
  return {
    endpoint,
    region,
    credentials: S3RVER_CREDENTIALS,
    clientConfig,
    async createBucket(name?: string) {
      const bucket = name ?? `test-${++bucketCounter}-${randomBytes(4).toString('hex')}`;
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      admin.destroy();
      await server.close();
      await removeTmpDir(dir);
    },
  };
}

function assertLegacyProvider(): void {
  try {
    createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
  } catch (err) {
    throw new Error(
      's3rver needs the DES cipher for paginated listings: run node with --openssl-legacy-provider ' +
        `(npm test does) (${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    );
  }
}
