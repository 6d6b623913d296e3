import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { IntegrityError, KeyError } from '../errors.js';
import { releaseNow } from '../util/release.js';

/**
 * The age-encryption package (pure JS) is loaded only when needed: for post-quantum (ML-KEM hybrid) recipients
 * and identities, and for headers the native X25519 path below does not handle. Loading it costs start-up time.
 */
type AgePackage = typeof import('age-encryption');
let agePackage: Promise<AgePackage> | undefined;
function loadAge(): Promise<AgePackage> {
  return (agePackage ??= import('age-encryption'));
}

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
 * it with its fresh random file key. X25519-only recipient lists are wrapped with node:crypto (nativeHeader);
 * a list with a post-quantum recipient goes to the age-encryption package, whose wrapping we cannot do
 * natively: a capturing pseudo-recipient lets us learn the key it generated, so that we can encrypt the
 * payload ourselves.
 */
export async function createHeader(recipients: readonly string[]): Promise<AgeHeader> {
  if (recipients.length === 0) throw new KeyError('no age recipient to encrypt to');
  const x25519 = recipients.map(x25519Recipient);
  if (x25519.every((r) => r !== undefined)) return nativeHeader(x25519 as Buffer[]);
  const age = await loadAge();
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

// --- Native X25519 recipients (age v1 spec, "X25519 recipient stanza" and "Header") -------------------------

const X25519_INFO = 'age-encryption.org/v1/X25519';
const FILE_KEY_SIZE = 16;
/** DER prefixes around a raw 32-byte X25519 key (RFC 8410): SubjectPublicKeyInfo and PKCS #8. */
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const ZERO_NONCE = Buffer.alloc(12);

function x25519PublicKey(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });
}
function x25519PrivateKey(raw: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
}
function rawPublic(key: KeyObject): Buffer {
  return Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
}

/** The 32-byte public key of an `age1…` X25519 recipient; undefined for any other kind (age1pq1…). */
export function x25519Recipient(recipient: string): Buffer | undefined {
  if (!recipient.startsWith('age1') || recipient.startsWith('age1pq1')) return undefined;
  const d = bech32Decode(recipient);
  if (!d || d.hrp !== 'age' || d.bytes.length !== 32) return undefined;
  return d.bytes;
}

/** The 32-byte scalar of an `AGE-SECRET-KEY-1…` X25519 identity; undefined for any other kind. */
function x25519Identity(identity: string): Buffer | undefined {
  if (!identity.startsWith('AGE-SECRET-KEY-1')) return undefined;
  const d = bech32Decode(identity);
  if (!d || d.hrp !== 'age-secret-key-' || d.bytes.length !== 32) return undefined;
  return d.bytes;
}

/** The `age1…` recipient of an identity string: natively for X25519, by the package for PQ identities. */
export async function identityToRecipient(identity: string): Promise<string> {
  const scalar = x25519Identity(identity);
  if (!scalar) return (await loadAge()).identityToRecipient(identity);
  return bech32Encode('age', rawPublic(createPublicKey(x25519PrivateKey(scalar))));
}

/** A new X25519 identity string (AGE-SECRET-KEY-1…). */
export function generateX25519Identity(): string {
  return bech32Encode('age-secret-key-', randomBytes(32)).toUpperCase();
}

function wrapKey(shared: Buffer, share: Buffer, recipient: Buffer): Buffer {
  if (shared.every((b) => b === 0)) throw new KeyError('X25519 shared secret is zero (bad recipient)');
  return Buffer.from(hkdfSync('sha256', shared, Buffer.concat([share, recipient]), X25519_INFO, 32));
}

function headerMac(fileKey: Buffer, upToDashes: Buffer): Buffer {
  const key = Buffer.from(hkdfSync('sha256', fileKey, Buffer.alloc(0), 'header', 32));
  return createHmac('sha256', key).update(upToDashes).digest();
}

const b64 = (b: Buffer): string => b.toString('base64').replace(/=+$/, '');

function nativeHeader(recipients: Buffer[]): AgeHeader {
  const fileKey = randomBytes(FILE_KEY_SIZE);
  let text = 'age-encryption.org/v1\n';
  for (const r of recipients) {
    const eph = generateKeyPairSync('x25519');
    const share = rawPublic(eph.publicKey);
    const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: x25519PublicKey(r) });
    const c = createCipheriv('chacha20-poly1305', wrapKey(shared, share, r), ZERO_NONCE, {
      authTagLength: TAG_SIZE,
    });
    const body = Buffer.concat([c.update(fileKey), c.final(), c.getAuthTag()]);
    // A 32-byte body is 43 base64 characters: one line shorter than 64 columns, as the spec wants.
    text += `-> X25519 ${b64(share)}\n${b64(body)}\n`;
  }
  text += '---';
  const mac = headerMac(fileKey, Buffer.from(text, 'latin1'));
  return { header: Buffer.from(`${text} ${b64(mac)}\n`, 'latin1'), fileKey };
}

interface Stanza {
  args: string[];
  body: Buffer;
}

/** Canonical unpadded base64 (the spec's encoding) or undefined. */
function unb64(s: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*$/.test(s) || s.length % 4 === 1) return undefined;
  const b = Buffer.from(s, 'base64');
  return b64(b) === s ? b : undefined;
}

/**
 * Parses a header's stanzas as the spec lays them out; undefined when the header is not one this parser
 * takes (the package then parses it and gives its own error).
 */
function parseHeader(header: Buffer): { stanzas: Stanza[]; macd: Buffer; mac: Buffer } | undefined {
  const text = header.toString('latin1');
  const lines = text.split('\n');
  if (lines[0] !== 'age-encryption.org/v1' || lines.at(-1) !== '') return undefined;
  const stanzas: Stanza[] = [];
  let i = 1;
  while (i < lines.length - 1 && lines[i]!.startsWith('-> ')) {
    const args = lines[i]!.slice(3).split(' ');
    if (args.some((a) => a.length === 0 || !/^[\x21-\x7e]+$/.test(a))) return undefined;
    i++;
    const parts: Buffer[] = [];
    for (;;) {
      const line = lines[i++];
      if (line === undefined || line.length > 64) return undefined;
      const b = unb64(line);
      if (!b) return undefined;
      parts.push(b);
      if (line.length < 64) break;
    }
    stanzas.push({ args, body: Buffer.concat(parts) });
  }
  const macLine = lines[i];
  if (i !== lines.length - 2 || !macLine?.startsWith('--- ')) return undefined;
  const mac = unb64(macLine.slice(4));
  if (!mac || mac.length !== 32 || stanzas.length === 0) return undefined;
  return { stanzas, macd: header.subarray(0, header.length - macLine.length + 2), mac };
}

/** An X25519 identity, with its public key (the salt needs it). */
interface NativeIdentity {
  key: KeyObject;
  pub: Buffer;
}

/**
 * Unwraps the file key with X25519 identities and checks the header MAC; undefined when no X25519 stanza
 * opens with them (then the package tries its identities and reports).
 */
function nativeFileKey(ids: NativeIdentity[], header: Buffer): Buffer | undefined {
  const parsed = parseHeader(header);
  if (!parsed) return undefined;
  for (const s of parsed.stanzas) {
    if (s.args[0] !== 'X25519') continue;
    const share = s.args.length === 2 ? unb64(s.args[1]!) : undefined;
    if (!share || share.length !== 32 || s.body.length !== FILE_KEY_SIZE + TAG_SIZE) {
      throw new IntegrityError('invalid age header: invalid X25519 stanza');
    }
    const shareKey = x25519PublicKey(share);
    for (const id of ids) {
      const shared = diffieHellman({ privateKey: id.key, publicKey: shareKey });
      if (shared.every((b) => b === 0))
        throw new IntegrityError('invalid age header: X25519 low-order share');
      const d = createDecipheriv('chacha20-poly1305', wrapKey(shared, share, id.pub), ZERO_NONCE, {
        authTagLength: TAG_SIZE,
      });
      d.setAuthTag(s.body.subarray(FILE_KEY_SIZE));
      const fileKey = d.update(s.body.subarray(0, FILE_KEY_SIZE));
      try {
        d.final();
      } catch {
        continue; // not this identity's stanza
      }
      if (!timingSafeEqual(headerMac(fileKey, parsed.macd), parsed.mac)) {
        throw new IntegrityError('invalid age header: bad header MAC');
      }
      return fileKey;
    }
  }
  return undefined;
}

// --- Bech32 (BIP 173) for age's key strings, without the 90-character limit ---------------------------------

const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';

function polymod(values: number[]): number {
  const GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GEN[i]!;
  }
  return chk;
}

function hrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >>> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

function convertBits(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | undefined {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const max = (1 << to) - 1;
  for (let i = 0; i < data.length; i++) {
    acc = (acc << from) | data[i]!;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >>> bits) & max);
    }
    acc &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & max);
  } else if (bits >= from || ((acc << (to - bits)) & max) !== 0) return undefined;
  return out;
}

function bech32Encode(hrp: string, bytes: Buffer): string {
  const words = convertBits(bytes, 8, 5, true)!;
  const values = [...hrpExpand(hrp), ...words, 0, 0, 0, 0, 0, 0];
  const mod = polymod(values) ^ 1;
  let s = `${hrp}1`;
  for (const w of words) s += BECH32[w];
  for (let i = 0; i < 6; i++) s += BECH32[(mod >>> (5 * (5 - i))) & 31];
  return s;
}

/** Decodes a bech32 string (all lower or all upper case); undefined when it is not valid bech32. */
function bech32Decode(str: string): { hrp: string; bytes: Buffer } | undefined {
  if (str !== str.toLowerCase() && str !== str.toUpperCase()) return undefined;
  const s = str.toLowerCase();
  const sep = s.lastIndexOf('1');
  if (sep < 1 || sep + 7 > s.length) return undefined;
  const hrp = s.slice(0, sep);
  const words: number[] = [];
  for (const ch of s.slice(sep + 1)) {
    const v = BECH32.indexOf(ch);
    if (v < 0) return undefined;
    words.push(v);
  }
  if (polymod([...hrpExpand(hrp), ...words]) !== 1) return undefined;
  const bytes = convertBits(words.slice(0, -6), 5, 8, false);
  return bytes ? { hrp, bytes: Buffer.from(bytes) } : undefined;
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

export function openSegment(key: Buffer | KeyObject, counter: number, last: boolean, sealed: Buffer): Buffer {
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

  /**
   * Whether `b`, one of the buffers push() or finish() returned, is the header or the nonce (kept by this
   * encryptor). Every other one is a fresh ciphertext buffer that the caller owns and may release once written.
   */
  isPreamble(b: Buffer): boolean {
    return b === this.header || b === this.nonce;
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

/**
 * The identities that can open files: age identity strings (AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1…).
 * X25519 stanzas are opened with node:crypto; anything else (a post-quantum identity, a header the native
 * parser does not take, no matching stanza) goes to the age-encryption package, loaded then.
 */
export class Identities {
  private readonly native: NativeIdentity[] = [];
  private decrypter?: Promise<InstanceType<AgePackage['Decrypter']>>;
  constructor(readonly identities: readonly string[]) {
    if (identities.length === 0) throw new KeyError('no age identity given');
    for (const i of identities) {
      if (i.startsWith('AGE-SECRET-KEY-PQ-1')) continue; // checked by the package when it loads
      const scalar = x25519Identity(i);
      if (!scalar) throw new KeyError('invalid age identity (not an AGE-SECRET-KEY-1… X25519 identity)');
      const key = x25519PrivateKey(scalar);
      this.native.push({ key, pub: rawPublic(createPublicKey(key)) });
    }
  }

  private packageDecrypter(): Promise<InstanceType<AgePackage['Decrypter']>> {
    return (this.decrypter ??= loadAge().then((age) => {
      const d = new age.Decrypter();
      for (const i of this.identities) d.addIdentity(i);
      return d;
    }));
  }

  /** Unwraps the file key from a header; throws KeyError when none of the identities matches. */
  async fileKey(header: Buffer): Promise<Buffer> {
    if (this.native.length > 0) {
      const key = nativeFileKey(this.native, header);
      if (key) return key;
    }
    try {
      return Buffer.from(await (await this.packageDecrypter()).decryptHeader(header));
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
  // One KeyObject for the whole range: a raw key buffer is converted again for every 64 KiB segment.
  const key = createSecretKey(opened.key);
  while (off < cipher.length) {
    const end = Math.min(cipher.length, off + CIPHER_SEGMENT_SIZE);
    const isLast = end === cipher.length && reachesEnd;
    if (!isLast && end - off < CIPHER_SEGMENT_SIZE) throw new IntegrityError('age payload truncated');
    const seg = openSegment(key, counter, isLast, cipher.subarray(off, end));
    if (isLast && seg.length === 0 && counter !== 0)
      throw new IntegrityError('age file ends with an empty segment');
    parts.push(seg);
    counter++;
    off = end;
  }
  if (parts.length === 0 && reachesEnd) throw new IntegrityError('age payload truncated');
  if (parts.length === 1) return parts[0]!;
  const whole = Buffer.concat(parts);
  releaseNow(parts); // copied: the segments' memory goes back now
  return whole;
}

/** Decrypts a whole age file held in memory. */
export async function decrypt(ids: Identities, file: Buffer): Promise<Buffer> {
  const opened = await openAge(ids, file);
  return openSegments(opened, file.subarray(opened.payloadOffset), 0, true);
}
