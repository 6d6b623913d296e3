import { createRequire } from 'node:module';

/**
 * Blob IDs (docs/FORMAT.md §5, "Blob IDs"): keyed BLAKE3 (32-byte key: the repository's ID key) over one type
 * byte followed by the blob's plaintext. Keyed, so that a storage provider cannot test whether a known file is
 * stored; typed, so that a data blob and a tree blob with equal bytes are different blobs. BLAKE3's keyed mode
 * is a PRF like HMAC-SHA256 (which version 1 drafts used), at 1.6-2.3x its speed per chunk on this hardware
 * (bench/floor.ts): the ID is computed once for every byte written and once for every byte read.
 */
export const enum BlobType {
  /** Document bodies, attachments, tarball bytes: readable only with the restore identity. */
  data = 0,
  /** Listings and other metadata: readable with the restore identity and with the worker's metadata identity. */
  tree = 1,
}

export const ID_SIZE = 32;

interface Blake3 {
  reset(): void;
  update(input: Uint8Array): Blake3;
  digestBuffer(): Buffer;
}
type Blake3Package = { Blake3Hasher: { newKeyed(key: Buffer): Blake3 } };
/** The native addon, loaded at the first ID (a command that computes none, `snapshots` say, starts ~9 ms sooner). */
let blake3: Blake3Package | undefined;

const TYPE_BYTES = [Buffer.of(0), Buffer.of(1)];

/**
 * One keyed hasher per key, reset between IDs (a new hasher per ID costs more than hashing an 8 KiB chunk).
 * Keys are few (one per repository open in a thread); hashing is synchronous, so a hasher is never shared
 * between two IDs at once.
 */
const hashers = new Map<string, Blake3>();

function hasher(idKey: Uint8Array): Blake3 {
  if (idKey.length !== 32) throw new Error('the ID key must be 32 bytes');
  const k = Buffer.from(idKey.buffer, idKey.byteOffset, idKey.byteLength).toString('latin1');
  let h = hashers.get(k);
  if (!h) {
    if (hashers.size >= 16) hashers.clear();
    blake3 ??= createRequire(import.meta.url)('@napi-rs/blake-hash') as Blake3Package;
    h = blake3.Blake3Hasher.newKeyed(Buffer.from(idKey));
    hashers.set(k, h);
  } else h.reset();
  return h;
}

/** The ID of a blob whose plaintext is `data`. */
export function blobId(idKey: Uint8Array, type: BlobType, data: Uint8Array): Buffer {
  return blobIdOf(idKey, type, [data]);
}

/** The ID of a blob whose plaintext is the concatenation of `pieces` (hashed in place, without a copy). */
export function blobIdOf(idKey: Uint8Array, type: BlobType, pieces: readonly Uint8Array[]): Buffer {
  const h = hasher(idKey).update(TYPE_BYTES[type] ?? Buffer.of(type));
  for (const p of pieces) h.update(p);
  return h.digestBuffer();
}

export function isHexId(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}
