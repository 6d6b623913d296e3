import { PassThrough, Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import type { ByteRange } from './types.js';

/** Checks a byte range: whole numbers, offset ≥ 0, length ≥ 0. */
export function assertValidRange(range: ByteRange | undefined): void {
  if (range === undefined) return;
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new Error(
      `invalid byte range ${JSON.stringify(range)}: offset and length must be whole numbers ≥ 0`,
    );
  }
}

/** Reads a stream fully into one Buffer. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

export function emptyStream(): Readable {
  return Readable.from([], { objectMode: false });
}

/**
 * `src` seen through a PassThrough whose errors have gone through `map` (so a provider's raw socket error
 * mid-body reaches the caller as a TargetError). Destroying the returned stream destroys `src`.
 */
export function mapStreamErrors(src: Readable, map: (err: unknown) => Error): Readable {
  const out = new PassThrough();
  src.once('error', (err) => out.destroy(map(err)));
  out.once('close', () => {
    if (!src.destroyed) src.destroy();
  });
  src.pipe(out);
  return out;
}

/**
 * Waits until `src` has data, has ended or has failed, without consuming anything; resolves with `src`, or
 * rejects with its error. For lazy streams (GCS starts its request on the first read) whose "not found"
 * must reject the promise of `get`, not surface later as a stream error.
 */
export function whenReadable(src: Readable): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      src.off('readable', onReadable);
      src.off('error', onError);
    };
    const onReadable = () => {
      cleanup();
      resolve(src);
    };
    const onError = (err: unknown) => {
      cleanup();
      reject(err);
    };
    src.on('readable', onReadable);
    src.once('error', onError);
  });
}

/**
 * Lets a body stream fail before the store has started to read it (while a directory or an upload is being
 * prepared) without an unhandled 'error' event taking the process down. Nothing is lost: the stream stays
 * errored, and the store's reader (for await, pipeline) throws that error.
 */
export function deferErrors(stream: Readable): void {
  // Even when it has listeners already: pipe()'s own (a decorator's counter is piped into) removes itself
  // on the first error and re-emits it, which would be uncaught without this one.
  if (!stream.listeners('error').includes(keepForReader)) stream.on('error', keepForReader);
}

function keepForReader(this: Readable): void {
  // The error stays on `this.errored`; the reader reports it.
}

/**
 * Bytes [skip, skip+take) of `src`, then the end (and `src` is destroyed: the rest is not downloaded). For
 * servers that ignore or widen a Range request, which HTTP allows (200 with the whole body).
 */
export function sliceStream(src: Readable, skip: number, take: number): Readable {
  async function* slice(): AsyncGenerator<Buffer> {
    let toSkip = skip;
    let left = take;
    try {
      for await (const chunk of src) {
        let c = chunk as Buffer;
        if (toSkip > 0) {
          if (c.length <= toSkip) {
            toSkip -= c.length;
            continue;
          }
          c = c.subarray(toSkip);
          toSkip = 0;
        }
        if (c.length >= left) {
          if (left > 0) yield c.subarray(0, left);
          return;
        }
        left -= c.length;
        yield c;
      }
    } finally {
      if (!src.destroyed) src.destroy();
    }
  }
  return Readable.from(slice(), { objectMode: false });
}

/** Counts the bytes flowing through. */
export class ByteCounter extends Transform {
  bytes = 0;
  constructor(private readonly onBytes?: (n: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
}

/**
 * Destroys `stream` with `error()` when `signal` aborts (at once if it already has), for as long as the
 * stream is open: a get stream stops reading, a put body stops being consumed.
 */
export function destroyOnAbort(
  stream: Readable | Writable,
  signal: AbortSignal | undefined,
  error: () => Error,
): void {
  if (!signal) return;
  if (signal.aborted) {
    stream.destroy(error());
    return;
  }
  const onAbort = () => stream.destroy(error());
  signal.addEventListener('abort', onAbort, { once: true });
  stream.once('close', () => signal.removeEventListener('abort', onAbort));
}

/**
 * `promise`, or a rejection with `error()` as soon as `signal` aborts, for requests a provider library cannot
 * cancel (their answer, when it comes, is dropped).
 */
export function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal | undefined,
  error: () => Error,
): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(error());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      promise.catch(() => undefined);
      reject(error());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
