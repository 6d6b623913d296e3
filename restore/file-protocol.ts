/**
 * Messages between the tarball restore (main thread) and its file workers (file-worker.ts), for the fast
 * path: packs on a local filesystem target, files into a local directory. The main thread plans (listing,
 * index, safe directories, pack headers); each worker reads pack ranges, decrypts, verifies every blob's keyed
 * ID, checks each file's size and sha1, and writes it (temporary name, sync, rename) — so that the CPU work
 * runs on every core and nothing big crosses threads.
 */
export interface PackRef {
  /** The pack object's path on the local target. */
  path: string;
  /** Its payload key and where the payload starts (from its age header, read by the main thread). */
  key: Uint8Array;
  payloadOffset: number;
  /** Size of the pack object. */
  size: number;
}

export interface ChunkRef {
  /** Index into the job's packs. */
  pack: number;
  offset: number;
  length: number;
  rawLength: number;
  compression: number;
  type: number;
  /** The blob ID (32 bytes). */
  id: Uint8Array;
}

export interface FileJob {
  /** The listing path (for messages and the result). */
  rel: string;
  /** The directory it goes into (created and checked by the main thread), its name there, its temporary name. */
  dir: string;
  base: string;
  tmp: string;
  size: number;
  /** ms since the epoch. */
  mtime: number;
  sha1?: string;
  sha512?: string;
  chunks: ChunkRef[];
}

export interface Job {
  n: number;
  /** The destination's real path: every file opened must lie under it. */
  root: string;
  packs: PackRef[];
  files: FileJob[];
}

export type FileResult =
  | { ok: true; how: 'sha1' | 'sha512' | 'size' }
  /**
   * `source`: a blob could not be read intact here (pack missing, truncated, failed authentication or ID) —
   * the main thread reads the file again through the targets' fallback. `integrity`: size or checksum of the
   * assembled file differ from the listing. `dest`: the destination refused (with the system error code).
   */
  | { ok: false; kind: 'source' | 'integrity' | 'dest'; message: string; code?: string };

export interface JobResult {
  n: number;
  results: FileResult[];
  /** Ciphertext bytes read. */
  bytesRead: number;
}
