import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as age from 'age-encryption';
import {
  AgeEncryptor,
  cipherRange,
  createHeader,
  decrypt,
  encrypt,
  Identities,
  openAge,
  openSegments,
  plaintextSize,
  SEGMENT_SIZE,
} from '../../src/repo/age.js';
import { IntegrityError, KeyError } from '../../src/errors.js';
import { ageDecrypt, ageEncrypt, ageKeygen, tmpDir, writeIdentityFile } from '../harness/index.js';

const SIZES = [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE, 1_000_003];

test('our age files round-trip and the age CLI decrypts them, at every segment boundary', async (t) => {
  const { identity, recipient } = await ageKeygen();
  const idFile = await writeIdentityFile(await tmpDir(t), identity);
  const ids = new Identities([identity]);
  for (const n of SIZES) {
    const plain = randomBytes(n);
    const file = await encrypt([recipient], plain);
    assert.deepEqual(await decrypt(ids, file), plain, `own decrypt, ${n} bytes`);
    assert.deepEqual(await ageDecrypt(idFile, file), plain, `age CLI decrypt, ${n} bytes`);
    const opened = await openAge(ids, file);
    assert.equal(plaintextSize(file.length, opened.payloadOffset), n);
  }
});

test('files written by the age CLI and by the age-encryption package decrypt with our reader', async () => {
  const { identity, recipient } = await ageKeygen();
  const ids = new Identities([identity]);
  const plain = randomBytes(200_000);
  assert.deepEqual(await decrypt(ids, await ageEncrypt([recipient], plain)), plain);
  const e = new age.Encrypter();
  e.addRecipient(recipient);
  assert.deepEqual(await decrypt(ids, Buffer.from(await e.encrypt(plain))), plain);
});

test('incremental encryption equals one-shot, however the input is split', async () => {
  const { identity, recipient } = await ageKeygen();
  const ids = new Identities([identity]);
  const plain = randomBytes(5 * SEGMENT_SIZE + 123);
  const { header, fileKey } = await createHeader([recipient]);
  const enc = new AgeEncryptor(header, fileKey);
  const parts: Buffer[] = [];
  for (let off = 0; off < plain.length; off += 7777) parts.push(...enc.push(plain.subarray(off, off + 7777)));
  parts.push(...enc.finish());
  assert.deepEqual(await decrypt(ids, Buffer.concat(parts)), plain);
});

test('any plaintext range decrypts from the segments that cover it', async () => {
  const { identity, recipient } = await ageKeygen();
  const ids = new Identities([identity]);
  const plain = randomBytes(4 * SEGMENT_SIZE + 999);
  const file = await encrypt([recipient], plain);
  const opened = await openAge(ids, file);
  for (const [off, len] of [
    [0, 10],
    [SEGMENT_SIZE - 5, 10],
    [2 * SEGMENT_SIZE, SEGMENT_SIZE],
    [plain.length - 50, 50],
    [0, plain.length],
  ] as const) {
    const r = cipherRange(opened, file.length, off, len);
    const segs = openSegments(opened, file.subarray(r.start, r.end), r.firstSegment, r.end === file.length);
    const rel = off - r.firstSegment * SEGMENT_SIZE;
    assert.deepEqual(segs.subarray(rel, rel + len), plain.subarray(off, off + len));
  }
});

test('tampering is detected: flipped byte, truncation, segment reordering, wrong identity', async () => {
  const { identity, recipient } = await ageKeygen();
  const other = await ageKeygen();
  const ids = new Identities([identity]);
  const plain = randomBytes(3 * SEGMENT_SIZE + 10);
  const file = await encrypt([recipient], plain);
  const flipped = Buffer.from(file);
  flipped[flipped.length - 100]! ^= 1;
  await assert.rejects(decrypt(ids, flipped), IntegrityError);
  // Truncated exactly at a segment boundary: the last full segment is not flagged "last".
  const opened = await openAge(ids, file);
  await assert.rejects(
    decrypt(ids, file.subarray(0, opened.payloadOffset + 2 * (SEGMENT_SIZE + 16))),
    IntegrityError,
  );
  await assert.rejects(decrypt(ids, file.subarray(0, file.length - 1)), IntegrityError);
  const swapped = Buffer.from(file);
  const a = opened.payloadOffset;
  const s = SEGMENT_SIZE + 16;
  file.copy(swapped, a, a + s, a + 2 * s);
  file.copy(swapped, a + s, a, a + s);
  await assert.rejects(decrypt(ids, swapped), IntegrityError);
  await assert.rejects(decrypt(new Identities([other.identity]), file), KeyError);
  await assert.rejects(decrypt(ids, Buffer.from('not an age file at all')), IntegrityError);
});
