import type { Logger } from '../log.js';
import type { BlobReader } from '../repo/reader.js';
import type { SourceSnapshot } from '../repo/snapshot.js';
import type { StreamRef } from '../repo/stream-ref.js';
import type { BlobWriter } from '../repo/writer.js';
import type { Progress } from './progress.js';

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

/** A tarball the packuments of this run refer to, with the checksums they record. */
export interface TarballExpectation {
  /** Path in the tarball store: `<name>/-/<basename>-<version>.tgz`. */
  path: string;
  shasum?: string;
  integrity?: string;
  /** The packument (document ID) and database it came from. */
  doc: string;
  db: string;
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

/**
 * A CouchDB update sequence, exactly as the server's JSON gave it: a number (CouchDB 1.x, PouchDB) or an
 * opaque string (CouchDB 2+: "2-g1AAAA…"). Never parsed, ordered or computed on: stored, compared for
 * equality, and passed back as `since`.
 */
export type CouchSeq = string | number;

/** One database inside a CouchDB source snapshot (see docs/FORMAT.md §12.1, "CouchDB sources"). */
export interface DbSnapshot {
  name: string;
  /** The update sequence the snapshot is consistent with (opaque: stored and passed back as `since`). */
  seq: CouchSeq;
  mode: 'full' | 'incremental';
  /** Why a full read was done when an incremental one was possible (db re-created, purge, seq refused). */
  fullReason?: string;
  /** Live documents (winning revision not deleted), deleted documents (tombstones), docs with conflicts. */
  docCount: number;
  deletedCount: number;
  conflictCount: number;
  /** Attachments and their bytes. */
  attachmentCount: number;
  attachmentBytes: number;
  /** Bytes of document bodies (JSON as served). */
  bodyBytes: number;
  /** `_local` documents in the listing (only with `includeLocal`); not part of the counts above. */
  localCount?: number;
  /** The `_security` object (JSON), a data blob; absent when the server would not give it. */
  security?: StreamRef;
  /** Database properties where visible (e.g. `{partitioned: true}`). */
  props?: Record<string, unknown>;
  /** Information from `GET /db` used to detect re-creation and purges on the next run. */
  info?: { purgeSeq?: CouchSeq; instanceStartTime?: string; uuid?: string };
  /** The sorted listing of documents (JSON lines; see docs/FORMAT.md §12.1). */
  listing: StreamRef;
  /** Set when this database could not be read in the run: the entry is the one of that earlier snapshot. */
  carriedFrom?: string;
}

export interface CouchSourceSnapshot extends SourceSnapshot {
  kind: 'couchdb';
  name: string;
  /** The server URL without credentials. */
  url: string;
  databases: DbSnapshot[];
}

export interface TarballSourceSnapshot extends SourceSnapshot {
  kind: 'tarballs';
  name: string;
  /** Where it was read from: a directory or s3://bucket/prefix. */
  location: string;
  files: number;
  bytes: number;
  /** The sorted listing of files (JSON lines; see docs/FORMAT.md §12.2). */
  listing: StreamRef;
}
