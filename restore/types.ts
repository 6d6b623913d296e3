import type { FallbackEvent } from '../src/repo/reader.js';
import type { MetadataFallback } from '../src/repo/repository.js';
import type { DocFailure } from './couch-write.js';

/**
 * Why one thing of the snapshot is not on the destination as the snapshot has it. Set where the failure is
 * found; the exit code of a restore comes from the kinds (`restoreExitCode` in restore/failures.ts):
 * - `destination-refused`: the destination is not one to write into without --force (not empty); nothing was
 *   written (a dry run reports it; a real restore stops with a DestinationError before writing).
 * - `document-refused`: CouchDB did not accept a document (or a package put back as a new revision).
 * - `document-deleted`: --package into a live database: the package was deleted in the snapshot (not put
 *   back).
 * - `destination-write`: a file could not be written at its name: a symbolic link or a non-directory on its
 *   path, a directory in the way, a name that cannot be an object key, a write error.
 * - `content-mismatch`: a file as restored is not the snapshot's (size, sha1, sha512), or its data could not
 *   be read intact from any target.
 * - `check-failed`: a verification of the destination against the snapshot failed (counts, revisions, files
 *   missing or different, names refused by the name rule).
 */
export type RestoreFailureKind =
  | 'destination-refused'
  | 'document-refused'
  | 'document-deleted'
  | 'destination-write'
  | 'content-mismatch'
  | 'check-failed';

/** The kinds a file of the tarball store can fail with while it is written. */
export type FileFailureKind = Extract<RestoreFailureKind, 'destination-write' | 'content-mismatch'>;

/** A file of the tarball store that was not restored. */
export interface FileFailure {
  path: string;
  message: string;
  kind: FileFailureKind;
}

/** A document CouchDB did not take. */
export interface DbFailure extends DocFailure {
  kind: Extract<RestoreFailureKind, 'document-refused' | 'document-deleted'>;
}

/**
 * One verification and its result. Every one of them is in the report; the exit status is 0 only if all
 * passed.
 */
export interface Check {
  /** The database, file, package or store concerned. */
  object: string;
  /** What was compared, e.g. "doc_count", "winning revisions", "sha1". */
  check: string;
  ok: boolean;
  expected?: string | number;
  actual?: string | number;
  /** For a failure: the first differences. */
  details?: string[];
}

export interface DbPlanCounts {
  docs: number;
  deleted: number;
  attachments: number;
  bytes: number;
}

export interface DbReport {
  /** The CouchDB source of the snapshot and the database's name there. */
  source: string;
  name: string;
  /** The database written. */
  dest: string;
  status: 'restored' | 'planned' | 'failed';
  /**
   * `exact`: revisions written with new_edits=false. `revert`: packages put back into a live database as new
   * revisions.
   */
  mode: 'exact' | 'revert';
  /** The database was created by this restore (or by the interrupted one it resumes). */
  created: boolean;
  /** Resumed after this document (the checkpoint of an interrupted restore). */
  resumedAfter?: string;
  /** What the snapshot holds for this database (or the selection of it). */
  planned: DbPlanCounts;
  docs: number;
  revisions: number;
  attachments: number;
  bytes: number;
  durationMs: number;
  /** Documents the destination refused (the first 1000), and how many. */
  failures: DbFailure[];
  failureCount: number;
  /** Packages put back into a live database: their previous and new winning revision. */
  reverted?: { id: string; from: string; to: string; snapshotRev: string }[];
  checks: Check[];
  /** What --dry-run found about the destination. */
  note?: string;
}

export interface TarballReport {
  source: string;
  /** Where the files went: a directory, or s3://bucket/prefix. */
  dest: string;
  status: 'restored' | 'planned' | 'failed';
  created: boolean;
  resumedAfter?: string;
  planned: { files: number; bytes: number };
  files: number;
  bytes: number;
  /** Files already in place (verified) and not written again (resumed restores). */
  skipped: number;
  durationMs: number;
  failures: FileFailure[];
  failureCount: number;
  checks: Check[];
  note?: string;
}

export interface RestoreReport {
  snapshot: { id: string; time: string; host?: string };
  /** The destination, without credentials. */
  destination: string;
  dryRun: boolean;
  /** This run continued an interrupted restore. */
  resumed: boolean;
  targets: {
    /** Targets read, in the order tried. */
    used: string[];
    /** The target the snapshot manifest and index were read from. */
    metadata: string;
    unreachable: { target: string; error: string }[];
    /** Blobs read from another target because the first could not serve them intact (the first 1000). */
    fallbacks: FallbackEvent[];
    fallbackCount: number;
    /** Index objects and snapshot manifests read from another target than the first one tried, and why. */
    metadataFallbacks: MetadataFallback[];
    /** Index objects bad on every target that holds them (left out of the index), and why. */
    unreadableIndex: { object: string; reason: string }[];
  };
  databases: DbReport[];
  tarballs: TarballReport[];
  /** `--package`: which were found in the snapshot. */
  packages?: { name: string; docs: string[]; files: number }[];
  totals: { docs: number; files: number; bytes: number; durationMs: number; bytesPerSecond: number };
  /** Every check passed (and nothing failed). */
  verified: boolean;
  exitCode: number;
}
