import type { BlobType } from './ids.js';

/** Messages between the blob writer and its pack workers (see pack-worker.ts). */
export interface PackWorkerInit {
  recipients: { data: string[]; tree: string[] };
  packSize: number;
  compressionLevel: number;
}

export interface WirePack {
  id: string;
  type: BlobType;
  bytes: ArrayBuffer;
  sha256: string;
  /** Entries, 48 bytes each, pack-trailer layout. */
  entries: Uint8Array;
  /** Plaintext bytes of blobs (before compression) and stored bytes. */
  rawBytes: number;
  storedBytes: number;
}

export type PackWorkerIn =
  | { t: 'blobs'; seq: number; data: ArrayBuffer; ids: Uint8Array; meta: Uint32Array }
  | { t: 'flush'; seq: number };

export type PackWorkerOut =
  | { t: 'ack'; seq: number; bytes: number }
  | { t: 'pack'; pack: WirePack }
  | { t: 'flushed'; seq: number }
  | { t: 'error'; message: string };

export const HINT_TRY = 0;
export const HINT_RAW = 1;

