/**
 * Tests of the GCS JSON API fake, driven through the real @google-cloud/storage v7 client
 * (raw fetch only where the client cannot express a request).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CRC32C,
  Storage,
  type Bucket,
  type GetFilesOptions,
  type GetFilesResponse,
} from '@google-cloud/storage';
import { crc32cBase64, crc32cUpdate } from './crc32c.js';
import { startFakeGcs, type FakeGcs } from './server.js';

const MiB = 1024 * 1024;

const md5b64 = (b: Buffer): string => createHash('md5').update(b).digest('base64');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const crcb64 = (b: Buffer): string => crc32cBase64(crc32cUpdate(0, b));

/** The HTTP status carried by an error from the client (ApiError.code or gaxios response status). */
function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; response?: { status?: unknown } } | null;
  if (typeof e?.code === 'number') return e.code;
  if (typeof e?.response?.status === 'number') return e.response.status;
  return undefined;
}

async function rejectsWithStatus(
  p: Promise<unknown>,
  status: number,
  messageIncludes?: string,
): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.equal(statusOf(err), status, `expected HTTP ${status}, got ${String(err)}`);
    if (messageIncludes) assert.match(String((err as Error).message), new RegExp(messageIncludes));
    return true;
  });
}

describe('fake GCS through @google-cloud/storage', () => {
  let fake: FakeGcs | undefined;
  let storage: Storage;
  let bucket: Bucket;
  let retained: Bucket;
  let clockOffsetMs = 0;

  const gcs = (): FakeGcs => {
    assert.ok(fake, 'fake GCS not started');
    return fake;
  };
  /** Requests seen since index `from`, as "METHOD path?query" with status. */
  const since = (from: number) => gcs().requests.slice(from);

  before(async () => {
    fake = await startFakeGcs({ now: () => Date.now() + clockOffsetMs });
    storage = new Storage({
      apiEndpoint: fake.url,
      projectId: 'test',
      retryOptions: { maxRetries: 2, maxRetryDelay: 2, retryDelayMultiplier: 1.1 },
    });
    [bucket] = await storage.createBucket('regbackup-test');
    [retained] = await storage.createBucket('regbackup-retained', { enableObjectRetention: true });
  });

  after(async () => {
    await fake?.stop();
  });

  test('crc32c: standard check value and agreement with the client library', () => {
    assert.equal(crc32cUpdate(0, Buffer.from('123456789')), 0xe3069283);
    for (const size of [0, 1, 7, 8, 9, 1000, 65537]) {
      const data = randomBytes(size);
      const theirs = new CRC32C();
      theirs.update(data);
      assert.equal(crcb64(data), theirs.toString(), `size ${size}`);
      // incremental == one shot
      const half = Math.floor(size / 2);
      assert.equal(
        crc32cUpdate(crc32cUpdate(0, data.subarray(0, half)), data.subarray(half)),
        crc32cUpdate(0, data),
      );
    }
  });

  test('the client talks to the fake for JSON, upload and resumable-session URLs', async () => {
    assert.equal(storage.apiEndpoint, gcs().url);
    const [uri] = await bucket.file('session/probe').createResumableUpload();
    assert.ok(uri.startsWith(`${gcs().url}/upload/storage/v1/b/regbackup-test/o?`), uri);
    assert.match(uri, /upload_id=/);
    // no Authorization header is sent to a custom endpoint
    assert.ok(gcs().requests.every((r) => r.headers.authorization === undefined));
    // cancel the session (DELETE on the session URI answers 499)
    const res = await fetch(uri, { method: 'DELETE' });
    assert.equal(res.status, 499);
  });

  test('buckets: create, get, exists, duplicate create, missing bucket', async () => {
    const [meta] = await bucket.getMetadata();
    assert.equal(meta.name, 'regbackup-test');
    assert.equal(meta.kind, 'storage#bucket');
    assert.equal(meta.storageClass, 'STANDARD');
    const [rmeta] = await retained.getMetadata();
    assert.deepEqual(rmeta.objectRetention, { mode: 'Enabled' });
    assert.deepEqual(await bucket.exists(), [true]);
    assert.deepEqual(await storage.bucket('no-such-bucket').exists(), [false]);
    await rejectsWithStatus(storage.createBucket('regbackup-test'), 409);
    await rejectsWithStatus(
      storage.bucket('no-such-bucket').file('x').getMetadata(),
      404,
      'bucket does not exist',
    );
    const [buckets] = await storage.getBuckets();
    assert.deepEqual(
      buckets.map((b) => b.name),
      ['regbackup-retained', 'regbackup-test'],
    );
  });

  test('multipart upload (resumable: false) round trip with metadata', async () => {
    const data = randomBytes(300 * 1024 + 17);
    const file = bucket.file('multi/part one.bin');
    const from = gcs().requests.length;
    await file.save(data, {
      resumable: false,
      contentType: 'application/x-regbackup',
      metadata: { metadata: { snapshot: 's1', 'x-kind': 'pack' }, cacheControl: 'no-cache' },
    });
    const uploads = since(from).filter((r) => r.path.startsWith('/upload/'));
    assert.equal(uploads.length, 1);
    assert.match(uploads[0]!.query, /uploadType=multipart/);
    assert.match(String(uploads[0]!.headers['content-type']), /^multipart\/related; boundary=/);

    const [meta] = await file.getMetadata();
    assert.equal(meta.kind, 'storage#object');
    assert.equal(meta.name, 'multi/part one.bin');
    assert.equal(meta.bucket, 'regbackup-test');
    assert.equal(meta.size, String(data.length));
    assert.equal(meta.contentType, 'application/x-regbackup');
    assert.equal(meta.md5Hash, md5b64(data));
    assert.equal(meta.crc32c, crcb64(data));
    assert.equal(meta.metageneration, '1');
    assert.equal(meta.storageClass, 'STANDARD');
    assert.equal(meta.cacheControl, 'no-cache');
    assert.deepEqual(meta.metadata, { snapshot: 's1', 'x-kind': 'pack' });
    assert.match(String(meta.generation), /^\d+$/);
    assert.equal(meta.id, `regbackup-test/multi/part one.bin/${meta.generation}`);
    assert.ok(!Number.isNaN(Date.parse(String(meta.timeCreated))));
    assert.ok(!Number.isNaN(Date.parse(String(meta.updated))));
    // the object name is URL-encoded in the path
    assert.ok(gcs().requests.some((r) => r.path === '/storage/v1/b/regbackup-test/o/multi%2Fpart%20one.bin'));

    const [back] = await file.download();
    assert.ok(back.equals(data));
  });

  test('simple media upload (uploadType=media, raw fetch) read back through the client', async () => {
    const data = randomBytes(70 * 1024);
    const res = await fetch(
      `${gcs().url}/upload/storage/v1/b/regbackup-test/o?uploadType=media&name=${encodeURIComponent('media/a b.bin')}`,
      {
        method: 'POST',
        headers: {
          'Content-Type': 'application/octet-stream',
          'X-Goog-Hash': `crc32c=${crcb64(data)},md5=${md5b64(data)}`,
        },
        body: data,
      },
    );
    assert.equal(res.status, 200);
    const resource = (await res.json()) as Record<string, unknown>;
    assert.equal(resource.name, 'media/a b.bin');
    assert.equal(resource.size, String(data.length));
    assert.equal(resource.crc32c, crcb64(data));
    const [back] = await bucket.file('media/a b.bin').download();
    assert.ok(back.equals(data));

    // a wrong X-Goog-Hash is refused, and nothing is stored
    const bad = await fetch(
      `${gcs().url}/upload/storage/v1/b/regbackup-test/o?uploadType=media&name=media%2Fbad`,
      {
        method: 'POST',
        headers: { 'X-Goog-Hash': 'crc32c=AAAAAA==' },
        body: data,
      },
    );
    assert.equal(bad.status, 400);
    assert.deepEqual(await bucket.file('media/bad').exists(), [false]);

    // missing uploadType
    const noType = await fetch(`${gcs().url}/upload/storage/v1/b/regbackup-test/o?name=x`, {
      method: 'POST',
      body: 'x',
    });
    assert.equal(noType.status, 400);
  });

  test('malformed multipart body is refused with 400', async () => {
    const res = await fetch(
      `${gcs().url}/upload/storage/v1/b/regbackup-test/o?uploadType=multipart&name=bad-multipart`,
      {
        method: 'POST',
        headers: { 'Content-Type': 'multipart/related; boundary=XYZ' },
        body: '--XYZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nno closing boundary',
      },
    );
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { code: number; message: string } };
    assert.equal(body.error.code, 400);
    assert.match(body.error.message, /multipart/i);
    assert.deepEqual(await bucket.file('bad-multipart').exists(), [false]);
  });

  test('resumable upload in a single request', async () => {
    const data = randomBytes(MiB + 3);
    const file = bucket.file('resumable/single.bin');
    const from = gcs().requests.length;
    await file.save(data, { resumable: true, contentType: 'application/octet-stream' });
    const reqs = since(from).filter((r) => r.path.startsWith('/upload/'));
    assert.deepEqual(
      reqs.map((r) => `${r.method} ${r.status}`),
      ['POST 200', 'PUT 200'],
    );
    assert.match(reqs[0]!.query, /uploadType=resumable/);
    const [back] = await file.download();
    assert.ok(back.equals(data));
    assert.equal(gcs().openUploadSessions(), 0);
  });

  test('multi-chunk resumable upload: 20 MiB streamed with chunkSize 8 MiB', async () => {
    const size = 20 * MiB;
    const parts: Buffer[] = [];
    for (let i = 0; i < 20; i++) parts.push(randomBytes(MiB));
    const data = Buffer.concat(parts);
    const file = bucket.file('resumable/chunked.bin');
    const from = gcs().requests.length;
    await pipeline(Readable.from(parts), file.createWriteStream({ resumable: true, chunkSize: 8 * MiB }));
    const puts = since(from).filter((r) => r.method === 'PUT');
    assert.deepEqual(
      puts.map((r) => [r.headers['content-range'], r.status]),
      [
        [`bytes 0-${8 * MiB - 1}/*`, 308],
        [`bytes ${8 * MiB}-${16 * MiB - 1}/*`, 308],
        [`bytes ${16 * MiB}-${size - 1}/${size}`, 200],
      ],
    );
    const [meta] = await file.getMetadata();
    assert.equal(meta.size, String(size));
    assert.equal(meta.md5Hash, md5b64(data));
    // default (crc32c) validation on download
    const [back] = await file.download();
    assert.equal(sha256(back), sha256(data));
    assert.ok((await gcs().readObject('regbackup-test', 'resumable/chunked.bin')).equals(data));
    assert.equal(gcs().openUploadSessions(), 0);
  });

  test('resumable protocol on the wire: 308 + Range, status queries, finalize, replay', async () => {
    const base = `${gcs().url}/upload/storage/v1/b/regbackup-test/o`;
    const start = await fetch(`${base}?uploadType=resumable&name=wire%2Fobj`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Upload-Content-Type': 'text/plain' },
      body: JSON.stringify({ metadata: { via: 'wire' } }),
    });
    assert.equal(start.status, 200);
    const uri = start.headers.get('location') ?? '';
    assert.ok(uri.startsWith(base), uri);

    const put = (contentRange: string, body?: Buffer): Promise<Response> =>
      fetch(uri, {
        method: 'PUT',
        headers: { 'Content-Range': contentRange },
        body: body ?? Buffer.alloc(0),
      });

    let r = await put('bytes */*');
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('range'), null); // nothing persisted yet

    const chunk1 = Buffer.alloc(256 * 1024, 'a');
    r = await put('bytes 0-262143/*', chunk1);
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('range'), 'bytes=0-262143');

    r = await put('bytes */*');
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('range'), 'bytes=0-262143');

    // an offset beyond what was persisted is refused
    r = await put('bytes 300000-300009/*', Buffer.alloc(10));
    assert.equal(r.status, 400);

    // re-sending already persisted bytes is fine: they are skipped
    const chunk2 = Buffer.alloc(10, 'b');
    r = await put('bytes 262144-262153/262154', chunk2);
    assert.equal(r.status, 200);
    const resource = (await r.json()) as Record<string, unknown>;
    assert.equal(resource.size, '262154');
    assert.equal(resource.contentType, 'text/plain');
    assert.deepEqual(resource.metadata, { via: 'wire' });

    // a finished session answers with the object again
    r = await put('bytes */*');
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as Record<string, unknown>).generation, resource.generation);

    const [back] = await bucket.file('wire/obj').download();
    assert.ok(back.equals(Buffer.concat([chunk1, chunk2])));

    // unknown total, then finalize with a status query "bytes */TOTAL"
    const s2 = await fetch(`${base}?uploadType=resumable&name=wire%2Fobj2`, { method: 'POST' });
    const uri2 = s2.headers.get('location')!;
    const data = randomBytes(1000);
    r = await fetch(uri2, { method: 'PUT', headers: { 'Content-Range': 'bytes 0-999/*' }, body: data });
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('range'), 'bytes=0-999');
    r = await fetch(uri2, { method: 'PUT', headers: { 'Content-Range': 'bytes */1000' } });
    assert.equal(r.status, 200);
    assert.ok((await gcs().readObject('regbackup-test', 'wire/obj2')).equals(data));

    // a body that does not match its Content-Range is refused
    const s3 = await fetch(`${base}?uploadType=resumable&name=wire%2Fobj3`, { method: 'POST' });
    const uri3 = s3.headers.get('location')!;
    r = await fetch(uri3, {
      method: 'PUT',
      headers: { 'Content-Range': 'bytes 0-99/100' },
      body: Buffer.alloc(50),
    });
    assert.equal(r.status, 400);
    r = await fetch(uri3, { method: 'PUT', headers: { 'Content-Range': 'bytes */*' } });
    assert.equal(r.status, 308);
    assert.equal(r.headers.get('range'), null); // rolled back
    assert.equal((await fetch(uri3, { method: 'DELETE' })).status, 499);
    assert.equal(
      (await fetch(uri3, { method: 'PUT', headers: { 'Content-Range': 'bytes */*' } })).status,
      404,
    );
  });

  test('ranged downloads answer 206 with Content-Range; unsatisfiable ranges 416', async () => {
    const data = randomBytes(10_000);
    const file = bucket.file('range/obj.bin');
    await file.save(data, { resumable: false });
    const [mid] = await file.download({ start: 100, end: 199 });
    assert.ok(mid.equals(data.subarray(100, 200)));
    const [tail] = await file.download({ start: 9_990 });
    assert.ok(tail.equals(data.subarray(9_990)));
    const [suffix] = await file.download({ end: -25 });
    assert.ok(suffix.equals(data.subarray(10_000 - 25)));
    const [past] = await file.download({ start: 9_000, end: 20_000 });
    assert.ok(past.equals(data.subarray(9_000)));

    const url = `${gcs().url}/storage/v1/b/regbackup-test/o/range%2Fobj.bin?alt=media`;
    let r = await fetch(url, { headers: { Range: 'bytes=0-9' } });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), 'bytes 0-9/10000');
    assert.equal(r.headers.get('content-length'), '10');
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(data.subarray(0, 10)));
    r = await fetch(url, { headers: { Range: 'bytes=10000-' } });
    assert.equal(r.status, 416);
    assert.equal(r.headers.get('content-range'), 'bytes */10000');
    await r.body?.cancel();
    // the /download/ path serves media too
    r = await fetch(`${gcs().url}/download/storage/v1/b/regbackup-test/o/range%2Fobj.bin?alt=media`, {
      headers: { Range: 'bytes=5-6' },
    });
    assert.equal(r.status, 206);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(data.subarray(5, 7)));
  });

  test('full downloads carry x-goog-hash; crc32c, md5 and no validation all work in the client', async () => {
    const data = randomBytes(123_457);
    const file = bucket.file('hash/obj.bin');
    await file.save(data);
    const r = await fetch(`${gcs().url}/storage/v1/b/regbackup-test/o/hash%2Fobj.bin?alt=media`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-goog-hash'), `crc32c=${crcb64(data)},md5=${md5b64(data)}`);
    assert.equal(r.headers.get('x-goog-stored-content-encoding'), 'identity');
    assert.equal(r.headers.get('x-goog-stored-content-length'), String(data.length));
    await r.body?.cancel();
    for (const validation of ['crc32c', 'md5', false] as const) {
      const [back] = await file.download({ validation });
      assert.ok(back.equals(data), `validation ${String(validation)}`);
    }
  });

  test('gzip content-encoding: stored compressed, served compressed, decompressed by the client', async () => {
    const text = Buffer.from('{"name":"left-pad"}\n'.repeat(5000));
    const file = bucket.file('gzip/doc.json');
    await file.save(text, { gzip: true, resumable: false, contentType: 'application/json' });
    const [meta] = await file.getMetadata();
    assert.equal(meta.contentEncoding, 'gzip');
    assert.ok(Number(meta.size) < text.length);
    const [back] = await file.download();
    assert.ok(back.equals(text));
    // without Accept-Encoding: gzip the fake transcodes like GCS
    const r = await fetch(`${gcs().url}/storage/v1/b/regbackup-test/o/gzip%2Fdoc.json?alt=media`, {
      headers: { 'Accept-Encoding': 'identity' },
    });
    assert.equal(r.headers.get('content-encoding'), null);
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(text));
  });

  test('objects.get metadata and 404 in Google error shape', async () => {
    const missing = bucket.file('nope/missing.bin');
    await rejectsWithStatus(missing.getMetadata(), 404, 'No such object: regbackup-test/nope/missing.bin');
    await rejectsWithStatus(missing.download(), 404);
    assert.deepEqual(await missing.exists(), [false]);
    const r = await fetch(`${gcs().url}/storage/v1/b/regbackup-test/o/nope%2Fmissing.bin`);
    assert.equal(r.status, 404);
    assert.deepEqual(await r.json(), {
      error: {
        code: 404,
        message: 'No such object: regbackup-test/nope/missing.bin',
        errors: [
          {
            message: 'No such object: regbackup-test/nope/missing.bin',
            domain: 'global',
            reason: 'notFound',
          },
        ],
      },
    });
  });

  test('objects.list: prefix, delimiter, pagination, UTF-8 byte order', async () => {
    const names = [
      'list/a.txt',
      'list/b/1.txt',
      'list/b/2.txt',
      'list/b/sub/3.txt',
      'list/c/4.txt',
      'list/d.txt',
      'list/\u{ff5e}.txt', // U+FF5E sorts before U+1F600 in UTF-8, after it in UTF-16
      'list/\u{1f600}.txt',
      'lists-other/x.txt',
    ];
    for (let i = 0; i < 23; i++) names.push(`list/many/${String(i).padStart(3, '0')}`);
    await Promise.all(names.map((n) => bucket.file(n).save(Buffer.from(n), { resumable: false })));

    const expected = names
      .filter((n) => n.startsWith('list/'))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const [all] = await bucket.getFiles({ prefix: 'list/' });
    assert.deepEqual(
      all.map((f) => f.name),
      expected,
    );
    assert.ok(expected.indexOf('list/\u{ff5e}.txt') < expected.indexOf('list/\u{1f600}.txt'));

    // delimiter: prefixes come back in the raw API response
    const [files, , apiResponse] = await bucket.getFiles({
      prefix: 'list/',
      delimiter: '/',
      autoPaginate: false,
    });
    assert.deepEqual(
      files.map((f) => f.name),
      ['list/a.txt', 'list/d.txt', 'list/\u{ff5e}.txt', 'list/\u{1f600}.txt'],
    );
    assert.deepEqual((apiResponse as { prefixes?: string[] }).prefixes, ['list/b/', 'list/c/', 'list/many/']);

    // manual pagination with more objects than maxResults
    const seen: string[] = [];
    let pages = 0;
    let query: GetFilesOptions | null = { prefix: 'list/', maxResults: 7, autoPaginate: false };
    while (query) {
      const response: GetFilesResponse = await bucket.getFiles(query);
      const [page, next] = response;
      assert.ok(page.length <= 7);
      seen.push(...page.map((f) => f.name));
      pages++;
      query = (next as GetFilesOptions | null) ?? null;
    }
    assert.deepEqual(seen, expected);
    assert.equal(pages, Math.ceil(expected.length / 7));

    // pagination with a delimiter counts prefixes and items together and never repeats a prefix
    const entries: string[] = [];
    let token: string | undefined;
    do {
      const qs = new URLSearchParams({ prefix: 'list/', delimiter: '/', maxResults: '2' });
      if (token) qs.set('pageToken', token);
      const r = await fetch(`${gcs().url}/storage/v1/b/regbackup-test/o?${qs.toString()}`);
      const body = (await r.json()) as {
        items?: Array<{ name: string }>;
        prefixes?: string[];
        nextPageToken?: string;
      };
      const got = [...(body.items ?? []).map((i) => i.name), ...(body.prefixes ?? [])];
      assert.ok(got.length <= 2 && got.length > 0);
      entries.push(...got);
      token = body.nextPageToken;
    } while (token);
    assert.deepEqual(
      [...entries].sort(),
      [
        'list/a.txt',
        'list/b/',
        'list/c/',
        'list/d.txt',
        'list/many/',
        'list/\u{1f600}.txt',
        'list/\u{ff5e}.txt',
      ].sort(),
    );

    // empty listing omits items
    const r = await fetch(`${gcs().url}/storage/v1/b/regbackup-test/o?prefix=zzz-none`);
    assert.deepEqual(await r.json(), { kind: 'storage#objects' });

    // fields selector
    const rf = await fetch(
      `${gcs().url}/storage/v1/b/regbackup-test/o?prefix=list%2Fa&fields=items(name,size),nextPageToken`,
    );
    assert.deepEqual(await rf.json(), { items: [{ name: 'list/a.txt', size: String('list/a.txt'.length) }] });
  });

  test('objects.delete: 204, then 404', async () => {
    const file = bucket.file('del/x.bin');
    await file.save(Buffer.from('x'), { resumable: false });
    const from = gcs().requests.length;
    await file.delete();
    assert.equal(since(from).find((r) => r.method === 'DELETE')?.status, 204);
    assert.deepEqual(await file.exists(), [false]);
    await rejectsWithStatus(file.delete(), 404);
    await file.delete({ ignoreNotFound: true });
  });

  test('preconditions: ifGenerationMatch=0 on an existing object answers 412', async () => {
    const file = bucket.file('pre/obj.bin');
    await file.save(Buffer.from('v1'), { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    const [m1] = await file.getMetadata();

    // multipart and resumable both refuse
    await rejectsWithStatus(
      file.save(Buffer.from('v2'), { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }),
      412,
    );
    await rejectsWithStatus(
      file.save(Buffer.from('v2'), { resumable: true, preconditionOpts: { ifGenerationMatch: 0 } }),
      412,
    );
    const r = await fetch(
      `${gcs().url}/upload/storage/v1/b/regbackup-test/o?uploadType=media&name=pre%2Fobj.bin&ifGenerationMatch=0`,
      {
        method: 'POST',
        body: 'v2',
      },
    );
    assert.equal(r.status, 412);
    const err = (await r.json()) as { error: { errors: Array<{ reason: string }> } };
    assert.equal(err.error.errors[0]?.reason, 'conditionNotMet');
    const [still] = await file.download();
    assert.equal(still.toString(), 'v1');

    // wrong generation → 412; right generation → new generation
    await rejectsWithStatus(
      file.save(Buffer.from('v2'), { resumable: false, preconditionOpts: { ifGenerationMatch: 1 } }),
      412,
    );
    await file.save(Buffer.from('v2'), {
      resumable: false,
      preconditionOpts: { ifGenerationMatch: Number(m1.generation) },
    });
    const [m2] = await file.getMetadata();
    assert.ok(BigInt(String(m2.generation)) > BigInt(String(m1.generation)));

    // metageneration preconditions on patch, generation on delete
    await rejectsWithStatus(file.setMetadata({ metadata: { a: '1' } }, { ifMetagenerationMatch: 5 }), 412);
    await rejectsWithStatus(file.delete({ ifGenerationMatch: Number(m1.generation) }), 412);
    await file.delete({ ifGenerationMatch: Number(m2.generation) });
  });

  test('objects.patch: metadata merge, key removal, metageneration', async () => {
    const file = bucket.file('patch/obj.bin');
    await file.save(Buffer.from('p'), { resumable: false, metadata: { metadata: { keep: 'k', drop: 'd' } } });
    const [m] = await file.setMetadata({ contentType: 'text/plain', metadata: { drop: null, added: 'a' } });
    assert.equal(m.metageneration, '2');
    assert.equal(m.contentType, 'text/plain');
    assert.deepEqual(m.metadata, { keep: 'k', added: 'a' });
    const [again] = await file.getMetadata();
    assert.deepEqual(again.metadata, { keep: 'k', added: 'a' });
    assert.equal(again.generation, m.generation);
  });

  test('object retention: blocks delete and overwrite until retainUntilTime', async () => {
    const until = new Date(Date.now() + 3600_000).toISOString();
    const file = retained.file('locked/pack-0001');
    await file.save(Buffer.from('immutable'), {
      resumable: true,
      metadata: { retention: { mode: 'Locked', retainUntilTime: until } },
    });
    const [meta] = await file.getMetadata();
    assert.deepEqual(meta.retention, { mode: 'Locked', retainUntilTime: until });

    await rejectsWithStatus(file.delete(), 403, 'subject to object retention');
    await rejectsWithStatus(file.save(Buffer.from('changed'), { resumable: false }), 403, 'retention');
    await rejectsWithStatus(file.save(Buffer.from('changed'), { resumable: true }), 403);
    // a Locked retention cannot be shortened or removed
    await rejectsWithStatus(file.setMetadata({ retention: null }), 403);
    await rejectsWithStatus(
      file.setMetadata({
        retention: { mode: 'Locked', retainUntilTime: new Date(Date.now() + 60_000).toISOString() },
      }),
      403,
    );
    // ... but can be extended
    const later = new Date(Date.now() + 7200_000).toISOString();
    const [ext] = await file.setMetadata({ retention: { mode: 'Locked', retainUntilTime: later } });
    assert.equal((ext.retention as { retainUntilTime: string }).retainUntilTime, later);
    const [back] = await file.download();
    assert.equal(back.toString(), 'immutable');

    // an Unlocked retention can be removed only with overrideUnlockedRetention=true
    const soft = retained.file('unlocked/obj');
    await soft.save(Buffer.from('u'), {
      resumable: false,
      metadata: { retention: { mode: 'Unlocked', retainUntilTime: later } },
    });
    await rejectsWithStatus(soft.delete(), 403);
    await rejectsWithStatus(soft.setMetadata({ retention: null }), 403, 'overrideUnlockedRetention');
    await soft.setMetadata({ retention: null }, { overrideUnlockedRetention: true });
    await soft.delete();

    // retention needs a bucket created with enableObjectRetention
    await rejectsWithStatus(
      bucket.file('no-retention').save(Buffer.from('x'), {
        resumable: false,
        metadata: { retention: { mode: 'Locked', retainUntilTime: until } },
      }),
      400,
      'enableObjectRetention',
    );

    // after the retain-until time has passed, delete works
    clockOffsetMs = 3 * 3600_000;
    try {
      await file.delete();
      assert.deepEqual(await file.exists(), [false]);
    } finally {
      clockOffsetMs = 0;
    }
  });

  test('failNext injects a transient error that the client retries', async () => {
    // A fresh Storage: file.save() without preconditions switches retryOptions.autoRetry off on the
    // shared Storage instance (client v7 behaviour) and the simple-upload path never switches it back.
    const fresh = new Storage({
      apiEndpoint: gcs().url,
      projectId: 'test',
      retryOptions: { maxRetries: 2, maxRetryDelay: 2, retryDelayMultiplier: 1.1 },
    });
    assert.equal(fresh.retryOptions.autoRetry, true);
    const file = fresh.bucket('regbackup-test').file('retry/obj');
    await file.save(Buffer.from('r'), { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    gcs().failNext({ method: 'GET', path: '/o/retry%2Fobj', status: 503 });
    const from = gcs().requests.length;
    const [meta] = await file.getMetadata();
    assert.equal(meta.name, 'retry/obj');
    assert.deepEqual(
      since(from).map((r) => r.status),
      [503, 200],
    );
  });

  test('a failed chunk of a resumable upload is resumed by the client after a status query', async () => {
    const fresh = new Storage({
      apiEndpoint: gcs().url,
      projectId: 'test',
      retryOptions: { maxRetries: 3, maxRetryDelay: 2, retryDelayMultiplier: 1.1 },
    });
    const data = randomBytes(3 * 256 * 1024 + 5);
    const file = fresh.bucket('regbackup-test').file('retry/chunked');
    // fail the second chunk
    gcs().failNext({ method: 'PUT', path: '/upload/storage/v1/b/regbackup-test/o', status: 503 });
    const from = gcs().requests.length;
    const ws = file.createWriteStream({
      resumable: true,
      chunkSize: 256 * 1024,
      preconditionOpts: { ifGenerationMatch: 0 },
    });
    await pipeline(Readable.from([data.subarray(0, 400_000), data.subarray(400_000)]), ws);
    const puts = since(from).filter((r) => r.method === 'PUT');
    assert.equal(puts[0]?.status, 503);
    assert.ok(
      puts.some((r) => r.headers['content-range'] === 'bytes */*' && r.status === 308),
      'the client asked where to resume',
    );
    assert.equal(puts.at(-1)?.status, 200);
    assert.ok((await gcs().readObject('regbackup-test', 'retry/chunked')).equals(data));
  });

  test('client quirk: save() without preconditions leaves autoRetry off on the Storage instance', async () => {
    const s = new Storage({ apiEndpoint: gcs().url, projectId: 'test' });
    assert.equal(s.retryOptions.autoRetry, true);
    await s.bucket('regbackup-test').file('quirk/obj').save(Buffer.from('q'), { resumable: false });
    assert.equal(s.retryOptions.autoRetry, false);
  });
});

describe('fake GCS lifecycle', () => {
  test('stop() closes the port and removes the data directory, also with a caller-given dir', async () => {
    const parent = await mkdtemp(join(tmpdir(), 'fake-gcs-test-'));
    try {
      const fake = await startFakeGcs({ dir: parent });
      try {
        const storage = new Storage({ apiEndpoint: fake.url, projectId: 'test' });
        await storage.bucket('auto-created').file('a').save(Buffer.from('a'), { resumable: false });
        assert.equal(fake.listObjects('auto-created').length, 1);
        assert.equal((await readdir(parent)).length, 1);
      } finally {
        await fake.stop();
      }
      assert.deepEqual(await readdir(parent), []);
      await assert.rejects(fetch(`${fake.url}/storage/v1/b?project=test`));
      await fake.stop(); // idempotent
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });
});
