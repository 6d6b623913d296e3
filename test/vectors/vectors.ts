import { fileURLToPath } from 'node:url';

/**
 * The test vectors of docs/FORMAT.md §20: where they live, what `expected.json` records about them, and the
 * worked example (FORMAT §19) rendered from those values. Shared by the script that makes the vectors
 * (make.ts) and the test that reads them back (test/repo/vectors.test.ts).
 */

/** The source tree's test/vectors directory (this file runs from dist/test/vectors/). */
export const VECTORS_DIR = fileURLToPath(new URL('../../../test/vectors/', import.meta.url));
export const FORMAT_MD = fileURLToPath(new URL('../../../docs/FORMAT.md', import.meta.url));
/** The repository's objects, as a filesystem target holds them. */
export const REPO_DIR = `${VECTORS_DIR}repo`;
export const KEYS_DIR = `${VECTORS_DIR}keys`;
export const EXPECTED_FILE = `${VECTORS_DIR}expected.json`;

/** The lines of docs/FORMAT.md between these markers are written by make.ts from expected.json. */
export const BEGIN_MARK =
  '<!-- test-vectors:begin (written by test/vectors/make.ts; do not edit by hand) -->';
export const END_MARK = '<!-- test-vectors:end -->';

export interface ExpectedEntry {
  id: string;
  type: number;
  compression: number;
  offset: number;
  length: number;
  rawLength: number;
}

export interface ExpectedPack {
  key: string;
  id: string;
  type: number;
  /** The age file: its size, SHA-256 and textual header. */
  size: number;
  sha256: string;
  ageHeader: string;
  /** The decrypted pack: blobs, entries, count, "RBPACK01". */
  plaintextHex: string;
  entries: ExpectedEntry[];
}

export interface ExpectedSigned {
  key: string;
  /** SHA-256 of the object as stored (for index objects and snapshots: the hash in the name). */
  sha256: string;
  size: number;
  /** magic[8] | compression u8 | rawLength u32, hex. */
  headHex: string;
  signatureHex: string;
}

export interface Expected {
  generatedBy: string;
  keys: {
    keyId: string;
    /** The restore recipient (age1…) and the metadata recipient. */
    recipient: string;
    metadataRecipient: string;
    /** base64, as in the key files. */
    verifyKey: string;
    repositorySecret: string;
    /** Derived keys (FORMAT §2), hex. */
    idKey: string;
    chunkerKey: string;
    /** The first four entries of the gear table (int32). */
    gearHead: number[];
  };
  config: ExpectedSigned & { body: string };
  blobs: { name: string; id: string; type: number; plaintext: string }[];
  packs: ExpectedPack[];
  index: ExpectedSigned & { bodyHex: string };
  snapshot: ExpectedSigned & { id: string; manifest: Record<string, unknown> };
  streams: { body: unknown; listing: unknown };
}

/** Hex dump: offset, 16 bytes a line. */
export function hexDump(hex: string, from = 0): string {
  const b = Buffer.from(hex, 'hex');
  const lines: string[] = [];
  for (let at = 0; at < b.length; at += 16) {
    const row = [...b.subarray(at, at + 16)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    lines.push(`${(from + at).toString(16).padStart(4, '0')}  ${row}`);
  }
  return lines.join('\n');
}

const short = (hex: string) => `${hex.slice(0, 12)}…`;

/** One field: its name, its bytes (hex) and, for numbers, their value. */
const field = (name: string, b: Buffer, value?: number | bigint) =>
  `${name.padEnd(12)}${b.toString('hex')}${value === undefined ? '' : `  (${value})`}`;

/** A 48-byte pack entry (FORMAT §9), field by field. */
function entryFields(b: Buffer): string[] {
  return [
    field('type', b.subarray(0, 1), b[0]),
    field('compression', b.subarray(1, 2), b[1]),
    field('reserved', b.subarray(2, 4)),
    field('offset', b.subarray(4, 8), b.readUInt32LE(4)),
    field('length', b.subarray(8, 12), b.readUInt32LE(8)),
    field('rawLength', b.subarray(12, 16), b.readUInt32LE(12)),
    field('id', b.subarray(16, 48)),
  ];
}

/** An index object's body (FORMAT §10), field by field. */
function indexFields(hex: string): string[] {
  const b = Buffer.from(hex, 'hex');
  const out = [
    field('version', b.subarray(0, 1), b[0]),
    field('packCount', b.subarray(1, 5), b.readUInt32LE(1)),
  ];
  let at = 5;
  for (let p = 0; p < b.readUInt32LE(1); p++) {
    out.push(`-- pack ${p}`);
    out.push(field('packId', b.subarray(at, at + 16)));
    out.push(field('type', b.subarray(at + 16, at + 17), b[at + 16]));
    out.push(field('reserved', b.subarray(at + 17, at + 20)));
    out.push(field('size', b.subarray(at + 20, at + 28), b.readBigUInt64LE(at + 20)));
    out.push(field('sha256', b.subarray(at + 28, at + 60)));
    const n = b.readUInt32LE(at + 60);
    out.push(field('entryCount', b.subarray(at + 60, at + 64), n));
    at += 64;
    for (let e = 0; e < n; e++, at += 48) out.push(`-- entry ${e}`, ...entryFields(b.subarray(at, at + 48)));
  }
  return out;
}

function signedHead(s: ExpectedSigned): string {
  const head = Buffer.from(s.headHex, 'hex');
  const magic = head.subarray(0, 8).toString('latin1');
  return `\`${s.headHex.slice(0, 16)}\` (\`${magic}\`) \`${s.headHex.slice(16, 18)}\` (compression ${head[8]}) \`${s.headHex.slice(18)}\` (rawLength ${head.readUInt32LE(9)})`;
}

/** The worked example's values, as Markdown (the block between the markers in docs/FORMAT.md). */
export function renderExample(x: Expected): string {
  const data = x.packs.find((p) => p.type === 0)!;
  const tree = x.packs.find((p) => p.type === 1)!;
  const body = x.blobs.find((b) => b.name === 'body')!;
  const listing = x.blobs.find((b) => b.name === 'listing')!;
  const de = data.entries[0]!;
  const te = tree.entries[0]!;
  const dataHeader = Buffer.byteLength(data.ageHeader, 'latin1');
  const treeHeader = Buffer.byteLength(tree.ageHeader, 'latin1');
  const dataPlain = Buffer.from(data.plaintextHex, 'hex');
  const treePlain = Buffer.from(tree.plaintextHex, 'hex');
  const configBody = Buffer.byteLength(x.config.body);
  const m = x.snapshot.manifest as { time: string; repository: string };
  const out: string[] = [
    BEGIN_MARK,
    '',
    '**1. Keys.** The test keys are `test/vectors/keys/restore.key` and `worker.key`. What they hold, and what',
    'is derived from the repository secret (§2):',
    '',
    '```',
    `keyId               ${x.keys.keyId}`,
    `restore recipient   ${x.keys.recipient}`,
    `metadata recipient  ${x.keys.metadataRecipient}`,
    `verify key          ${x.keys.verifyKey}`,
    `repository secret   ${x.keys.repositorySecret}`,
    `idKey               ${x.keys.idKey}`,
    `chunkerKey          ${x.keys.chunkerKey}`,
    `gearTable[0..3]     ${x.keys.gearHead.join(', ')}`,
    '```',
    '',
    `**2. The config** (\`config\`, §6) is not encrypted: ${x.config.size} bytes = the 13-byte head`,
    `${signedHead(x.config)}, the ${configBody}-byte JSON body below, and the`,
    `64-byte Ed25519 signature of everything before it (\`${short(x.config.signatureHex)}\`).`,
    '',
    '```json',
    x.config.body.trimEnd(),
    '```',
    '',
    `**3. A document becomes a blob.** The document's JSON, as CouchDB served it (${Buffer.byteLength(body.plaintext)} bytes),`,
    `is shorter than the \`json\` chunker's \`min\`, so it is one chunk: a data blob (type 0) with the blob ID`,
    `(§5) \`${body.id}\`. zstd makes it ${de.length} bytes (saving more than 5%: compression ${de.compression}).`,
    '',
    '```json',
    body.plaintext,
    '```',
    '',
    `**4. The data pack** \`${data.key}\` holds that one blob. Its plaintext (${dataPlain.length} bytes) is the`,
    `stored blob (bytes 0–${de.length - 1}, a zstd frame: \`28 b5 2f fd …\`), its 48-byte entry, the count and the magic:`,
    '',
    '```',
    hexDump(dataPlain.subarray(0, Math.min(32, de.length)).toString('hex')),
    `…     (the blob: ${de.length} bytes in all; then the entry)`,
    ...entryFields(dataPlain.subarray(de.length, de.length + 48)),
    field(
      'count',
      dataPlain.subarray(de.length + 48, de.length + 52),
      dataPlain.readUInt32LE(de.length + 48),
    ),
    `${'magic'.padEnd(12)}${dataPlain.subarray(de.length + 52).toString('hex')}  ("RBPACK01")`,
    '```',
    '',
    `The pack object is an age file (§3) of ${data.size} bytes, SHA-256 \`${data.sha256}\`: the`,
    `${dataHeader}-byte header below (one X25519 stanza: the restore recipient only — a data pack is never`,
    `encrypted to the metadata recipient), the 16-byte nonce, and one final segment of ${dataPlain.length} + 16`,
    `bytes: ${dataHeader} + 16 + ${dataPlain.length} + 16 = ${data.size}.`,
    '',
    '```',
    data.ageHeader.trimEnd(),
    '```',
    '',
    `**5. The listing** of the database (§12.1) is one JSON line (${Buffer.byteLength(listing.plaintext)} bytes) naming the`,
    `document's body by its StreamRef (§11). It is a tree blob (type 1), ID \`${listing.id}\`,`,
    `zstd to ${te.length} bytes, in the tree pack \`${tree.key}\` (${treePlain.length} bytes of plaintext;`,
    `${tree.size} bytes as stored, SHA-256 \`${short(tree.sha256)}\`; its header is ${treeHeader} bytes, with two stanzas:`,
    'the restore recipient and the metadata recipient, so the worker key can read it back).',
    '',
    '```json',
    listing.plaintext.trimEnd(),
    '```',
    '',
    `**6. The index object** (§10) records both packs. Its body (${Buffer.from(x.index.bodyHex, 'hex').length} bytes), field by field:`,
    '',
    '```',
    ...indexFields(x.index.bodyHex),
    '```',
    '',
    `Sealed (§4): the head ${signedHead(x.index)}, the body compressed, the signature`,
    `(\`${short(x.index.signatureHex)}\`); then encrypted to both recipients: ${x.index.size} bytes, stored as`,
    `\`${x.index.key}\` (its name is its SHA-256).`,
    '',
    `**7. The snapshot** (§12) points at the listing. Its manifest:`,
    '',
    '```json',
    JSON.stringify(x.snapshot.manifest, null, 2),
    '```',
    '',
    `Sealed as the index object was (head ${signedHead(x.snapshot)}), ${x.snapshot.size}`,
    `bytes, stored as \`${x.snapshot.key}\`: the time of the manifest to the second, and`,
    `the object's SHA-256, which is the snapshot ID.`,
    '',
    '**8. Reading it back** with the restore identity:',
    '',
    `1. List \`snapshots/\`; check that SHA-256 of the object is \`${short(x.snapshot.id)}\`, decrypt it, check the`,
    `   magic \`RBSNAP01\` and the signature with the verify key, decompress ${Buffer.from(x.snapshot.headHex, 'hex').readUInt32LE(9)} bytes; check that`,
    `   \`time\` (${m.time}) truncated to seconds is the time in the name and that \`repository\` is the config's \`id\``,
    `   (${m.repository}).`,
    `2. The listing's one chunk \`${short(listing.id)}\`: the index object says pack \`${tree.id}\` (type 1,`,
    `   so under \`tree/\`), offset ${te.offset}, length ${te.length}. Plaintext bytes [${te.offset}, ${te.offset + te.length}) lie in segment 0, i.e. ciphertext`,
    `   bytes [${treeHeader + 16}, ${tree.size}) (header ${treeHeader} + nonce 16; the segment is the last, so its last flag is 1).`,
    `   Decrypt, cut [${te.offset}, ${te.offset + te.length}), zstd-decompress to ${te.rawLength} bytes, recompute the blob ID (type 1) and compare.`,
    `3. Parse the line; the winning leaf's \`body\` names chunk \`${short(body.id)}\`: pack \`${data.id}\` (\`data/\`),`,
    `   offset ${de.offset}, length ${de.length}, rawLength ${de.rawLength}; ciphertext from byte ${dataHeader + 16}. Decrypt, cut,`,
    `   decompress, check the ID (type 0): the document's ${de.rawLength} bytes.`,
    '',
    END_MARK,
  ];
  return out.join('\n');
}

/** The generated block of a FORMAT.md text (markers included), or undefined. */
export function generatedBlock(md: string): string | undefined {
  const a = md.indexOf(BEGIN_MARK);
  const b = md.indexOf(END_MARK);
  if (a < 0 || b < a) return undefined;
  return md.slice(a, b + END_MARK.length);
}
