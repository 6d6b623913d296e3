/**
 * The one rule for the names a snapshot can hold (docs/FORMAT.md §12.2, "Names"): the paths of a tarball
 * listing. Walkers (directory and S3) apply it to every name before it is stored; every reader of a listing
 * applies it again before the name touches a file system or an archive, and the restore destination
 * (restore/safe-path.ts) uses the same function. So a name is either refused when it is backed up (and
 * reported), or it restores; a name refused when read (written by an older version) is reported and
 * skipped, and never stops the other entries.
 *
 * A name is a relative, "/"-separated path of valid UTF-8 (any character but the control characters, Unicode
 * category Cc: U+0000–U+001F, U+007F–U+009F), at most 4096 bytes, each segment non-empty, neither "." nor
 * "..", at most 255 bytes, and not of the form of a restore's temporary file (".NAME.rbtmp",
 * ".rbtmp-<40 hex>"). A backslash, spaces, quotes and any other valid UTF-8 are ordinary characters.
 */

/** The longest name, in UTF-8 bytes (PATH_MAX on Linux). */
export const MAX_NAME_BYTES = 4096;
/** The longest segment of a name, in UTF-8 bytes (NAME_MAX on Linux). */
export const MAX_SEGMENT_BYTES = 255;

// eslint-disable-next-line no-control-regex -- the control characters are what it finds
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const PRINTABLE_ASCII = /^[\x20-\x7e]+$/;
/** Names a restore gives its temporary files (restore/safe-path.ts tempName). */
const TEMPORARY = /^\..+\.rbtmp$|^\.rbtmp-[0-9a-f]{40}$/;

/** Why `name` cannot be held by a snapshot, or undefined when it can. */
export function nameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'is not a string';
  if (name.length === 0) return 'is empty';
  // Printable ASCII (almost every registry name): no surrogate, NUL or control character can be in it, and
  // its UTF-8 length is its length; the checks for those are skipped (every name of a listing is checked on
  // every read: this is per file).
  const ascii = PRINTABLE_ASCII.test(name);
  if (!ascii) {
    if (LONE_SURROGATE.test(name)) return 'is not valid UTF-8';
    if (name.includes('\0')) return 'contains a NUL byte';
    if (CONTROL.test(name)) return 'contains a control character';
  }
  const bytes = (s: string) => (ascii ? s.length : Buffer.byteLength(s));
  if (name.startsWith('/')) return 'is absolute';
  if (bytes(name) > MAX_NAME_BYTES) return `is longer than ${MAX_NAME_BYTES} bytes`;
  for (const seg of name.split('/')) {
    if (seg === '') return 'has an empty segment';
    if (seg === '.' || seg === '..') return `has a "${seg}" segment`;
    if (bytes(seg) > MAX_SEGMENT_BYTES) return `has a segment longer than ${MAX_SEGMENT_BYTES} bytes`;
    if (TEMPORARY.test(seg)) return `has a segment named like a restore's temporary file (${showName(seg)})`;
  }
  return undefined;
}

/**
 * A file name as the file system gave it (bytes) as a string, or why it cannot be one: bytes that are not
 * valid UTF-8 have no faithful string form (Node would replace them with U+FFFD, naming another file).
 */
export function decodeName(bytes: Uint8Array): { name: string } | { problem: string } {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const name = b.toString('utf8');
  if (!Buffer.from(name, 'utf8').equals(b)) return { problem: 'is not valid UTF-8' };
  return { name };
}

/** An error a listing's entry check throws for an entry whose name the rule refuses (see readListing). */
export class RefusedName extends Error {
  constructor(
    /** The name as the listing holds it (may be anything: show it with showName). */
    readonly raw: unknown,
    /** What is wrong with it (nameProblem). */
    readonly reason: string,
  ) {
    super(`name ${showName(raw)} refused: it ${reason}`);
    this.name = 'RefusedName';
  }
}

/** Throws RefusedName unless the rule accepts `name`. */
export function checkName(name: unknown): string {
  const problem = nameProblem(name);
  if (problem !== undefined) throw new RefusedName(name, problem);
  return name as string;
}

const SHORT: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '"': '\\"', '\\': '\\\\' };

/**
 * A name for messages and logs, whatever it holds: in double quotes, with `"` and `\` escaped, control
 * characters and lone surrogates as \uXXXX, and bytes that are not UTF-8 as \xHH. Safe to print on a terminal.
 */
export function showName(name: unknown): string {
  if (name instanceof Uint8Array) return `"${showBytes(name)}"`;
  if (typeof name !== 'string') return name === undefined ? '(no name)' : `(not a name: ${typeof name})`;
  return `"${escapeString(name)}"`;
}

function escapeString(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ch = s[i]!;
    if (SHORT[ch]) out += SHORT[ch];
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && isLow(s.charCodeAt(i + 1))) {
      out += s.slice(i, i + 2);
      i++;
    } else if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || (c >= 0xd800 && c <= 0xdfff))
      out += `\\u${c.toString(16).padStart(4, '0')}`;
    else out += ch;
  }
  return out;
}

function isLow(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** Bytes as text: each valid UTF-8 sequence as its (escaped) character, every other byte as \xHH. */
function showBytes(b: Uint8Array): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const n = sequenceLength(b, i);
    if (n === 0) {
      out += `\\x${b[i]!.toString(16).padStart(2, '0')}`;
      i++;
      continue;
    }
    out += escapeString(Buffer.from(b.subarray(i, i + n)).toString('utf8'));
    i += n;
  }
  return out;
}

/** The length of the valid UTF-8 sequence at `i` (RFC 3629: no overlong forms, no surrogates), or 0. */
function sequenceLength(b: Uint8Array, i: number): number {
  const b0 = b[i]!;
  if (b0 < 0x80) return 1;
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) n = 2;
  else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    if (b0 === 0xe0) lo = 0xa0;
    if (b0 === 0xed) hi = 0x9f;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    if (b0 === 0xf0) lo = 0x90;
    if (b0 === 0xf4) hi = 0x8f;
  } else return 0;
  if (i + n > b.length) return 0;
  const b1 = b[i + 1]!;
  if (b1 < lo || b1 > hi) return 0;
  for (let k = 2; k < n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return 0;
  return n;
}
