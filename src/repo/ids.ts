import { createHmac, type KeyObject } from 'node:crypto';

/**
 * Blob IDs (docs/FORMAT.md §5, "Blob IDs"): HMAC-SHA256 keyed with the repository's ID key over one type byte
 * followed by the blob's plaintext. Keyed, so that a storage provider cannot test whether a known file is
 * stored; typed, so that a data blob and a tree blob with equal bytes are different blobs.
 */
export const enum BlobType {
  /** Document bodies, attachments, tarball bytes: readable only with the restore identity. */
  data = 0,
  /** Listings and other metadata: readable with the restore identity and with the worker's metadata identity. */
  tree = 1,
}

export const ID_SIZE = 32;

/**
 * `idKey`: the ID key, as bytes or (faster when many IDs are computed: a raw key is turned into a key object
 * on every call, which costs more than hashing a small chunk) as a secret key object (createSecretKey).
 */
export function blobId(idKey: Buffer | KeyObject, type: BlobType, data: Uint8Array): Buffer {
  return createHmac('sha256', idKey).update(Buffer.of(type)).update(data).digest();
}

export function isHexId(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}
