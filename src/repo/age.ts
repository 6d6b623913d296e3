import {
  createCipheriv,
  createDecipheriv,
  createSecretKey,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import * as age from 'age-encryption';
import { IntegrityError, KeyError } from '../errors.js';

/**
 * age v1 files (https://age-encryption.org/v1), written so that the `age` CLI and the `age-encryption`
 * package read them, but with the payload encrypted by node:crypto (ChaCha20-Poly1305 at ~1-2 GB/s instead of
 * the package's pure-JS ~90 MB/s).
 *
 *   file    = header nonce segment*
 *   header  = the textual age header, from "age-encryption.org/v1\n" to the "--- <MAC>\n" line (made and
 *             parsed by the age-encryption package, so recipient stanzas and the MAC are exactly the spec's)
 *   nonce   = 16 random bytes
 *   key     = HKDF-SHA256(ikm = file key, salt = nonce, info = "payload"), 32 bytes
 *   segment = ChaCha20-Poly1305(key, counter(11 bytes, big endian) || last(1 byte), plaintext[i*64KiB ..])
 *             with a 16-byte tag: 65552 bytes for every segment but the last, which holds 1..65536 bytes of
 *             plaintext (0 only when the whole plaintext is empty) and has last = 0x01.
 *
 * Because segments are independent, any plaintext byte range can be decrypted from the header, the nonce and
 * the segments covering it: a restore reads one blob of a pack without reading the pack.
 */

export const SEGMENT_SIZE = 64 * 1024;
export const TAG_SIZE = 16;
export const NONCE_SIZE = 16;
export const CIPHER_SEGMENT_SIZE = SEGMENT_SIZE + TAG_SIZE;
/** A header longer than this is refused (hostile input): ours are ~200 bytes per X25519 recipient. */
export const MAX_HEADER_SIZE = 64 * 1024;

const INTRO = Buffer.from('age-encryption.org/v1\n', 'latin1');
const MAC_LINE = Buffer.from('\n--- ', 'latin1');

export interface AgeHeader {
  header: Buffer;
  fileKey: Buffer;
}

/**
 * Creates the header of a new age file for `recipients` (age1… X25519 or age1pq1… hybrid strings) and returns
 * it with its fresh random file key. The package wraps the file key; a capturing pseudo-recipient lets us
 * learn the key it generated, so that we can encrypt the payload ourselves.
 */
export async function createHeader(recipients: readonly string[]): Promise<AgeHeader> {
  if (recipients.length === 0) throw new KeyError('no age recipient to encrypt to');
  const enc = new age.Encrypter();
  for (const r of recipients) enc.addRecipient(r);
  let fileKey: Uint8Array | undefined;
  enc.addRecipient({
    wrapFileKey(k: Uint8Array) {
      fileKey = k.slice();
      return [];
    },
  });
  const empty = await enc.encrypt(new Uint8Array(0));
  if (!fileKey) throw new Error('age-encryption did not hand out a file key');
  const header = Buffer.from(empty.buffer, empty.byteOffset, headerLength(Buffer.from(empty)));
  return { header: Buffer.from(header), fileKey: Buffer.from(fileKey) };
}

/** Length of the header at the start of `buf` (through the newline after the MAC), or throws. */
export function headerLength(buf: Buffer): number {
  if (buf.length < INTRO.length || !buf.subarray(0, INTRO.length).equals(INTRO)) {
    throw new IntegrityError('not an age v1 file (bad magic)');
  }
  const limit = Math.min(buf.length, MAX_HEADER_SIZE);
  const at = buf.subarray(0, limit).indexOf(MAC_LINE);
  if (at < 0) {
    if (buf.length >= MAX_HEADER_SIZE) throw new IntegrityError('age header too long');
    throw new TruncatedHeaderError();
  }
  const end = buf.indexOf(0x0a, at + MAC_LINE.length);
  if (end < 0 || end >= limit) {
    if (buf.length >= MAX_HEADER_SIZE) throw new IntegrityError('age header too long');
    throw new TruncatedHeaderError();
  }
  return end + 1;
}

/** More bytes are needed to see the whole header. */
export class TruncatedHeaderError extends IntegrityError {
  constructor() {
    super('age header truncated');
  }
}

export function payloadKey(fileKey: Buffer, nonce: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
}

function segmentNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  // Counters stay far below 2^53; the top 3 of the 11 counter bytes stay zero.
  n.writeUIntBE(counter, 5, 6);
  n[11] = last ? 1 : 0;
  return n;
}

/** Encrypts one segment: returns its ciphertext and tag, to be written one after the other. */
export function sealSegmentParts(
  key: Buffer | KeyObject,
  counter: number,
  last: boolean,
  plain: Buffer,
): [Buffer, Buffer] {
  const c = createCipheriv('chacha20-poly1305', key, segmentNonce(counter, last), {
    authTagLength: TAG_SIZE,
  });
  const body = c.update(plain);
  c.final();
  return [body, c.getAuthTag()];
}

export function sealSegment(key: Buffer, counter: number, last: boolean, plain: Buffer): Buffer {
  return Buffer.concat(sealSegmentParts(key, counter, last, plain));
}

export function openSegment(key: Buffer, counter: number, last: boolean, sealed: Buffer): Buffer {
  if (sealed.length < TAG_SIZE) throw new IntegrityError('age segment shorter than its tag');
  const d = createDecipheriv('chacha20-poly1305', key, segmentNonce(counter, last), {
    authTagLength: TAG_SIZE,
  });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  const body = d.update(sealed.subarray(0, sealed.length - TAG_SIZE));
  try {
    d.final();
  } catch {
    throw new IntegrityError(`age segment ${counter} failed authentication`);
  }
  return body;
}

/**
 * Incremental age encryption: push plaintext, get ciphertext; the final segment is only sealed by finish()
 * (a segment can be known to be the last only when the input ends).
 */
export class AgeEncryptor {
  /** A KeyObject: createCipheriv with a raw key buffer costs a quarter more per 64 KiB segment. */
  private readonly key: KeyObject;
  private counter = 0;
  /** The segment being filled: data is copied in, so no caller buffer is kept. */
  private readonly seg = Buffer.allocUnsafe(SEGMENT_SIZE);
  private segLen = 0;
  private started = false;
  readonly nonce: Buffer;

  constructor(
    private readonly header: Buffer,
    fileKey: Buffer,
  ) {
    this.nonce = randomBytes(NONCE_SIZE);
    this.key = createSecretKey(payloadKey(fileKey, this.nonce));
  }

  /** Encrypts what can be encrypted now; the returned buffers are the next bytes of the file. */
  push(plain: Buffer): Buffer[] {
    const out: Buffer[] = [];
    if (!this.started) {
      out.push(this.header, this.nonce);
      this.started = true;
    }
    let off = 0;
    while (off < plain.length) {
      // A full segment is sealed only once more data proves it is not the last.
      if (this.segLen === SEGMENT_SIZE) {
        out.push(...sealSegmentParts(this.key, this.counter++, false, this.seg));
        this.segLen = 0;
      }
      if (this.segLen === 0 && plain.length - off > SEGMENT_SIZE) {
        // A whole segment of the input with more input after it (so not the last): sealed where it lies,
        // without the copy into the segment buffer.
        out.push(
          ...sealSegmentParts(this.key, this.counter++, false, plain.subarray(off, off + SEGMENT_SIZE)),
        );
        off += SEGMENT_SIZE;
        continue;
      }
      const n = Math.min(SEGMENT_SIZE - this.segLen, plain.length - off);
      plain.copy(this.seg, this.segLen, off, off + n);
      this.segLen += n;
      off += n;
    }
    return out;
  }

  finish(): Buffer[] {
    const out: Buffer[] = [];
    if (!this.started) {
      out.push(this.header, this.nonce);
      this.started = true;
    }
    out.push(...sealSegmentParts(this.key, this.counter++, true, this.seg.subarray(0, this.segLen)));
    this.segLen = 0;
    return out;
  }
}

/** Encrypts a whole buffer into one age file. */
export async function encrypt(recipients: readonly string[], plain: Buffer): Promise<Buffer> {
  const { header, fileKey } = await createHeader(recipients);
  const enc = new AgeEncryptor(header, fileKey);
  return Buffer.concat([...enc.push(plain), ...enc.finish()]);
}

/** The identities that can open files: age identity strings (AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1…). */
export class Identities {
  private readonly decrypter = new age.Decrypter();
  constructor(readonly identities: readonly string[]) {
    if (identities.length === 0) throw new KeyError('no age identity given');
    for (const i of identities) this.decrypter.addIdentity(i);
  }

  /** Unwraps the file key from a header; throws KeyError when none of the identities matches. */
  async fileKey(header: Buffer): Promise<Buffer> {
    try {
      return Buffer.from(await this.decrypter.decryptHeader(header));
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (/no identity matched/i.test(msg)) {
        throw new KeyError('none of the given identities can decrypt this object (wrong identity?)');
      }
      throw new IntegrityError(`invalid age header: ${msg}`);
    }
  }
}

/** Opened age file: what is needed to decrypt any plaintext range of it. */
export interface OpenedAge {
  /** Byte offset of the first segment in the file. */
  payloadOffset: number;
  key: Buffer;
}

/** Parses the header and nonce at the start of a file (`head` must hold at least header + 16 bytes). */
export async function openAge(ids: Identities, head: Buffer): Promise<OpenedAge> {
  const hl = headerLength(head);
  if (head.length < hl + NONCE_SIZE) throw new TruncatedHeaderError();
  const fileKey = await ids.fileKey(head.subarray(0, hl));
  return { payloadOffset: hl + NONCE_SIZE, key: payloadKey(fileKey, head.subarray(hl, hl + NONCE_SIZE)) };
}

/** Plaintext size of an age file of `fileSize` bytes whose payload starts at `payloadOffset`. */
export function plaintextSize(fileSize: number, payloadOffset: number): number {
  const body = fileSize - payloadOffset;
  if (body < TAG_SIZE) throw new IntegrityError('age payload truncated');
  const full = Math.floor(body / CIPHER_SEGMENT_SIZE);
  const rest = body - full * CIPHER_SEGMENT_SIZE;
  if (rest === 0) return full * SEGMENT_SIZE;
  if (rest < TAG_SIZE + 1 && !(full === 0 && rest === TAG_SIZE))
    throw new IntegrityError('age payload truncated');
  return full * SEGMENT_SIZE + rest - TAG_SIZE;
}

/**
 * Which ciphertext bytes hold plaintext [offset, offset+length) — a range request — for a file of
 * `fileSize` bytes.
 */
export function cipherRange(
  opened: OpenedAge,
  fileSize: number,
  offset: number,
  length: number,
): { start: number; end: number; firstSegment: number } {
  const first = Math.floor(offset / SEGMENT_SIZE);
  const lastSeg = Math.floor((offset + Math.max(length, 1) - 1) / SEGMENT_SIZE);
  const start = opened.payloadOffset + first * CIPHER_SEGMENT_SIZE;
  const end = Math.min(fileSize, opened.payloadOffset + (lastSeg + 1) * CIPHER_SEGMENT_SIZE);
  return { start, end, firstSegment: first };
}

/**
 * Decrypts ciphertext segments starting with segment `firstSegment`; `reachesEnd` says the bytes run to the end
 * of the file (so the last segment carries the last flag). Returns the plaintext of those segments.
 */
export function openSegments(
  opened: OpenedAge,
  cipher: Buffer,
  firstSegment: number,
  reachesEnd: boolean,
): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  let counter = firstSegment;
  while (off < cipher.length) {
    const end = Math.min(cipher.length, off + CIPHER_SEGMENT_SIZE);
    const isLast = end === cipher.length && reachesEnd;
    if (!isLast && end - off < CIPHER_SEGMENT_SIZE) throw new IntegrityError('age payload truncated');
    const seg = openSegment(opened.key, counter, isLast, cipher.subarray(off, end));
    if (isLast && seg.length === 0 && counter !== 0)
      throw new IntegrityError('age file ends with an empty segment');
    parts.push(seg);
    counter++;
    off = end;
  }
  if (parts.length === 0 && reachesEnd) throw new IntegrityError('age payload truncated');
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/** Decrypts a whole age file held in memory. */
export async function decrypt(ids: Identities, file: Buffer): Promise<Buffer> {
  const opened = await openAge(ids, file);
  return openSegments(opened, file.subarray(opened.payloadOffset), 0, true);
}
