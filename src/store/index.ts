import type { TargetConfig } from '../config/schema.js';
import { ConfigError } from '../errors.js';
import { FsStore } from './fs.js';
import { lazyGcs, lazyS3 } from './lazy.js';
import { MeteredStore, StoreMetrics } from './metrics.js';
import { RetryingStore, type RetryOptions } from './retry.js';
import type { ObjectStore } from './types.js';

export * from './types.js';
export { FsStore, type FsStoreOptions } from './fs.js';
export { MemoryStore } from './memory.js';
export type { S3StoreOptions } from './s3.js';
export type { GcsStoreOptions } from './gcs.js';
export { LazyStore, lazyGcs, lazyS3 } from './lazy.js';
export { normalizePrefix } from './location.js';
export { RetryingStore, withRetry, type RetryOptions, type RetryInfo } from './retry.js';
export { MeteredStore, StoreMetrics, withMetrics, type StoreMetricsSnapshot } from './metrics.js';
export {
  classify,
  isTransient,
  toTargetError,
  type Failure,
  type FailureKind,
  type StoreOperation,
} from './errors.js';

const S3_CLASSES = new Set(['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR']);
const GCS_CLASSES = new Set(['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE']);

export interface OpenStoreOptions {
  /** Retry policy; `false`: no retry decorator. */
  retry?: RetryOptions | false;
  /** Where this target's counters go (one StoreMetrics per target); default: a new one. */
  metrics?: StoreMetrics;
}

/** The provider's store for a configured target, without decorators. */
export function openProvider(target: TargetConfig): ObjectStore {
  switch (target.type) {
    case 's3':
      if (!S3_CLASSES.has(target.storageClass)) {
        throw new ConfigError(
          `target ${target.name}: storage class ${target.storageClass} is not an S3 class`,
          [`use one of ${[...S3_CLASSES].join(', ')}`],
        );
      }
      return lazyS3({
        name: target.name,
        bucket: target.bucket,
        prefix: target.prefix,
        region: target.region,
        endpoint: target.endpoint,
        forcePathStyle: target.forcePathStyle,
        credentials: target.credentials,
        storageClass: target.storageClass,
        ...(target.retention
          ? {
              objectLockMode:
                target.retention.mode === 'compliance' ? ('COMPLIANCE' as const) : ('GOVERNANCE' as const),
            }
          : {}),
      });
    case 'gcs':
      if (!GCS_CLASSES.has(target.storageClass)) {
        throw new ConfigError(
          `target ${target.name}: storage class ${target.storageClass} is not a GCS class`,
          [`use one of ${[...GCS_CLASSES].join(', ')}`],
        );
      }
      return lazyGcs({
        name: target.name,
        bucket: target.bucket,
        prefix: target.prefix,
        projectId: target.projectId,
        keyFilename: target.keyFilename,
        apiEndpoint: target.apiEndpoint,
        storageClass: target.storageClass,
        ...(target.retention
          ? {
              retentionMode:
                target.retention.mode === 'compliance' ? ('Locked' as const) : ('Unlocked' as const),
            }
          : {}),
      });
    case 'fs':
      return new FsStore({ name: target.name, root: target.path });
  }
}

/**
 * The store for a configured target, decorated: retry (outside) around metrics (inside, so every attempt
 * is counted) around the provider.
 */
export function openStore(target: TargetConfig, opts: OpenStoreOptions = {}): ObjectStore {
  const metered = new MeteredStore(openProvider(target), opts.metrics ?? new StoreMetrics());
  return opts.retry === false ? metered : new RetryingStore(metered, opts.retry);
}
