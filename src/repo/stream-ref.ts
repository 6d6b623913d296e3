import { IntegrityError } from '../errors.js';
import { ID_SIZE, isHexId } from './ids.js';
import type { BlobReader } from './reader.js';
import type { BlobKind, BlobWriter, Chunks, ManyKind } from './writer.js';

/**
 * A stored stream (docs/FORMAT.md §11, "Streams"): its size and its chunk IDs in order, or, when there are many,
 * `indirect`: a stream (of tree blobs) whose content is the chunk IDs, 32 raw bytes each, concatenated. The
 * indirection keeps snapshots small and lets unchanged stretches of a long listing deduplicate.
 */
export interface StreamRef {
  size: number;
  chunks?: string[];
  indirect?: StreamRef;
}

const DIRECT_MAX = 64;
const MAX_DEPTH = 4;

export async function refFromChunks(writer: BlobWriter, chunks: Chunks): Promise<StreamRef> {
  if (chunks.ids.length <= DIRECT_MAX)
    return { size: chunks.size, chunks: chunks.ids.map((b) => b.toString('hex')) };
  const list = Buffer.concat(chunks.ids);
  return { size: chunks.size, indirect: await refFromChunks(writer, await writer.write(list, 'tree')) };
}

export async function writeStream(
  writer: BlobWriter,
  src: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>,
  kind: BlobKind,
): Promise<StreamRef> {
  return refFromChunks(writer, await writer.writeStream(src, kind));
}

/** Stores many buffers (documents) at once (BlobWriter.writeMany): one reference each, in order. */
export async function writeBuffers(
  writer: BlobWriter,
  bufs: readonly Uint8Array[],
  kind: ManyKind,
): Promise<StreamRef[]> {
  const all = await writer.writeMany(bufs, kind);
  return Promise.all(all.map((c) => refFromChunks(writer, c)));
}

export async function writeBuffer(writer: BlobWriter, data: Buffer, kind: BlobKind): Promise<StreamRef> {
  return refFromChunks(writer, await writer.write(data, kind));
}

export function validateRef(ref: unknown, depth = 0): asserts ref is StreamRef {
  const r = ref as StreamRef;
  if (!r || typeof r !== 'object' || !Number.isSafeInteger(r.size) || r.size < 0 || depth > MAX_DEPTH) {
    throw new IntegrityError('malformed stream reference');
  }
  if (r.chunks !== undefined) {
    if (
      !Array.isArray(r.chunks) ||
      !r.chunks.every((c) => typeof c === 'string' && isHexId(c)) ||
      r.indirect !== undefined
    ) {
      throw new IntegrityError('malformed stream reference');
    }
  } else validateRef(r.indirect, depth + 1);
}

/** The chunk IDs of a stream, in order (reading indirect lists as needed). */
export async function* chunkIds(reader: BlobReader, ref: StreamRef): AsyncGenerator<Buffer> {
  validateRef(ref);
  if (ref.chunks) {
    for (const c of ref.chunks) yield Buffer.from(c, 'hex');
    return;
  }
  let carry = Buffer.alloc(0);
  for await (const part of readStream(reader, ref.indirect!)) {
    const buf = carry.length ? Buffer.concat([carry, part]) : part;
    const whole = buf.length - (buf.length % ID_SIZE);
    for (let at = 0; at < whole; at += ID_SIZE) yield buf.subarray(at, at + ID_SIZE);
    carry = Buffer.from(buf.subarray(whole));
  }
  if (carry.length) throw new IntegrityError('indirect chunk list has a partial ID');
}

/** The stream's bytes, chunk by chunk, reading up to `ahead` chunks in parallel. Checks the total size. */
export async function* readStream(reader: BlobReader, ref: StreamRef, ahead = 8): AsyncGenerator<Buffer> {
  const window: Promise<Buffer>[] = [];
  let size = 0;
  for await (const id of chunkIds(reader, ref)) {
    const p = reader.read(Buffer.from(id));
    p.catch(() => undefined); // awaited below, in order; this only keeps an early failure from being "unhandled"
    window.push(p);
    if (window.length >= ahead) {
      const b = await window.shift()!;
      size += b.length;
      yield b;
    }
  }
  while (window.length) {
    const b = await window.shift()!;
    size += b.length;
    yield b;
  }
  if (size !== ref.size) throw new IntegrityError(`stream is ${size} bytes, its reference says ${ref.size}`);
}

export async function readAll(reader: BlobReader, ref: StreamRef, maxSize = 1024 ** 3): Promise<Buffer> {
  if (ref.size > maxSize) throw new IntegrityError(`stream of ${ref.size} bytes is larger than allowed here`);
  const parts: Buffer[] = [];
  for await (const b of readStream(reader, ref)) parts.push(b);
  return Buffer.concat(parts);
}
