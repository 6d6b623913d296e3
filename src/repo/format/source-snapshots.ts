import type { SourceSnapshot } from '../snapshot.js';
import type { StreamRef } from '../stream-ref.js';

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
  /** `GET /db/_revs_limit`: how many revisions of history the database keeps (absent where not served). */
  revsLimit?: number;
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
