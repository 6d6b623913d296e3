import { createHash, type KeyObject } from 'node:crypto';
import { IntegrityError } from '../errors.js';
import { compressAll, Compression, decompressBlob } from './compress.js';
import { signBytes, verifyBytes } from './keys.js';

/**
 * Signed objects (docs/FORMAT.md §4, "Signed objects"): config, snapshots, index objects and drill reports.
 *
 *   magic[8] | compression u8 | rawLength u32 LE | body | signature[64]
 *
 * The Ed25519 signature covers every byte before it (the magic included, so that an object of one type can
 * never pass as another). The body is checked before it is decompressed: unsigned bytes are never inflated.
 */
export const Magic = {
  config: 'RBCONF01',
  snapshot: 'RBSNAP01',
  index: 'RBINDX01',
  drill: 'RBDRIL01',
  mark: 'RBMARK01',
} as const;
export type MagicName = keyof typeof Magic;

const HEAD = 8 + 1 + 4;
const SIG = 64;
/** Largest body accepted when reading (a hostile length field cannot make us allocate more). */
export const MAX_SIGNED_BODY = 512 * 1024 * 1024;

export function encodeSigned(kind: MagicName, body: Buffer, signingKey: KeyObject, compress = true): Buffer {
  const packed = compress ? compressAll(body) : body;
  const useZstd = compress && packed.length < body.length;
  const stored = useZstd ? packed : body;
  const head = Buffer.alloc(HEAD);
  head.write(Magic[kind], 0, 'latin1');
  head[8] = useZstd ? Compression.zstd : Compression.none;
  head.writeUInt32LE(body.length, 9);
  const signed = Buffer.concat([head, stored]);
  return Buffer.concat([signed, signBytes(signingKey, signed)]);
}

/** Verifies and opens a signed object; `what` names it in errors (e.g. "snapshot 3fa2… on aws"). */
export function decodeSigned(kind: MagicName, bytes: Buffer, verifyKey: KeyObject, what: string): Buffer {
  if (bytes.length < HEAD + SIG) throw new IntegrityError(`${what}: truncated (${bytes.length} bytes)`);
  const magic = bytes.subarray(0, 8).toString('latin1');
  if (magic !== Magic[kind]) {
    const other = (Object.keys(Magic) as MagicName[]).find((k) => Magic[k] === magic);
    throw new IntegrityError(
      other
        ? `${what}: holds a ${other} object, not a ${kind}`
        : `${what}: not a regbackup ${kind} object (bad magic)`,
    );
  }
  const signed = bytes.subarray(0, bytes.length - SIG);
  if (!verifyBytes(verifyKey, signed, bytes.subarray(bytes.length - SIG))) {
    throw new IntegrityError(`${what}: signature does not verify (tampered, or signed by another key)`);
  }
  const compression = bytes[8]!;
  const rawLength = bytes.readUInt32LE(9);
  if (rawLength > MAX_SIGNED_BODY) throw new IntegrityError(`${what}: body too large (${rawLength} bytes)`);
  try {
    return decompressBlob(signed.subarray(HEAD), compression, rawLength);
  } catch (err) {
    throw new IntegrityError(`${what}: ${(err as Error).message}`);
  }
}

export function sha256Hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
