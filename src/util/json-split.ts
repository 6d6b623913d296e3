/**
 * A small byte-level JSON scanner, so that big answers are never decoded or parsed whole:
 * - {@link splitArrayMember} splits a streamed `{"results":[…]}` into the raw bytes of each element of the
 *   array, as they arrive (one element in memory at a time, whatever the size of the answer);
 * - {@link objectMembers} / {@link arrayItems} find the raw byte ranges inside one element, so that a
 *   document body can be stored exactly as the server sent it.
 * Only ASCII bytes are structural in JSON, and UTF-8 continuation bytes are never ASCII: cutting at these
 * bytes never splits a character.
 */
import { releaseNow } from './release.js';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

export class JsonShapeError extends Error {}

function isWs(b: number | undefined): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function skipWs(buf: Uint8Array, i: number, end = buf.length): number {
  while (i < end && isWs(buf[i])) i++;
  return i;
}

/** The index just past the string that starts at `buf[i] === '"'`, or -1 when it does not end before `end`. */
function skipString(buf: Buffer, i: number, end = buf.length): number {
  let j = i + 1;
  for (;;) {
    const q = buf.indexOf(QUOTE, j);
    if (q < 0 || q >= end) return -1;
    let k = q - 1;
    while (k >= j && buf[k] === BACKSLASH) k--;
    if ((q - 1 - k) % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/** The string `buf[i, k)` (quotes included) decodes to: directly when it has no escape (most keys). */
function decodeKey(buf: Buffer, i: number, k: number): string {
  for (let j = i + 1; j < k - 1; j++)
    if (buf[j] === BACKSLASH) return JSON.parse(buf.toString('utf8', i, k)) as string;
  return buf.toString('utf8', i + 1, k - 1);
}

/** The index just past the JSON value starting at (or after whitespace at) `i`; -1 when incomplete. */
export function skipValue(buf: Buffer, i: number, end = buf.length): number {
  i = skipWs(buf, i, end);
  if (i >= end) return -1;
  const b = buf[i];
  if (b === QUOTE) return skipString(buf, i, end);
  if (b === OPEN_OBJ || b === OPEN_ARR) {
    let depth = 0;
    while (i < end) {
      const c = buf[i]!;
      if (c === QUOTE) {
        i = skipString(buf, i, end);
        if (i < 0) return -1;
        continue;
      }
      if (c === OPEN_OBJ || c === OPEN_ARR) depth++;
      else if (c === CLOSE_OBJ || c === CLOSE_ARR) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return -1;
  }
  // number, true, false, null
  while (i < end) {
    const c = buf[i];
    if (c === COMMA || c === CLOSE_OBJ || c === CLOSE_ARR || isWs(c)) return i;
    i++;
  }
  return -1;
}

export interface Range {
  start: number;
  end: number;
}

/**
 * Walks the JSON object at `start` (after whitespace) in one pass: `visit(key, valueStart)` is called for each
 * member and returns the index just past the value when it consumed the value itself (descending into it),
 * or -1 to have it skipped. Returns the index just past the object. Unlike {@link objectMembers}, a value
 * that is descended into is scanned once, not once per level.
 */
export function walkObject(
  buf: Buffer,
  start: number,
  end: number,
  visit: (key: string, valueStart: number) => number,
): number {
  let i = skipWs(buf, start, end);
  if (buf[i] !== OPEN_OBJ) throw new JsonShapeError('expected an object');
  i = skipWs(buf, i + 1, end);
  if (buf[i] === CLOSE_OBJ) return i + 1;
  for (;;) {
    if (buf[i] !== QUOTE) throw new JsonShapeError('expected a member name');
    const k = skipString(buf, i, end);
    if (k < 0) throw new JsonShapeError('truncated member name');
    const key = decodeKey(buf, i, k);
    i = skipWs(buf, k, end);
    if (buf[i] !== COLON) throw new JsonShapeError('expected ":"');
    const vs = skipWs(buf, i + 1, end);
    let ve = visit(key, vs);
    if (ve < 0) ve = skipValue(buf, vs, end);
    if (ve < 0) throw new JsonShapeError(`truncated value of "${key}"`);
    i = skipWs(buf, ve, end);
    if (buf[i] === COMMA) {
      i = skipWs(buf, i + 1, end);
      continue;
    }
    if (buf[i] === CLOSE_OBJ) return i + 1;
    throw new JsonShapeError('expected "," or "}"');
  }
}

/** {@link walkObject} for an array: `visit(itemStart)` returns the index past the item, or -1 to skip it. */
export function walkArray(
  buf: Buffer,
  start: number,
  end: number,
  visit: (itemStart: number) => number,
): number {
  let i = skipWs(buf, start, end);
  if (buf[i] !== OPEN_ARR) throw new JsonShapeError('expected an array');
  i = skipWs(buf, i + 1, end);
  if (buf[i] === CLOSE_ARR) return i + 1;
  for (;;) {
    let ve = visit(i);
    if (ve < 0) ve = skipValue(buf, i, end);
    if (ve < 0) throw new JsonShapeError('truncated array item');
    i = skipWs(buf, ve, end);
    if (buf[i] === COMMA) {
      i = skipWs(buf, i + 1, end);
      continue;
    }
    if (buf[i] === CLOSE_ARR) return i + 1;
    throw new JsonShapeError('expected "," or "]"');
  }
}

/** The members of the JSON object in `buf[start, end)`: key → byte range of its raw value. */
export function objectMembers(buf: Buffer, start = 0, end = buf.length): Map<string, Range> {
  const out = new Map<string, Range>();
  walkObject(buf, start, end, (key, vs) => {
    const ve = skipValue(buf, vs, end);
    if (ve < 0) throw new JsonShapeError(`truncated value of "${key}"`);
    out.set(key, { start: vs, end: ve });
    return ve;
  });
  return out;
}

/** The items of the JSON array in `buf[start, end)`, as byte ranges. */
export function arrayItems(buf: Buffer, start = 0, end = buf.length): Range[] {
  const out: Range[] = [];
  walkArray(buf, start, end, (i) => {
    const ve = skipValue(buf, i, end);
    if (ve < 0) throw new JsonShapeError('truncated array item');
    out.push({ start: i, end: ve });
    return ve;
  });
  return out;
}

function toBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * Splits a streamed JSON object into the raw bytes of each item of its array member `member` (objects or
 * arrays), in order, as they arrive. Members before `member` must be small (they are buffered); the rest of
 * the object after the array is read and checked loosely. Throws JsonShapeError on anything else.
 */
export async function* splitArrayMember(
  src: AsyncIterable<Uint8Array>,
  member: string,
  opts: { owned?: boolean } = {},
): AsyncGenerator<Buffer> {
  const it = src[Symbol.asyncIterator]();
  try {
    yield* splitFrom(it, member, opts.owned ? releaseNow : () => undefined);
  } finally {
    // A consumer that stops early (an error) releases the source (the HTTP answer) at once.
    await it.return?.();
  }
}

/**
 * `done(chunks)` is told of source chunks no longer used (every item is a copy): with `owned` (the source's
 * chunks are this splitter's alone, as an HTTP answer's are), their memory goes back at once instead of at
 * the next GC: an answer's 64 KiB chunks otherwise piled up to V8's external-memory limit (45 MB of a
 * 100k-document backup's main thread).
 */
async function* splitFrom(
  it: AsyncIterator<Uint8Array>,
  member: string,
  done: (chunks: Buffer[]) => void,
): AsyncGenerator<Buffer> {
  let buf = Buffer.alloc(0);
  let pos = 0;
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (ended) return false;
    const r = await it.next();
    if (r.done) {
      ended = true;
      return false;
    }
    const piece = toBuffer(r.value);
    buf = Buffer.concat([buf.subarray(pos), piece]);
    done([piece]);
    pos = 0;
    return true;
  };
  /** Waits until `fn` can answer from the buffered bytes (it returns -1 while it needs more). */
  const need = async (fn: () => number, what: string): Promise<number> => {
    for (;;) {
      const r = fn();
      if (r >= 0) return r;
      if (!(await more())) throw new JsonShapeError(`truncated ${what}`);
    }
  };
  const nextByte = () => need(() => (skipWs(buf, pos) < buf.length ? skipWs(buf, pos) : -1), 'answer');

  // The prefix: '{' then members until `member`.
  pos = await nextByte().catch(() => {
    throw new JsonShapeError('empty answer');
  });
  if (buf[pos] !== OPEN_OBJ) throw new JsonShapeError('not a JSON object');
  pos++;
  for (;;) {
    pos = await nextByte();
    if (buf[pos] !== QUOTE) throw new JsonShapeError(`no "${member}" member`);
    const k = await need(() => skipString(buf, pos), 'member name');
    const key = JSON.parse(buf.toString('utf8', pos, k)) as string;
    pos = k;
    pos = await nextByte();
    if (buf[pos] !== COLON) throw new JsonShapeError('expected ":"');
    pos++;
    pos = await nextByte();
    if (key === member) {
      if (buf[pos] !== OPEN_ARR) throw new JsonShapeError(`"${member}" is not an array`);
      pos++;
      break;
    }
    pos = await need(() => skipValue(buf, pos), `value of "${key}"`);
    pos = await nextByte();
    if (buf[pos] !== COMMA) throw new JsonShapeError(`no "${member}" member`);
    pos++;
  }

  // The items: a resumable scan, each byte looked at once.
  let depth = 0;
  let inStr = false;
  let esc = false;
  let parts: Buffer[] = [];
  /** Earlier chunks `parts` still points into (the item being read began in them). */
  let retained: Buffer[] = [];
  let chunk: Buffer = buf.subarray(pos);
  let closed = false;
  let tail: Buffer[] = [];
  for (;;) {
    const n = chunk.length;
    let i = 0;
    let start = depth > 0 ? 0 : -1;
    while (i < n) {
      if (inStr) {
        if (esc) {
          esc = false;
          i++;
          continue;
        }
        const q = chunk.indexOf(QUOTE, i);
        const stop = q < 0 ? n : q;
        let k = stop - 1;
        while (k >= i && chunk[k] === BACKSLASH) k--;
        const odd = (stop - 1 - k) % 2 === 1;
        if (q < 0) {
          esc = odd;
          break;
        }
        i = q + 1;
        if (!odd) inStr = false;
        continue;
      }
      const b = chunk[i]!;
      if (depth === 0) {
        if (b === OPEN_OBJ || b === OPEN_ARR) {
          start = i;
          parts = [];
          depth = 1;
        } else if (b === CLOSE_ARR) {
          closed = true;
          tail = [chunk.subarray(i + 1)];
          break;
        } else if (b !== COMMA && !isWs(b)) {
          throw new JsonShapeError(`unexpected item in "${member}" (only objects and arrays are expected)`);
        }
        i++;
        continue;
      }
      if (b === QUOTE) inStr = true;
      else if (b === OPEN_OBJ || b === OPEN_ARR) depth++;
      else if (b === CLOSE_OBJ || b === CLOSE_ARR) {
        depth--;
        if (depth === 0) {
          parts.push(chunk.subarray(start, i + 1));
          // A copy in an ArrayBuffer of its own (never a slice of Node's shared pool), so that its user can
          // free it as soon as it is done with it.
          let size = 0;
          for (const p of parts) size += p.length;
          const item = Buffer.allocUnsafeSlow(size);
          size = 0;
          for (const p of parts) size += p.copy(item, size);
          parts = [];
          start = -1;
          if (retained.length) {
            done(retained);
            retained = [];
          }
          yield item;
        }
      }
      i++;
    }
    if (closed) break;
    if (depth > 0 && start >= 0) {
      parts.push(chunk.subarray(start));
      retained.push(chunk);
    } else done([chunk]);
    const r = ended ? { done: true as const, value: undefined } : await it.next();
    if (r.done) throw new JsonShapeError(`truncated "${member}" array`);
    chunk = toBuffer(r.value);
  }
  // After the array: the rest of the object (other members, '}'), read to the end and checked loosely.
  let size = 0;
  for (;;) {
    const r = await it.next();
    if (r.done) break;
    size += r.value.length;
    if (size > 1024 * 1024) throw new JsonShapeError(`unexpectedly long content after "${member}"`);
    tail.push(toBuffer(r.value));
  }
  const rest = Buffer.concat(tail).toString('utf8').trim();
  if (!rest.endsWith('}')) throw new JsonShapeError('truncated answer');
}
