import type { Logger } from '../log.js';
import type { BlobReader } from '../repo/reader.js';
import type { SourceSnapshot } from '../repo/snapshot.js';
import type { StreamRef } from '../repo/stream-ref.js';
import type { BlobWriter } from '../repo/writer.js';
import type { Progress } from '../util/progress.js';

/**
 * What a source's backup gets from the run. Sources never touch targets directly: they write blobs through
 * the writer and read their previous listing through the reader (tree blobs only: the worker key can read
 * metadata, never content).
 */
export interface BackupContext {
  writer: BlobWriter;
  /** Reads tree blobs (listings) of earlier snapshots; undefined when there is no previous snapshot. */
  reader?: BlobReader;
  /** This source's entry in the latest earlier snapshot that has it (for incremental runs). */
  previous?: SourceSnapshot;
  progress: Progress;
  log: Logger;
  /** Scratch space for external sorts; removed after the run. */
  tmpDir: string;
  signal: AbortSignal;
}

/** Something the run reports: a source object that could not be read, a checksum mismatch, … */
export interface Finding {
  severity: 'error' | 'warning' | 'info';
  /** Stable machine-readable code, e.g. "tarball-checksum-mismatch", "db-gone", "fallback-full". */
  code: string;
  source: string;
  /** The object concerned (a database, a document ID, a path), when there is one. */
  object?: string;
  message: string;
}

/** The result of backing up one part of a source (a database, or a tarball shard). */
export interface PartResult<S extends SourceSnapshot = SourceSnapshot> {
  snapshot: S;
  findings: Finding[];
  /**
   * Tarballs referenced by the packuments read in this part, as a sorted listing stream (JSON lines of
   * TarballExpectation, in tarball-path listing order) — consumed by the tarball parts of the same run.
   */
  expectations?: StreamRef;
  stats: Record<string, number>;
}
