import { UsageError } from '../src/errors.js';
import { withRetry } from '../src/store/retry.js';
import { lazyS3 } from '../src/store/lazy.js';
import type { TarballDestination } from './tarballs.js';

/**
 * A tarball destination from its spelling in the configuration or on the command line: a directory, or
 * `s3://bucket/prefix` — with, for S3-compatible providers, `?endpoint=URL&region=R&forcePathStyle=true`.
 * Credentials come from the AWS SDK's default chain (environment, profile, instance role), never the URL.
 */
export function openTarballDestination(spec: string): TarballDestination {
  if (!/^s3:\/\//i.test(spec)) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec))
      throw new UsageError(
        `tarball destination ${spec}: only a directory or s3://bucket/prefix is supported`,
      );
    return { dir: spec };
  }
  const u = new URL(spec);
  const bucket = u.hostname;
  if (!bucket) throw new UsageError(`tarball destination ${spec}: no bucket`);
  if (u.username || u.password)
    throw new UsageError(
      'put S3 credentials in the environment (AWS_ACCESS_KEY_ID, …), not in the destination URL',
    );
  const prefix = decodeURIComponent(u.pathname.replace(/^\/+/, ''));
  for (const k of u.searchParams.keys()) {
    if (!['endpoint', 'region', 'forcePathStyle'].includes(k))
      throw new UsageError(
        `tarball destination ${spec}: unknown parameter ${k} (endpoint, region, forcePathStyle)`,
      );
  }
  const store = lazyS3({
    name: 'tarball destination',
    bucket,
    prefix,
    region: u.searchParams.get('region') ?? process.env.AWS_REGION ?? 'us-east-1',
    endpoint: u.searchParams.get('endpoint') ?? undefined,
    forcePathStyle: u.searchParams.get('forcePathStyle') === 'true',
  });
  return { s3: withRetry(store) };
}
