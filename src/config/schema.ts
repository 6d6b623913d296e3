import { createRequire } from 'node:module';
import { z } from 'zod';
import { COMPRESSION_LEVEL, PACK_SIZE, describeLimit, withinLimit, type Limit } from '../repo/limits.js';
import { parseDuration, parseSize } from '../util/units.js';

/**
 * The configuration file's schema. Every key is documented in config/regbackup.example.yaml; keep the two
 * in step. Objects are strict: an unknown key is an error (a typo must not silently disable something).
 */

const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/i, 'a name of letters, digits, "-" and "_" (at most 63 characters)');

/** A size in bytes, within `limit` (the repository format's own limit: one definition, in repo/limits.ts). */
const size = (def: number, limit: Limit) =>
  z
    .union([z.string(), z.number()])
    .default(def)
    .transform((v, ctx) => {
      const n = parseSize(v);
      if (n === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a size such as 16MiB, 512KiB or a number of bytes, ${describeLimit(limit)}`,
        });
        return z.NEVER;
      }
      if (!withinLimit(n, limit)) {
        ctx.addIssue({ code: 'custom', message: `out of range: allowed ${describeLimit(limit)}` });
        return z.NEVER;
      }
      return n;
    });

/** Milliseconds; absent: undefined. */
const optionalDuration = () =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const n = parseDuration(v);
      if (n === undefined || n <= 0) {
        ctx.addIssue({ code: 'custom', message: 'expected a duration such as 90s, 30min, 2h or 7d' });
        return z.NEVER;
      }
      return n;
    })
    .optional();

/** A whole number within `limit`; the message gives the range. */
const bounded = (limit: Limit) =>
  z
    .number()
    .int(`expected a whole number ${describeLimit(limit)}`)
    .min(limit.min, `out of range: allowed ${describeLimit(limit)}`)
    .max(limit.max, `out of range: allowed ${describeLimit(limit)}`);

/** Milliseconds; at least `minMs` where less makes no sense (a zero interval is a busy loop). */
const duration = (def: string, minMs = 0) =>
  z
    .union([z.string(), z.number()])
    .default(def)
    .transform((v, ctx) => {
      const n = parseDuration(v);
      if (n === undefined) {
        ctx.addIssue({ code: 'custom', message: 'expected a duration such as 90s, 30min, 2h or 7d' });
        return z.NEVER;
      }
      if (n < minMs) {
        ctx.addIssue({ code: 'custom', message: `out of range: allowed from ${minMs / 1000}s` });
        return z.NEVER;
      }
      return n;
    });

const httpUrl = z
  .string()
  .refine((s) => /^https?:\/\/[^\s]+$/i.test(s) && URL.canParse(s), 'expected an http:// or https:// URL');

const s3Location = {
  bucket: z.string().min(1),
  prefix: z.string().default(''),
  region: z.string().default('us-east-1'),
  /** S3-compatible providers (MinIO, R2, B2, Wasabi, Ceph): their endpoint URL. */
  endpoint: httpUrl.optional(),
  forcePathStyle: z.boolean().default(false),
  /** Static credentials; absent: the AWS SDK's default chain (environment, profile, instance role). */
  credentials: z
    .strictObject({
      accessKeyId: z.string().min(1),
      secretAccessKey: z.string().min(1),
      sessionToken: z.string().optional(),
    })
    .optional(),
};

const couchdbSource = z.strictObject({
  name,
  url: httpUrl,
  /** Database names, or "*" for every database from _all_dbs. */
  databases: z.array(z.string().min(1)).min(1).default(['*']),
  /** Glob patterns (`*` and `?`) of databases to leave out. */
  exclude: z.array(z.string().min(1)).default([]),
  /** _users and _replicator are backed up only when listed here (or named in `databases`). */
  includeSystem: z.boolean().default(false),
  /** _local documents hold replication checkpoints; they are skipped unless asked for. */
  includeLocal: z.boolean().default(false),
  /** Parallel HTTP requests to this CouchDB. */
  concurrency: z.number().int().min(1).max(64).default(4),
  /** Documents per _bulk_get / _changes batch. */
  batchSize: z.number().int().min(1).max(10_000).default(500),
  /** Per-request timeout. */
  timeout: duration('5min', 1000),
  /** Health: alert when the newest data read from this source is older (default: alerts.rpoThreshold). */
  rpoThreshold: optionalDuration(),
});

const tarballFsSource = z.strictObject({
  name,
  path: z.string().min(1),
  /** Check each tarball against dist.shasum / dist.integrity from the packuments of the same run. */
  verify: z.boolean().default(true),
  rpoThreshold: optionalDuration(),
});

const tarballS3Source = z.strictObject({
  name,
  s3: z.strictObject(s3Location),
  verify: z.boolean().default(true),
  rpoThreshold: optionalDuration(),
});

const storageClass = z.enum([
  'STANDARD',
  'STANDARD_IA',
  'ONEZONE_IA',
  'INTELLIGENT_TIERING',
  'GLACIER_IR',
  'NEARLINE',
  'COLDLINE',
  'ARCHIVE',
]);

/**
 * Immutability: every new object is locked for `days` (S3 Object Lock retention — the bucket must have Object
 * Lock enabled — or GCS object retention — the bucket must allow it). `compliance` cannot be lifted by anyone
 * before the date; `governance` by an administrator with the bypass permission (on GCS: Locked / Unlocked).
 */
const retention = z.strictObject({
  days: z.number().int().min(1).max(3650),
  mode: z.enum(['governance', 'compliance']).default('governance'),
});

const s3Target = z.strictObject({
  name,
  type: z.literal('s3'),
  ...s3Location,
  storageClass: storageClass.default('STANDARD'),
  retention: retention.optional(),
});

const gcsTarget = z.strictObject({
  name,
  type: z.literal('gcs'),
  bucket: z.string().min(1),
  prefix: z.string().default(''),
  projectId: z.string().optional(),
  /** Path of a service-account JSON key; absent: Application Default Credentials. */
  keyFilename: z.string().optional(),
  /** Another endpoint for the JSON API (tests, private service connect). */
  apiEndpoint: httpUrl.optional(),
  storageClass: storageClass.default('STANDARD'),
  retention: retention.optional(),
});

const fsTarget = z.strictObject({
  name,
  type: z.literal('fs'),
  path: z.string().min(1),
  storageClass: storageClass.default('STANDARD'),
});

const target = z.discriminatedUnion('type', [s3Target, gcsTarget, fsTarget]);

const destination = z
  .strictObject({
    couchdb: httpUrl.optional(),
    /** A directory, or s3://bucket/prefix. */
    tarballs: z.string().min(1).optional(),
  })
  .refine((d) => d.couchdb || d.tarballs, 'a destination needs `couchdb`, `tarballs` or both');

/** node-cron's check, loaded on first use: most configurations have no schedule, and every command loads this. */
function validateCron(expr: string): boolean {
  const { validate } = createRequire(import.meta.url)('node-cron') as typeof import('node-cron');
  return validate(expr);
}

const cron = z
  .string()
  .refine(
    (s) => /^(\S+\s+){4,5}\S+$/.test(s.trim()) && validateCron(s.trim()),
    'expected a cron expression of 5 or 6 fields (seconds first when 6), such as "0 * * * *"',
  );

const timezone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}, 'expected an IANA time zone such as UTC or Europe/Berlin');

const retentionPolicy = z.strictObject({
  last: z.number().int().min(0).default(0),
  hourly: z.number().int().min(0).default(24),
  daily: z.number().int().min(0).default(7),
  weekly: z.number().int().min(0).default(4),
  monthly: z.number().int().min(0).default(12),
  yearly: z.number().int().min(0).default(0),
});

export const configSchema = z.strictObject({
  /** The worker key file: can write backups, cannot read them. */
  keys: z.string().min(1),
  /** The restore identity (age identity file). Only on hosts that restore or drill; --identity overrides. */
  identity: z.string().min(1).optional(),
  /** Local cache: index, incremental state. Safe to delete (it is rebuilt from a target). */
  cache: z.string().min(1).optional(),
  /** Parameters for repositories created by `regbackup init` (an existing repository keeps its own). */
  repository: z
    .strictObject({
      packSize: size(16 * 1024 * 1024, PACK_SIZE),
      compressionLevel: bounded(COMPRESSION_LEVEL).default(3),
    })
    .default({ packSize: 16 * 1024 * 1024, compressionLevel: 3 }),
  sources: z
    .strictObject({
      couchdb: z.array(couchdbSource).default([]),
      tarballs: z.array(z.union([tarballFsSource, tarballS3Source])).default([]),
    })
    .default({ couchdb: [], tarballs: [] }),
  targets: z.array(target).min(1, 'at least one target is needed'),
  destinations: z.record(name, destination).default({}),
  /** When `regbackup worker` runs each job (cron, 5 or 6 fields), in `timezone`. */
  schedule: z
    .strictObject({
      backup: cron.optional(),
      drill: cron.optional(),
      prune: cron.optional(),
      check: cron.optional(),
      timezone: timezone.default('UTC'),
      /** On SIGTERM: how long the current job may take to finish before it is interrupted (and handed back). */
      shutdownGrace: duration('20s'),
    })
    .optional(),
  retention: retentionPolicy.optional(),
  /** `regbackup prune`: safety and thresholds. */
  prune: z
    .strictObject({
      /** Marked packs are deleted only by a prune run at least this much later: longer than any backup. */
      grace: duration('24h'),
      /** A tree pack whose live bytes are below this fraction of its size is rewritten (repacked). */
      repackThreshold: z.number().min(0).max(1).default(0.5),
    })
    .default({ grace: 24 * 3_600_000, repackThreshold: 0.5 }),
  /** Price table for `regbackup cost`, per storage class (USD): overrides the built-in list prices. */
  prices: z
    .partialRecord(
      storageClass,
      z.strictObject({
        storagePerGBMonth: z.number().min(0),
        putPer1000: z.number().min(0),
        getPer1000: z.number().min(0),
        minimumDays: z.number().int().min(0).default(0),
      }),
    )
    .default({}),
  /** With a Redis URL, jobs go through BullMQ and any number of workers share them. */
  queue: z
    .strictObject({
      redis: z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL'),
      /** Jobs this worker runs at once. */
      concurrency: z.number().int().min(1).max(64).default(1),
      /** BullMQ key prefix (several deployments can share one Redis with different prefixes). */
      prefix: z.string().min(1).default('regbackup'),
      /** Attempts per job, the first included, before it counts as failed. */
      attempts: z.number().int().min(1).max(100).default(3),
      /** First delay before a retry, doubled at each attempt; also how long a job waits when its source is busy. */
      backoff: duration('30s'),
      /** How long a worker's claim on a job lasts unrenewed: a worker that died is noticed after about this long. */
      lockDuration: duration('30s'),
      /** Each tarball store (directory) is cut into this many parts, shared out among the workers. */
      tarballShards: z.number().int().min(1).max(256).default(4),
    })
    .optional(),
  alerts: z
    .strictObject({
      pagerduty: z
        .strictObject({
          routingKey: z.string().min(1),
          url: httpUrl.default('https://events.pagerduty.com/v2/enqueue'),
        })
        .optional(),
      webhook: z
        .strictObject({
          url: httpUrl,
          headers: z.record(z.string(), z.string()).default({}),
        })
        .optional(),
      /**
       * Raise an alert when the newest snapshot on a target, or the newest data read from a source, is older
       * than this. Unset: twice the longest gap between two scheduled backups (at least 30min), else 2h.
       */
      rpoThreshold: optionalDuration(),
      /** Raise an alert when the newest restore drill is older than this (only once a drill has run). */
      drillMaxAge: duration('8d'),
      /** How often the worker re-evaluates health (RPO grows without any job running). */
      checkInterval: duration('1min', 1000),
      /** Names this deployment in alerts; part of every dedup key (one incident per problem). */
      name: z.string().min(1).default('regbackup'),
    })
    .optional(),
  metrics: z
    .strictObject({
      prometheus: z
        .strictObject({
          /** 0: a free port (tests). */
          port: z.number().int().min(0).max(65535).default(9464),
          host: z.string().default('0.0.0.0'),
        })
        .optional(),
      /** Pushes the same metrics as InfluxDB line protocol (v1 `/write?db=` or v2 `/api/v2/write?org=&bucket=`). */
      influxdb: z
        .strictObject({
          url: httpUrl,
          /** Sent as `Authorization: Token …` (InfluxDB 2) when set. */
          token: z.string().min(1).optional(),
          interval: duration('1min', 1000),
        })
        .optional(),
    })
    .optional(),
  /** The restore drill (`regbackup drill`, and weekly in the worker). */
  drill: z
    .strictObject({
      /** A CouchDB to restore into, under scratch database names; absent: a temporary in-memory server. */
      couchdb: httpUrl.optional(),
      /** Where the scratch tarball directories go (default: the system's temporary directory). */
      tarballs: z.string().min(1).optional(),
      /** Documents and tarballs sampled for the deep checks (source comparison, unpacking). */
      sample: z.number().int().min(1).max(100_000).default(50),
      /** Only these targets (default: every target). */
      targets: z.array(name).min(1).optional(),
      /** Keep the scratch databases and directory after the drill (for inspection). */
      keep: z.boolean().default(false),
    })
    .optional(),
});

export type Config = z.output<typeof configSchema>;
export type TargetConfig = z.output<typeof target>;
export type S3TargetConfig = z.output<typeof s3Target>;
export type GcsTargetConfig = z.output<typeof gcsTarget>;
export type FsTargetConfig = z.output<typeof fsTarget>;
export type CouchdbSourceConfig = z.output<typeof couchdbSource>;
export type TarballSourceConfig = z.output<typeof tarballFsSource> | z.output<typeof tarballS3Source>;
export type DestinationConfig = z.output<typeof destination>;
export type RetentionConfig = z.output<typeof retentionPolicy>;
export type ImmutabilityConfig = z.output<typeof retention>;
export type DrillConfig = NonNullable<Config['drill']>;
export type QueueConfig = NonNullable<Config['queue']>;
export type AlertsConfig = NonNullable<Config['alerts']>;
