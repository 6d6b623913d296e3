import { createDecipheriv, createSecretKey } from 'node:crypto';
import { decompressBlob } from '../src/repo/compress.js';
import { blobIdOf } from '../src/repo/ids.js';
import { releaseNow } from '../src/util/release.js';

// The age STREAM layout (docs/FORMAT.md §3), as in src/repo/age.ts — not imported from there: that module
// loads the age-encryption package (~10 MB per thread), which the worker threads that import this one
// never need.
export const SEGMENT_SIZE = 64 * 1024;
export const TAG_SIZE = 16;
export const CIPHER_SEGMENT_SIZE = SEGMENT_SIZE + TAG_SIZE;

/**
 * The CPU-heavy half of reading blobs, as one pure function that runs in a worker thread or inline: decrypt a
 * run of age segments of a pack (docs/FORMAT.md §3), cut the requested blobs out of the plaintext, decompress
 * them (§8) and check each one's keyed ID (§5). Nothing here touches a store.
 */

/** One blob to cut out of a run: its place in the pack's plaintext, as the index records it. */
export interface RunBlob {
  offset: number;
  length: number;
  rawLength: number;
  compression: number;
  type: number;
}

export interface RunTask {
  /** The pack's payload key (from its age header). */
  key: Uint8Array;
  /** Ciphertext of segments `firstSegment …`, as read from the store. */
  cipher: Uint8Array;
  firstSegment: number;
  /** The ciphertext runs to the end of the pack object (its last segment carries the last flag). */
  reachesEnd: boolean;
  blobs: RunBlob[];
  /** The blobs' IDs, 32 bytes each, concatenated. */
  ids: Uint8Array;
}

/** A verified blob: `[buffer index, offset, length]` into `buffers`, or the reason it failed. */
export type RunBlobResult = [number, number, number] | string;

export interface RunResult {
  buffers: ArrayBuffer[];
  blobs: RunBlobResult[];
}

function segmentNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6);
  n[11] = last ? 1 : 0;
  return n;
}

/** A Buffer that owns its whole ArrayBuffer (so it can be transferred to another thread without a copy). */
function ownBuffer(size: number): Buffer {
  return Buffer.from(new ArrayBuffer(size));
}

/** Decrypted segments of a run: the plaintext of segment `firstSegment + i` is `segs[i]`, unless `bad[i]`. */
export interface Segments {
  firstSegment: number;
  segs: Buffer[];
  /** Why a segment (relative index) cannot be used: failed authentication, or missing (truncated pack). */
  bad: (string | undefined)[];
}

/**
 * Decrypts consecutive age segments starting at segment `firstSegment`. Each segment is authenticated
 * (Poly1305); one that fails is marked bad and its plaintext is never used.
 *
 * `authenticate: false` skips the Poly1305 tags (a third of the cost) — only for segments whose blobs are all
 * stored uncompressed: no byte of them is used before the blob's keyed ID (keyed BLAKE3 over the plaintext,
 * FORMAT.md §5) has been checked, which detects any change of the ciphertext just as the tag would, and
 * nothing unauthenticated ever reaches a decompressor.
 */
export function decryptSegments(
  key: Uint8Array,
  cipher: Buffer,
  firstSegment: number,
  reachesEnd: boolean,
  authenticate = true,
): Segments {
  const count = Math.ceil(cipher.length / CIPHER_SEGMENT_SIZE);
  // One KeyObject for the run: a raw key buffer costs a quarter more per 64 KiB segment.
  const keyObject = createSecretKey(key);
  const segs: Buffer[] = [];
  const bad: (string | undefined)[] = [];
  for (let s = 0; s < count; s++) {
    const start = s * CIPHER_SEGMENT_SIZE;
    const end = Math.min(cipher.length, start + CIPHER_SEGMENT_SIZE);
    const last = end === cipher.length && reachesEnd;
    const counter = firstSegment + s;
    if (!last && end - start < CIPHER_SEGMENT_SIZE) {
      bad[s] = 'pack is shorter than the index says (truncated?)';
      break;
    }
    if (end - start < TAG_SIZE) {
      bad[s] = 'age segment shorter than its tag';
      break;
    }
    if (!authenticate) {
      // ChaCha20 alone, as ChaCha20-Poly1305 (RFC 8439) encrypts: block counter 1, the segment's nonce.
      const iv = Buffer.alloc(16);
      iv[0] = 1;
      segmentNonce(counter, last).copy(iv, 4);
      segs.push(createDecipheriv('chacha20', keyObject, iv).update(cipher.subarray(start, end - TAG_SIZE)));
      continue;
    }
    const d = createDecipheriv('chacha20-poly1305', keyObject, segmentNonce(counter, last), {
      authTagLength: TAG_SIZE,
    });
    d.setAuthTag(cipher.subarray(end - TAG_SIZE, end));
    segs.push(d.update(cipher.subarray(start, end - TAG_SIZE)));
    try {
      d.final();
    } catch {
      bad[s] = `age segment ${counter} failed authentication`;
    }
  }
  return { firstSegment, segs, bad };
}

/**
 * The pieces of blob `b` (stored bytes) in decrypted segments, decompressed when stored compressed, with its
 * keyed ID checked: the blob's bytes as a list of buffers (no copy for a raw blob), or why it cannot be used.
 */
export function verifiedPieces(
  d: Segments,
  b: RunBlob,
  id: Uint8Array,
  idKey: Uint8Array,
): Buffer[] | string {
  const rel = b.offset - d.firstSegment * SEGMENT_SIZE;
  const first = Math.floor(rel / SEGMENT_SIZE);
  const last = Math.floor((rel + Math.max(b.length, 1) - 1) / SEGMENT_SIZE);
  if (rel < 0) return 'blob outside the segments read';
  const pieces: Buffer[] = [];
  for (let s = first; s <= last; s++) {
    if (d.bad[s]) return d.bad[s]!;
    const seg = d.segs[s];
    if (!seg) return 'pack is shorter than the index says (truncated?)';
    const from = s === first ? rel - first * SEGMENT_SIZE : 0;
    const to = s === last ? rel + b.length - s * SEGMENT_SIZE : seg.length;
    if (to > seg.length) return 'pack is shorter than the index says (truncated?)';
    if (to > from) pieces.push(seg.subarray(from, to));
  }
  let raw = pieces;
  if (b.compression !== 0 || pieces.length === 0) {
    try {
      raw = [
        decompressBlob(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces), b.compression, b.rawLength),
      ];
    } catch (err) {
      return (err as Error).message;
    }
  } else {
    let n = 0;
    for (const p of pieces) n += p.length;
    if (n !== b.rawLength) return `stored length ${n} != recorded ${b.rawLength}`;
  }
  if (!blobIdOf(idKey, b.type, raw).equals(id))
    return 'content does not match its ID (corrupt or substituted)';
  return raw;
}

export function decodeRun(task: RunTask, idKey: Uint8Array): RunResult {
  const cipher = Buffer.from(task.cipher.buffer, task.cipher.byteOffset, task.cipher.byteLength);
  const d = decryptSegments(task.key, cipher, task.firstSegment, task.reachesEnd);
  // Results are whole ArrayBuffers (transferred to the main thread): each blob copied into one of its own.
  const buffers: ArrayBuffer[] = [];
  const results: RunBlobResult[] = [];
  for (let i = 0; i < task.blobs.length; i++) {
    const r = verifiedPieces(d, task.blobs[i]!, task.ids.subarray(i * 32, i * 32 + 32), idKey);
    if (typeof r === 'string') {
      results.push(r);
      continue;
    }
    let n = 0;
    for (const p of r) n += p.length;
    const own = ownBuffer(n);
    let at = 0;
    for (const p of r) at += p.copy(own, at);
    buffers.push(own.buffer as ArrayBuffer);
    results.push([buffers.length - 1, 0, n]);
  }
  // Every blob is copied out: the decrypted segments go back now, not at this worker's next GC.
  releaseNow(d.segs);
  return { buffers, blobs: results };
}
