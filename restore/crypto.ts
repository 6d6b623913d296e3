import { createDecipheriv, createHmac } from 'node:crypto';
import { CIPHER_SEGMENT_SIZE, SEGMENT_SIZE, TAG_SIZE } from '../src/repo/age.js';
import { decompressBlob } from '../src/repo/compress.js';

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

export function decodeRun(task: RunTask, idKey: Uint8Array): RunResult {
  const cipher = Buffer.from(task.cipher.buffer, task.cipher.byteOffset, task.cipher.byteLength);
  const segments = Math.ceil(cipher.length / CIPHER_SEGMENT_SIZE);
  const plain = ownBuffer(Math.max(0, cipher.length - segments * TAG_SIZE));
  // Per segment: plaintext bytes decrypted, or the reason it failed.
  const bad: (string | undefined)[] = [];
  let out = 0;
  for (let s = 0; s < segments; s++) {
    const start = s * CIPHER_SEGMENT_SIZE;
    const end = Math.min(cipher.length, start + CIPHER_SEGMENT_SIZE);
    const last = end === cipher.length && task.reachesEnd;
    const counter = task.firstSegment + s;
    if (!last && end - start < CIPHER_SEGMENT_SIZE) {
      bad[s] = 'pack is shorter than the index says (truncated?)';
      break;
    }
    if (end - start < TAG_SIZE) {
      bad[s] = 'age segment shorter than its tag';
      break;
    }
    const d = createDecipheriv('chacha20-poly1305', task.key, segmentNonce(counter, last), {
      authTagLength: TAG_SIZE,
    });
    d.setAuthTag(cipher.subarray(end - TAG_SIZE, end));
    const body = d.update(cipher.subarray(start, end - TAG_SIZE));
    try {
      d.final();
    } catch {
      bad[s] = `age segment ${counter} failed authentication`;
    }
    body.copy(plain, out);
    out += body.length;
  }
  const plainStart = task.firstSegment * SEGMENT_SIZE;
  const buffers: ArrayBuffer[] = [plain.buffer as ArrayBuffer];
  const results: RunBlobResult[] = [];
  for (let i = 0; i < task.blobs.length; i++) {
    const b = task.blobs[i]!;
    const rel = b.offset - plainStart;
    const firstSeg = Math.floor(rel / SEGMENT_SIZE);
    const lastSeg = Math.floor((rel + Math.max(b.length, 1) - 1) / SEGMENT_SIZE);
    let why: string | undefined;
    for (let s = firstSeg; s <= lastSeg && !why; s++) why = bad[s];
    if (!why && rel + b.length > out) why = 'pack is shorter than the index says (truncated?)';
    if (why) {
      results.push(why);
      continue;
    }
    const stored = plain.subarray(rel, rel + b.length);
    let raw: Buffer;
    try {
      raw = decompressBlob(stored, b.compression, b.rawLength);
    } catch (err) {
      results.push((err as Error).message);
      continue;
    }
    const id = createHmac('sha256', idKey).update(Buffer.of(b.type)).update(raw).digest();
    if (!id.equals(task.ids.subarray(i * 32, i * 32 + 32))) {
      results.push('content does not match its ID (corrupt or substituted)');
      continue;
    }
    if (raw === stored) {
      results.push([0, plain.byteOffset + rel, b.length]);
    } else {
      // Decompressed into a fresh buffer (maybe a slice of Node's pool): results name whole ArrayBuffers.
      let own = raw;
      if (raw.byteOffset !== 0 || raw.byteLength !== raw.buffer.byteLength) {
        own = ownBuffer(raw.length);
        raw.copy(own);
      }
      buffers.push(own.buffer as ArrayBuffer);
      results.push([buffers.length - 1, 0, raw.length]);
    }
  }
  return { buffers, blobs: results };
}
