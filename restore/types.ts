import type { FallbackEvent } from '../src/repo/reader.js';
import type { MetadataFallback } from '../src/repo/repository.js';
import type { DocFailure } from './couch-write.js';

/** One verification and its result. Every one of them is in the report; the exit status is 0 only if all passed. */
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
  /** `exact`: revisions written with new_edits=false. `revert`: packages put back into a live database as new revisions. */
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
  failures: DocFailure[];
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
  failures: { path: string; message: string }[];
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
