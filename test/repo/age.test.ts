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
  generateX25519Identity,
  identityToRecipient,
  Identities,
  openAge,
  openSegments,
  plaintextSize,
  SEGMENT_SIZE,
} from '../../src/repo/age.js';
import { IntegrityError, KeyError } from '../../src/errors.js';
import {
  ageDecrypt,
  ageEncrypt,
  ageKeygen,
  ageRecipientOf,
  tmpDir,
  writeIdentityFile,
} from '../harness/index.js';

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

test('headers for X25519 recipients (made with node:crypto) open with the age CLI and the package, for each recipient', async (t) => {
  const dir = await tmpDir(t);
  const a = await ageKeygen();
  const b = await ageKeygen();
  const plain = randomBytes(SEGMENT_SIZE + 17);
  const file = await encrypt([a.recipient, b.recipient], plain);
  assert.match(file.toString('latin1', 0, 200), /^age-encryption\.org\/v1\n-> X25519 [A-Za-z0-9+/]{43}\n/);
  for (const [i, k] of [a, b].entries()) {
    const idFile = await writeIdentityFile(dir, k.identity, `id${i}.txt`);
    assert.deepEqual(await ageDecrypt(idFile, file), plain, `age CLI, recipient ${i}`);
    const d = new age.Decrypter();
    d.addIdentity(k.identity);
    assert.deepEqual(Buffer.from(await d.decrypt(file)), plain, `age-encryption package, recipient ${i}`);
    assert.deepEqual(await decrypt(new Identities([k.identity]), file), plain, `own reader, recipient ${i}`);
  }
  // Two recipients from the CLI, read with the second identity only.
  const cli = await ageEncrypt([a.recipient, b.recipient], plain);
  assert.deepEqual(await decrypt(new Identities([b.identity]), cli), plain);
});

test('a header whose MAC or wrapped key was altered is refused', async () => {
  const { identity, recipient } = await ageKeygen();
  const ids = new Identities([identity]);
  const plain = randomBytes(100);
  for (const file of [await encrypt([recipient], plain), await ageEncrypt([recipient], plain)]) {
    const text = file.toString('latin1');
    const macAt = text.indexOf('\n--- ') + 5;
    const badMac = Buffer.from(file);
    badMac[macAt] = badMac[macAt] === 0x41 ? 0x42 : 0x41;
    await assert.rejects(decrypt(ids, badMac), IntegrityError);
    // An extra stanza (grease) added after the MAC was made: the MAC no longer covers the header.
    const extra = Buffer.from(text.replace('\n---', '\n-> grease x\n\n---'), 'latin1');
    await assert.rejects(decrypt(ids, extra), IntegrityError);
    const bodyAt = text.indexOf('\n', text.indexOf('-> X25519')) + 1;
    const badBody = Buffer.from(file);
    badBody[bodyAt] = badBody[bodyAt] === 0x41 ? 0x42 : 0x41;
    await assert.rejects(decrypt(ids, badBody), KeyError);
  }
});

test('X25519 identities and recipients made natively agree with age-keygen and the package', async () => {
  const identity = generateX25519Identity();
  assert.match(identity, /^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
  const recipient = await identityToRecipient(identity);
  assert.equal(recipient, await ageRecipientOf(identity));
  assert.equal(recipient, await age.identityToRecipient(identity));
  const cli = await ageKeygen();
  assert.equal(await identityToRecipient(cli.identity), cli.recipient);
  assert.throws(
    () => new Identities([identity.slice(0, -1) + (identity.endsWith('Q') ? 'P' : 'Q')]),
    KeyError,
  );
  await assert.rejects(
    encrypt([recipient.slice(0, -1) + (recipient.endsWith('q') ? 'p' : 'q')], Buffer.alloc(1)),
  );
});

test('post-quantum recipients and identities still go through the age-encryption package', async () => {
  const identity = await age.generateHybridIdentity();
  const recipient = await identityToRecipient(identity);
  assert.match(recipient, /^age1pq1/);
  const plain = randomBytes(SEGMENT_SIZE + 3);
  const file = await encrypt([recipient], plain);
  assert.deepEqual(await decrypt(new Identities([identity]), file), plain);
  // (The age CLI on this machine, 1.1, predates post-quantum recipients: the package checks the file.)
  const d = new age.Decrypter();
  d.addIdentity(identity);
  assert.deepEqual(Buffer.from(await d.decrypt(file)), plain, 'age-encryption package');
  const x = await ageKeygen();
  await assert.rejects(decrypt(new Identities([x.identity]), file), KeyError);
});
