import type { BlobType } from './ids.js';
import type { ChunkerParams } from './chunker.js';

/**
 * Messages between the blob writer (main thread) and its pack workers (pack-worker.ts).
 *
 * A job is one file, buffer or stream, or many small buffers (documents) at once. The worker reads (files) or receives (data) its bytes, cuts them into
 * chunks and names them (keyed BLAKE3), and reports the chunk IDs of each piece; the main thread, which owns the
 * index, answers which chunks are new; the worker compresses, encrypts and packs those, drops the others, and
 * hands back sealed packs. Bulk bytes never cross into the main thread.
 *
 * Messages carry arrays of ops/events, so that many small jobs cost few messages.
 */
export interface PackWorkerInit {
  recipients: { data: string[]; tree: string[] };
  packSize: number;
  compressionLevel: number;
  /** Where packs are spooled before upload. */
  spoolDir: string;
  idKey: Uint8Array;
  gear: Int32Array;
  chunkers: Record<'json' | 'bulk' | 'tree', ChunkerParams>;
}

/** json, bulk, tree: chunked by the repository's chunkers. blob-tree, blob-data: one blob as it is (repacking). */
export type JobKind = 'json' | 'bulk' | 'tree' | 'blob-tree' | 'blob-data';

/** Kinds a 'many' job may have (compression is tried on every chunk: no per-buffer raw detection). */
export type ManyKind = 'json' | 'tree';

/** A file is read in pieces of this size (the default bulk chunk size, so a piece holds whole chunks). */
export const PIECE_SIZE = 1024 * 1024;

/**
 * A file is read at most this many times: a read during which the file changed (its size or times moved, or
 * it ended early) is started over; after this many, the job fails with FILE_CHANGED.
 */
export const MAX_FILE_READS = 3;

/** The code of a file job that failed because the file kept changing while it was read. */
export const FILE_CHANGED = 'ECHANGED';

export type Op =
  | {
      op: 'file';
      job: number;
      path: string;
      kind: JobKind;
      /** Size and modification time (whole ms) as listed: the version the read is expected to find. */
      size: number;
      mtimeMs: number;
      sha1: boolean;
      sha512: boolean;
    }
  | { op: 'data'; job: number; kind: JobKind; data: ArrayBuffer; end: boolean }
  /**
   * Many small buffers in one job (documents): `data` holds them one after the other, `lengths` gives each
   * one's size. Each is chunked on its own, exactly as a job of its own would be; their chunks are reported in
   * one 'chunks' event (with `counts`), decided and stored as one batch.
   */
  | { op: 'many'; job: number; kind: ManyKind; data: ArrayBuffer; lengths: Uint32Array }
  | { op: 'decide'; job: number; batch: number; store: Uint8Array }
  | { op: 'flush'; seq: number };

export interface JobEnd {
  size: number;
  /** Files only: SHA-1 (hex) of the whole file, and SHA-512 (base64) when asked for. */
  sha1?: string;
  sha512?: string;
  /** Files only: the modification time (whole ms) of the version read. */
  mtimeMs?: number;
}

export type Event =
  | {
      ev: 'chunks';
      job: number;
      batch: number;
      ids: Uint8Array;
      sizes: Uint32Array;
      end?: JobEnd;
      /** 'many' jobs: how many of the chunks belong to each buffer, in order. */
      counts?: Uint32Array;
    }
  | { ev: 'consumed'; job: number; bytes: number }
  /** The file changed while it was read: the chunks reported so far are void; it is read again from the start. */
  | { ev: 'restart'; job: number }
  | { ev: 'pack'; pack: WirePack }
  | { ev: 'flushed'; seq: number }
  | { ev: 'failed'; job: number; message: string; code?: string }
  | { ev: 'error'; message: string };

export interface WirePack {
  id: string;
  type: BlobType;
  /** The spool file holding the sealed pack, and its size. */
  path: string;
  size: number;
  sha256: string;
  /** Entries, 48 bytes each, pack-trailer layout. */
  entries: Uint8Array;
  rawBytes: number;
  storedBytes: number;
}

export interface ToWorker {
  ops: Op[];
}
export interface FromWorker {
  events: Event[];
}
