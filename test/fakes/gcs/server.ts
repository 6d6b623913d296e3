/**
 * A fake of the Google Cloud Storage JSON API, for tests only.
 *
 * Written from Google's public JSON API reference (objects.insert with uploadType=media|multipart|
 * resumable, objects.get/list/patch/update/delete, buckets.insert/get/list/delete, preconditions,
 * object retention) and checked against what `@google-cloud/storage` v7 sends. Object data lives in
 * files in a temp directory, so uploads of tens of MiB stream through without being held in memory.
 * See README.md next to this file for what is covered and what is left out.
 *
 * Usage:
 *   const fake = await startFakeGcs();
 *   const storage = new Storage({ apiEndpoint: fake.url, projectId: 'test' }); // custom endpoint: no auth
 *   ...
 *   await fake.stop();
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, truncate, unlink, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Crc32c } from './crc32c.js';

// ---------------------------------------------------------------------------------------------
// Public interface
// ---------------------------------------------------------------------------------------------

export interface FakeGcsRequest {
  method: string;
  /** The path as sent, still URL-encoded (object names appear as e.g. `a%2Fb`). */
  path: string;
  /** The raw query string without the leading `?` ('' when absent). */
  query: string;
  headers: IncomingHttpHeaders;
  /** HTTP status the fake answered with (set once the response has been sent). */
  status?: number;
}

export interface FakeGcsOptions {
  /** Parent directory for object data; a fresh subdirectory is made in it and removed on stop(). Default: os.tmpdir(). */
  dir?: string;
  /** Create a missing bucket on the first upload into it (default true). Reads and lists of a missing bucket still answer 404. */
  autoCreateBuckets?: boolean;
  /** Clock in epoch milliseconds (default Date.now); lets tests move past a retention time. */
  now?: () => number;
}

export interface FakeGcsFailure {
  /** Only requests with this method (any method when absent). */
  method?: string;
  /** Only requests whose raw path contains this string / matches this RegExp (any path when absent). */
  path?: string | RegExp;
  /** HTTP status to answer with, e.g. 503. */
  status: number;
  /** How many matching requests to fail (default 1). */
  times?: number;
  message?: string;
}

export interface FakeGcsObjectInfo {
  bucket: string;
  name: string;
  size: number;
  generation: string;
  metageneration: string;
  contentType: string;
  md5Hash: string;
  crc32c: string;
  metadata: Record<string, string>;
}

export interface FakeGcs {
  /** Base URL, e.g. http://127.0.0.1:PORT. Pass it as `apiEndpoint` to `new Storage(...)`. */
  url: string;
  /** Close the server (and all open connections) and delete the data directory. */
  stop(): Promise<void>;
  /** Every request seen, in arrival order. */
  requests: FakeGcsRequest[];
  /** Answer the next matching request(s) with an error instead of handling them (for retry tests). */
  failNext(failure: FakeGcsFailure): void;
  /** Live objects of a bucket in listing order (empty when the bucket does not exist). */
  listObjects(bucket: string): FakeGcsObjectInfo[];
  /** The bytes of a live object, bypassing HTTP. Throws when absent. */
  readObject(bucket: string, name: string): Promise<Buffer>;
  /** Number of resumable upload sessions not yet finalized or cancelled. */
  openUploadSessions(): number;
}

// ---------------------------------------------------------------------------------------------
// Errors in Google's JSON error shape
// ---------------------------------------------------------------------------------------------

class GcsError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string,
    readonly extra: Record<string, string> = {},
  ) {
    super(message);
  }
}

const noSuchObject = (bucket: string, name: string): GcsError =>
  new GcsError(404, `No such object: ${bucket}/${name}`, 'notFound');
const noSuchBucket = (): GcsError => new GcsError(404, 'The specified bucket does not exist.', 'notFound');
const preconditionFailed = (): GcsError =>
  new GcsError(412, 'At least one of the pre-conditions you specified did not hold.', 'conditionNotMet', {
    locationType: 'header',
    location: 'If-Match',
  });
const notModified = (): GcsError => new GcsError(304, 'Not Modified', 'notModified');
const invalid = (message: string, reason = 'invalid'): GcsError => new GcsError(400, message, reason);
const notImplemented = (what: string): GcsError =>
  new GcsError(501, `fake GCS does not implement ${what}`, 'notImplemented');

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

type RetentionMode = 'Unlocked' | 'Locked';
interface Retention {
  mode: RetentionMode;
  retainUntilTime: string;
}

interface ObjectRecord {
  bucket: string;
  name: string;
  generation: string;
  metageneration: number;
  size: number;
  md5Hash: string;
  crc32c: string;
  file: string;
  contentType: string;
  contentEncoding?: string;
  contentDisposition?: string;
  contentLanguage?: string;
  cacheControl?: string;
  customTime?: string;
  metadata: Record<string, string>;
  storageClass: string;
  timeCreated: string;
  updated: string;
  retention?: Retention;
  retentionExpirationTime?: string;
  temporaryHold?: boolean;
  eventBasedHold?: boolean;
}

interface BucketRecord {
  name: string;
  timeCreated: string;
  updated: string;
  metageneration: number;
  location: string;
  storageClass: string;
  objectRetention: boolean;
  retentionPeriodSeconds?: number;
  retentionEffectiveTime?: string;
  labels: Record<string, string>;
  objects: Map<string, ObjectRecord>;
  sorted: string[] | null;
}

/** Writable object fields as they come in a request body. `null` means "clear" (patch/update). */
interface ObjectMetaInput {
  name?: string;
  contentType?: string | null;
  contentEncoding?: string | null;
  contentDisposition?: string | null;
  contentLanguage?: string | null;
  cacheControl?: string | null;
  customTime?: string | null;
  metadata?: Record<string, string | null> | null;
  storageClass?: string;
  retention?: Retention | null;
  temporaryHold?: boolean | null;
  eventBasedHold?: boolean | null;
  crc32c?: string;
  md5Hash?: string;
}

interface Preconditions {
  ifGenerationMatch?: bigint;
  ifGenerationNotMatch?: bigint;
  ifMetagenerationMatch?: bigint;
  ifMetagenerationNotMatch?: bigint;
}

interface Hashes {
  size: number;
  md5Hash: string;
  crc32c: string;
}

interface UploadSession {
  id: string;
  bucket: string;
  name: string;
  file: string;
  persisted: number;
  declaredSize?: number;
  contentType: string;
  meta: ObjectMetaInput;
  preconditions: Preconditions;
  state: 'open' | 'done' | 'failed';
  busy: boolean;
  result?: ObjectRecord;
  error?: GcsError;
}

const STORAGE_CLASSES = new Set([
  'STANDARD',
  'NEARLINE',
  'COLDLINE',
  'ARCHIVE',
  'MULTI_REGIONAL',
  'REGIONAL',
  'DURABLE_REDUCED_AVAILABILITY',
]);
const JSON_TYPE = 'application/json; charset=UTF-8';
const MAX_JSON_BODY = 8 * 1024 * 1024;
const MAX_OBJECT_NAME_BYTES = 1024;
const MAX_RETENTION_MS = 100 * 365.25 * 24 * 3600 * 1000;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

function utf8Compare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

function isClientAbort(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return (
    !!e &&
    (e.code === 'ECONNRESET' ||
      e.code === 'EPIPE' ||
      e.code === 'ERR_STREAM_PREMATURE_CLOSE' ||
      e.code === 'ERR_STREAM_DESTROYED' ||
      e.message === 'aborted')
  );
}

function logUnexpected(context: string, err: unknown): void {
  if (isClientAbort(err)) return; // the client went away; nothing to report
  console.error(`[fake-gcs] ${context}:`, err);
}

async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') logUnexpected(`unlink ${path}`, err);
  }
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': JSON_TYPE,
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-cache, no-store, max-age=0, must-revalidate',
    ...headers,
  });
  res.end(text);
}

function sendEmpty(
  res: ServerResponse,
  status: number,
  headers: Record<string, string> = {},
  statusMessage?: string,
): void {
  if (statusMessage) res.statusMessage = statusMessage;
  res.writeHead(status, { 'Content-Length': '0', ...headers });
  res.end();
}

function sendError(res: ServerResponse, err: GcsError): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  if (err.status === 304) {
    sendEmpty(res, 304);
    return;
  }
  sendJson(res, err.status, {
    error: {
      code: err.status,
      message: err.message,
      errors: [{ message: err.message, domain: 'global', reason: err.reason, ...err.extra }],
    },
  });
}

/** Consume and discard the rest of a request body. */
async function drain(req: IncomingMessage): Promise<void> {
  for await (const _chunk of req) {
    // discard
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) throw invalid(`Request body larger than ${limit} bytes`);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

function parseJsonBody(buf: Buffer): Record<string, unknown> {
  if (buf.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString('utf8'));
  } catch {
    throw invalid('Parse Error', 'parseError');
  }
  const rec = asRecord(parsed);
  if (!rec) throw invalid('Parse Error: the request body must be a JSON object', 'parseError');
  return rec;
}

class BlobWriter {
  size = 0;
  private readonly md5 = createHash('md5');
  private readonly crc = new Crc32c();

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(path: string): Promise<BlobWriter> {
    return new BlobWriter(path, await open(path, 'wx'));
  }

  async write(buf: Buffer): Promise<void> {
    if (buf.length === 0) return;
    this.md5.update(buf);
    this.crc.update(buf);
    this.size += buf.length;
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, off, buf.length - off);
      off += bytesWritten;
    }
  }

  async finish(): Promise<Hashes> {
    await this.fh.close();
    return { size: this.size, md5Hash: this.md5.digest('base64'), crc32c: this.crc.base64() };
  }

  async abort(): Promise<void> {
    try {
      await this.fh.close();
    } catch (err) {
      logUnexpected('close aborted upload', err);
    }
    await removeFile(this.path);
  }
}

async function hashFile(path: string): Promise<Hashes> {
  const md5 = createHash('md5');
  const crc = new Crc32c();
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    const b = chunk as Buffer;
    md5.update(b);
    crc.update(b);
    size += b.length;
  }
  return { size, md5Hash: md5.digest('base64'), crc32c: crc.base64() };
}

function parseXGoogHash(v: string | string[] | undefined): { crc32c?: string; md5?: string } {
  const out: { crc32c?: string; md5?: string } = {};
  const values = Array.isArray(v) ? v : v ? [v] : [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const i = part.indexOf('=');
      if (i < 0) continue;
      const key = part.slice(0, i).trim().toLowerCase();
      const val = part.slice(i + 1).trim();
      if (key === 'crc32c') out.crc32c = val;
      else if (key === 'md5') out.md5 = val;
    }
  }
  return out;
}

function checkHashes(hashes: Hashes, meta: ObjectMetaInput, header: { crc32c?: string; md5?: string }): void {
  const crcs = [meta.crc32c, header.crc32c].filter((x): x is string => !!x);
  const md5s = [meta.md5Hash, header.md5].filter((x): x is string => !!x);
  for (const c of crcs) {
    if (c !== hashes.crc32c)
      throw invalid(`Provided CRC32C "${c}" doesn't match calculated CRC32C "${hashes.crc32c}".`);
  }
  for (const m of md5s) {
    if (m !== hashes.md5Hash)
      throw invalid(`Provided MD5 hash "${m}" doesn't match calculated MD5 hash "${hashes.md5Hash}".`);
  }
}

function parsePreconditions(q: URLSearchParams): Preconditions {
  const out: Preconditions = {};
  for (const key of [
    'ifGenerationMatch',
    'ifGenerationNotMatch',
    'ifMetagenerationMatch',
    'ifMetagenerationNotMatch',
  ] as const) {
    const v = q.get(key);
    if (v === null) continue;
    if (!/^-?\d+$/.test(v)) throw invalid(`Invalid argument: ${key}=${v}`);
    out[key] = BigInt(v);
  }
  return out;
}

/**
 * Evaluate preconditions against the current live object (undefined when absent).
 * `read` requests answer 304 for a failed *NotMatch; everything else answers 412.
 */
function checkPreconditions(o: ObjectRecord | undefined, p: Preconditions, kind: 'read' | 'write'): void {
  const gen = o ? BigInt(o.generation) : 0n;
  if (p.ifGenerationMatch !== undefined) {
    if (p.ifGenerationMatch === 0n ? o !== undefined : !o || gen !== p.ifGenerationMatch)
      throw preconditionFailed();
  }
  if (p.ifMetagenerationMatch !== undefined) {
    if (!o || BigInt(o.metageneration) !== p.ifMetagenerationMatch) throw preconditionFailed();
  }
  const failNot = kind === 'read' ? notModified : preconditionFailed;
  if (p.ifGenerationNotMatch !== undefined) {
    if (p.ifGenerationNotMatch === 0n ? o === undefined : !!o && gen === p.ifGenerationNotMatch)
      throw failNot();
  }
  if (p.ifMetagenerationNotMatch !== undefined) {
    if (o && BigInt(o.metageneration) === p.ifMetagenerationNotMatch) throw failNot();
  }
}

function validateObjectName(name: string | undefined): string {
  if (name === undefined || name === '') throw invalid('Required', 'required');
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_OBJECT_NAME_BYTES || /[\r\n]/.test(name) || name === '.' || name === '..') {
    throw invalid(`The specified object name is not valid: ${JSON.stringify(name)}`);
  }
  if (name.startsWith('.well-known/acme-challenge/'))
    throw invalid('The specified object name is not valid.');
  return name;
}

function validateBucketName(name: string): void {
  const ok =
    /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/.test(name) &&
    name.split('.').every((p) => p.length > 0 && p.length <= 63) &&
    (name.includes('.') || name.length <= 63) &&
    !name.startsWith('goog') &&
    !/^\d+\.\d+\.\d+\.\d+$/.test(name);
  if (!ok) throw invalid(`Invalid bucket name: '${name}'`);
}

function optString(r: Record<string, unknown>, key: string): string | null | undefined {
  const v = r[key];
  if (v === undefined || v === null) return v;
  if (typeof v !== 'string') throw invalid(`Invalid value for ${key}: expected a string`);
  return v;
}

function optBool(r: Record<string, unknown>, key: string): boolean | null | undefined {
  const v = r[key];
  if (v === undefined || v === null) return v;
  if (typeof v !== 'boolean') throw invalid(`Invalid value for ${key}: expected a boolean`);
  return v;
}

function parseRetention(v: unknown): Retention | null | undefined {
  if (v === undefined || v === null) return v;
  const r = asRecord(v);
  if (!r) throw invalid('Invalid value for retention: expected an object');
  const mode = r.mode;
  if (mode !== 'Unlocked' && mode !== 'Locked') {
    throw invalid(`Invalid retention mode ${JSON.stringify(mode)}: must be "Unlocked" or "Locked"`);
  }
  const t = r.retainUntilTime;
  if (typeof t !== 'string' || Number.isNaN(Date.parse(t))) {
    throw invalid(`Invalid retention.retainUntilTime ${JSON.stringify(t)}: expected an RFC 3339 timestamp`);
  }
  return { mode, retainUntilTime: new Date(Date.parse(t)).toISOString() };
}

function parseObjectMeta(body: Record<string, unknown>): ObjectMetaInput {
  const out: ObjectMetaInput = {};
  const name = optString(body, 'name');
  if (typeof name === 'string') out.name = name;
  for (const key of [
    'contentType',
    'contentEncoding',
    'contentDisposition',
    'contentLanguage',
    'cacheControl',
  ] as const) {
    const v = optString(body, key);
    if (v !== undefined) out[key] = v;
  }
  const customTime = optString(body, 'customTime');
  if (customTime !== undefined) {
    if (customTime !== null && Number.isNaN(Date.parse(customTime)))
      throw invalid('Invalid value for customTime');
    out.customTime = customTime === null ? null : new Date(Date.parse(customTime)).toISOString();
  }
  if (body.metadata !== undefined) {
    if (body.metadata === null) out.metadata = null;
    else {
      const m = asRecord(body.metadata);
      if (!m) throw invalid('Invalid value for metadata: expected an object');
      const md: Record<string, string | null> = {};
      for (const [k, v] of Object.entries(m)) {
        if (v === null) md[k] = null;
        else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') md[k] = String(v);
        else throw invalid(`Invalid value for metadata.${k}: expected a string`);
      }
      out.metadata = md;
    }
  }
  const storageClass = optString(body, 'storageClass');
  if (typeof storageClass === 'string') {
    if (!STORAGE_CLASSES.has(storageClass)) throw invalid(`Invalid storage class: ${storageClass}`);
    out.storageClass = storageClass;
  }
  const retention = parseRetention(body.retention);
  if (retention !== undefined) out.retention = retention;
  const th = optBool(body, 'temporaryHold');
  if (th !== undefined) out.temporaryHold = th;
  const eh = optBool(body, 'eventBasedHold');
  if (eh !== undefined) out.eventBasedHold = eh;
  const crc = optString(body, 'crc32c');
  if (typeof crc === 'string') out.crc32c = crc;
  const md5 = optString(body, 'md5Hash');
  if (typeof md5 === 'string') out.md5Hash = md5;
  return out;
}

/** `fields` partial-response selector: `a,b(c,d),e/f`. */
type FieldTree = Map<string, FieldTree | true>;

function parseFields(s: string): FieldTree {
  let i = 0;
  const parseList = (closing: boolean): FieldTree => {
    const tree: FieldTree = new Map();
    for (;;) {
      let name = '';
      while (i < s.length && !',()'.includes(s[i]!)) name += s[i++];
      name = name.trim();
      if (!name) throw invalid(`Invalid field selection ${s}`, 'invalidParameter');
      let sub: FieldTree | true = true;
      if (s[i] === '(') {
        i++;
        sub = parseList(true);
      }
      // a/b/c is a nested path
      const path = name.split('/');
      let node = tree;
      for (let k = 0; k < path.length - 1; k++) {
        const key = path[k]!;
        const existing = node.get(key);
        const next: FieldTree = existing instanceof Map ? existing : new Map();
        if (existing !== true) node.set(key, next);
        if (existing === true) break;
        node = next;
      }
      if (node.get(path[path.length - 1]!) !== true) node.set(path[path.length - 1]!, sub);
      if (s[i] === ',') {
        i++;
        continue;
      }
      if (s[i] === ')') {
        if (!closing) throw invalid(`Invalid field selection ${s}`, 'invalidParameter');
        i++;
        return tree;
      }
      if (i >= s.length) {
        if (closing) throw invalid(`Invalid field selection ${s}`, 'invalidParameter');
        return tree;
      }
    }
  };
  return parseList(false);
}

function applyFields(value: unknown, tree: FieldTree): unknown {
  if (Array.isArray(value)) return value.map((v) => applyFields(v, tree));
  const r = asRecord(value);
  if (!r) return value;
  const out: Record<string, unknown> = {};
  for (const [k, sub] of tree) {
    if (!(k in r)) continue;
    out[k] = sub === true ? r[k] : applyFields(r[k], sub);
  }
  return out;
}

interface PageToken {
  k: string;
  p: boolean;
}

function encodePageToken(t: PageToken): string {
  return Buffer.from(JSON.stringify(t), 'utf8').toString('base64url');
}

function decodePageToken(s: string): PageToken {
  try {
    const v = asRecord(JSON.parse(Buffer.from(s, 'base64url').toString('utf8')));
    if (v && typeof v.k === 'string' && typeof v.p === 'boolean') return { k: v.k, p: v.p };
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw err;
  }
  throw invalid(`Invalid pageToken: ${s}`, 'invalidParameter');
}

// ---------------------------------------------------------------------------------------------
// Multipart/related parser (streaming; the media part goes straight to a BlobWriter)
// ---------------------------------------------------------------------------------------------

interface MultipartResult {
  meta: Record<string, unknown>;
  mediaContentType?: string;
}

function parsePartHeaders(text: string): Record<string, string> {
  const h: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) h[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return h;
}

async function receiveMultipart(
  req: IncomingMessage,
  boundary: string,
  writer: BlobWriter,
): Promise<MultipartResult> {
  const firstDelim = Buffer.from(`--${boundary}`);
  const delim = Buffer.from(`\r\n--${boundary}`);
  const headerEnd = Buffer.from('\r\n\r\n');
  const malformed = (why: string): GcsError => invalid(`Malformed multipart body: ${why}`);
  type State = 'preamble' | 'metaHeaders' | 'metaBody' | 'mediaHeaders' | 'media' | 'epilogue';
  let state = 'preamble' as State;
  let buf: Buffer = Buffer.alloc(0);
  let metaText = '';
  let metaHeaders: Record<string, string> = {};
  let mediaHeaders: Record<string, string> = {};

  const step = async (): Promise<boolean> => {
    switch (state) {
      case 'preamble': {
        const i = buf.indexOf(firstDelim);
        if (i < 0) return false;
        buf = buf.subarray(i + firstDelim.length);
        state = 'metaHeaders';
        return true;
      }
      case 'metaHeaders':
      case 'mediaHeaders': {
        if (buf.length >= 2 && buf[0] === 0x2d && buf[1] === 0x2d)
          throw malformed('expected two parts (metadata, media)');
        const i = buf.indexOf(headerEnd);
        if (i < 0) return false;
        const headers = parsePartHeaders(buf.subarray(0, i).toString('latin1'));
        buf = buf.subarray(i + headerEnd.length);
        if (state === 'metaHeaders') {
          metaHeaders = headers;
          state = 'metaBody';
        } else {
          mediaHeaders = headers;
          state = 'media';
        }
        return true;
      }
      case 'metaBody': {
        const i = buf.indexOf(delim);
        if (i < 0) return false;
        metaText = buf.subarray(0, i).toString('utf8');
        buf = buf.subarray(i + delim.length);
        state = 'mediaHeaders';
        return true;
      }
      case 'media': {
        const i = buf.indexOf(delim);
        if (i >= 0) {
          await writer.write(buf.subarray(0, i));
          buf = buf.subarray(i + delim.length);
          state = 'epilogue';
          return true;
        }
        // keep a tail that could be the start of the delimiter
        const keep = Math.min(buf.length, delim.length - 1);
        if (buf.length > keep) {
          await writer.write(buf.subarray(0, buf.length - keep));
          buf = Buffer.from(buf.subarray(buf.length - keep));
        }
        return false;
      }
      case 'epilogue': {
        if (buf.length < 2) return false;
        if (!(buf[0] === 0x2d && buf[1] === 0x2d))
          throw malformed('expected exactly two parts (metadata, media)');
        buf = Buffer.alloc(0);
        return false;
      }
    }
  };

  for await (const chunk of req) {
    const c = chunk as Buffer;
    buf = buf.length ? Buffer.concat([buf, c]) : c;
    while (await step()) {
      // keep stepping while progress is made
    }
    if (state !== 'media' && state !== 'epilogue' && buf.length > MAX_JSON_BODY)
      throw malformed('part headers or metadata too large');
  }
  if (state !== 'epilogue') throw malformed('unexpected end of body (missing closing boundary)');
  if (buf.length > 0 && !(buf[0] === 0x2d && buf[1] === 0x2d)) throw malformed('missing closing boundary');
  const metaType = (metaHeaders['content-type'] ?? 'application/json').toLowerCase();
  if (!metaType.startsWith('application/json'))
    throw malformed('the first part must be application/json metadata');
  return {
    meta: parseJsonBody(Buffer.from(metaText, 'utf8')),
    mediaContentType: mediaHeaders['content-type'],
  };
}

function multipartBoundary(contentType: string | undefined): string {
  const ct = contentType ?? '';
  if (!/^multipart\/related\b/i.test(ct)) {
    throw invalid(`uploadType=multipart requires Content-Type multipart/related, got ${JSON.stringify(ct)}`);
  }
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(ct);
  const b = m?.[1] ?? m?.[2];
  if (!b) throw invalid('multipart/related body without a boundary parameter');
  return b;
}

// ---------------------------------------------------------------------------------------------
// Content-Range (resumable uploads) and Range (downloads)
// ---------------------------------------------------------------------------------------------

type ContentRange =
  | { kind: 'query'; total: number | null }
  | { kind: 'chunk'; first: number; last: number | null; total: number | null };

function parseContentRange(v: string): ContentRange {
  const s = v.trim();
  let m = /^bytes \*\/(\d+|\*)$/.exec(s);
  if (m) return { kind: 'query', total: m[1] === '*' ? null : Number(m[1]) };
  m = /^bytes (\d+)-(-1|\d+|\*)\/(\d+|\*)$/.exec(s);
  if (m) {
    const first = Number(m[1]);
    const last = m[2] === '*' ? null : Number(m[2]);
    const total = m[3] === '*' ? null : Number(m[3]);
    if (last !== null && last < first - 1) throw invalid(`Invalid Content-Range: ${v}`);
    if (total !== null && last !== null && last >= total) throw invalid(`Invalid Content-Range: ${v}`);
    return { kind: 'chunk', first, last, total };
  }
  throw invalid(`Invalid Content-Range header: ${v}`);
}

/** Returns [start, end] inclusive, 'unsatisfiable', or null to serve the whole object. */
function parseRange(header: string | undefined, size: number): [number, number] | 'unsatisfiable' | null {
  if (!header || size === 0) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null; // multiple ranges or garbage: serve everything
  const [, a, b] = m;
  if (a === '' && b === '') return null;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    return [Math.max(0, size - n), size - 1];
  }
  const start = Number(a);
  if (start >= size) return 'unsatisfiable';
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (end < start) return null;
  return [start, end];
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

class FakeGcsServer {
  readonly requests: FakeGcsRequest[] = [];
  private readonly buckets = new Map<string, BucketRecord>();
  private readonly sessions = new Map<string, UploadSession>();
  private readonly failures: Array<FakeGcsFailure & { remaining: number }> = [];
  private lastGeneration = 0n;
  private fileCounter = 0;
  readonly now: () => number;
  private readonly autoCreate: boolean;

  constructor(
    readonly dataDir: string,
    opts: FakeGcsOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.autoCreate = opts.autoCreateBuckets ?? true;
  }

  // ----- bookkeeping -----

  private nowIso(): string {
    return new Date(this.now()).toISOString();
  }

  private nextGeneration(): string {
    const candidate = BigInt(Math.floor(this.now())) * 1000n;
    this.lastGeneration = candidate > this.lastGeneration ? candidate : this.lastGeneration + 1n;
    return this.lastGeneration.toString();
  }

  private newDataPath(kind: string): string {
    this.fileCounter++;
    return join(this.dataDir, `${kind}-${this.fileCounter}-${randomBytes(4).toString('hex')}`);
  }

  failNext(f: FakeGcsFailure): void {
    this.failures.push({ ...f, remaining: f.times ?? 1 });
  }

  openUploadSessions(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.state === 'open') n++;
    return n;
  }

  private createBucketRecord(name: string): BucketRecord {
    const t = this.nowIso();
    return {
      name,
      timeCreated: t,
      updated: t,
      metageneration: 1,
      location: 'US',
      storageClass: 'STANDARD',
      objectRetention: false,
      labels: {},
      objects: new Map(),
      sorted: null,
    };
  }

  private getBucket(name: string): BucketRecord {
    const b = this.buckets.get(name);
    if (!b) throw noSuchBucket();
    return b;
  }

  private getBucketForWrite(name: string): BucketRecord {
    const b = this.buckets.get(name);
    if (b) return b;
    if (!this.autoCreate) throw noSuchBucket();
    validateBucketName(name);
    const created = this.createBucketRecord(name);
    this.buckets.set(name, created);
    return created;
  }

  sortedNames(b: BucketRecord): string[] {
    if (!b.sorted) {
      b.sorted = [...b.objects.keys()]
        .map((n) => ({ n, k: Buffer.from(n, 'utf8') }))
        .sort((x, y) => Buffer.compare(x.k, y.k))
        .map((x) => x.n);
    }
    return b.sorted;
  }

  objectInfo(o: ObjectRecord): FakeGcsObjectInfo {
    return {
      bucket: o.bucket,
      name: o.name,
      size: o.size,
      generation: o.generation,
      metageneration: String(o.metageneration),
      contentType: o.contentType,
      md5Hash: o.md5Hash,
      crc32c: o.crc32c,
      metadata: { ...o.metadata },
    };
  }

  listObjectInfos(bucket: string): FakeGcsObjectInfo[] {
    const b = this.buckets.get(bucket);
    if (!b) return [];
    return this.sortedNames(b).map((n) => this.objectInfo(b.objects.get(n)!));
  }

  async readObject(bucket: string, name: string): Promise<Buffer> {
    const o = this.buckets.get(bucket)?.objects.get(name);
    if (!o) throw new Error(`fake GCS: no object ${bucket}/${name}`);
    return readFile(o.file);
  }

  // ----- resources -----

  private objectResource(o: ObjectRecord, base: string): Record<string, unknown> {
    const enc = encodeURIComponent(o.name);
    const r: Record<string, unknown> = {
      kind: 'storage#object',
      id: `${o.bucket}/${o.name}/${o.generation}`,
      selfLink: `${base}/storage/v1/b/${encodeURIComponent(o.bucket)}/o/${enc}`,
      mediaLink: `${base}/download/storage/v1/b/${encodeURIComponent(o.bucket)}/o/${enc}?generation=${o.generation}&alt=media`,
      name: o.name,
      bucket: o.bucket,
      generation: o.generation,
      metageneration: String(o.metageneration),
      contentType: o.contentType,
      storageClass: o.storageClass,
      size: String(o.size),
      md5Hash: o.md5Hash,
      crc32c: o.crc32c,
      etag: this.etag(o),
      timeCreated: o.timeCreated,
      updated: o.updated,
      timeStorageClassUpdated: o.timeCreated,
      timeFinalized: o.timeCreated,
    };
    if (o.contentEncoding) r.contentEncoding = o.contentEncoding;
    if (o.contentDisposition) r.contentDisposition = o.contentDisposition;
    if (o.contentLanguage) r.contentLanguage = o.contentLanguage;
    if (o.cacheControl) r.cacheControl = o.cacheControl;
    if (o.customTime) r.customTime = o.customTime;
    if (Object.keys(o.metadata).length > 0) r.metadata = { ...o.metadata };
    if (o.retention) r.retention = { ...o.retention };
    if (o.retentionExpirationTime) r.retentionExpirationTime = o.retentionExpirationTime;
    if (o.temporaryHold !== undefined) r.temporaryHold = o.temporaryHold;
    if (o.eventBasedHold !== undefined) r.eventBasedHold = o.eventBasedHold;
    return r;
  }

  private etag(o: ObjectRecord): string {
    return createHash('sha1')
      .update(`${o.bucket}/${o.name}#${o.generation}.${o.metageneration}`)
      .digest('base64')
      .slice(0, 12);
  }

  private bucketResource(b: BucketRecord, base: string): Record<string, unknown> {
    const r: Record<string, unknown> = {
      kind: 'storage#bucket',
      selfLink: `${base}/storage/v1/b/${encodeURIComponent(b.name)}`,
      id: b.name,
      name: b.name,
      projectNumber: '0',
      metageneration: String(b.metageneration),
      location: b.location,
      storageClass: b.storageClass,
      etag: Buffer.from(`bucket.${b.metageneration}`).toString('base64'),
      timeCreated: b.timeCreated,
      updated: b.updated,
      locationType: 'multi-region',
      iamConfiguration: {
        bucketPolicyOnly: { enabled: true },
        uniformBucketLevelAccess: { enabled: true },
        publicAccessPrevention: 'inherited',
      },
    };
    if (b.objectRetention) r.objectRetention = { mode: 'Enabled' };
    if (b.retentionPeriodSeconds !== undefined) {
      r.retentionPolicy = {
        retentionPeriod: String(b.retentionPeriodSeconds),
        effectiveTime: b.retentionEffectiveTime,
      };
    }
    if (Object.keys(b.labels).length > 0) r.labels = { ...b.labels };
    return r;
  }

  // ----- protection rules -----

  private assertNotProtected(o: ObjectRecord, verb: 'deleted' | 'overwritten'): void {
    const now = this.now();
    if (o.temporaryHold) {
      throw new GcsError(
        403,
        `Object '${o.bucket}/${o.name}' is under active Temporary hold and cannot be deleted, overwritten or archived until hold is removed.`,
        'forbidden',
      );
    }
    if (o.eventBasedHold) {
      throw new GcsError(
        403,
        `Object '${o.bucket}/${o.name}' is under active Event-Based hold and cannot be deleted, overwritten or archived until hold is removed.`,
        'forbidden',
      );
    }
    if (o.retention && Date.parse(o.retention.retainUntilTime) > now) {
      throw new GcsError(
        403,
        `Object '${o.bucket}/${o.name}' is subject to object retention (mode ${o.retention.mode}) until ${o.retention.retainUntilTime} and cannot be ${verb} before then.`,
        'retentionPolicyNotMet',
      );
    }
    if (o.retentionExpirationTime && Date.parse(o.retentionExpirationTime) > now) {
      throw new GcsError(
        403,
        `Object '${o.bucket}/${o.name}' is subject to bucket's retention policy and cannot be ${verb} until ${o.retentionExpirationTime}.`,
        'retentionPolicyNotMet',
      );
    }
  }

  private validateNewRetention(b: BucketRecord, r: Retention): void {
    if (!b.objectRetention) {
      throw invalid(
        `Object retention is not enabled on bucket '${b.name}': create the bucket with enableObjectRetention=true to set a retention configuration on its objects.`,
      );
    }
    const t = Date.parse(r.retainUntilTime);
    const now = this.now();
    if (t <= now) throw invalid(`retention.retainUntilTime ${r.retainUntilTime} must be in the future.`);
    if (t - now > MAX_RETENTION_MS)
      throw invalid('retention.retainUntilTime must be at most 100 years in the future.');
  }

  private applyRetentionChange(
    b: BucketRecord,
    o: ObjectRecord,
    next: Retention | null | undefined,
    override: boolean,
  ): void {
    if (next === undefined) return;
    const cur = o.retention;
    const unchanged = cur && next && cur.mode === next.mode && cur.retainUntilTime === next.retainUntilTime;
    if (unchanged) return;
    const now = this.now();
    if (cur && Date.parse(cur.retainUntilTime) > now) {
      const shortens = !next || Date.parse(next.retainUntilTime) < Date.parse(cur.retainUntilTime);
      if (cur.mode === 'Locked') {
        if (shortens || next?.mode !== 'Locked') {
          throw new GcsError(
            403,
            `Object '${o.bucket}/${o.name}' has a Locked retention configuration until ${cur.retainUntilTime}: it can only be extended, never reduced, removed or unlocked.`,
            'forbidden',
          );
        }
      } else if (shortens && !override) {
        throw new GcsError(
          403,
          `Reducing or removing the Unlocked retention of object '${o.bucket}/${o.name}' requires overrideUnlockedRetention=true.`,
          'forbidden',
        );
      }
    }
    if (next) this.validateNewRetention(b, next);
    o.retention = next ?? undefined;
  }

  // ----- object writes -----

  private validateInsertMeta(b: BucketRecord, meta: ObjectMetaInput): void {
    if (meta.retention) this.validateNewRetention(b, meta.retention);
  }

  /**
   * Make `file` (already complete, with `hashes`) the live object `name`. Synchronous from the
   * precondition check to the swap, so concurrent writers see a consistent state.
   */
  private commitObject(
    b: BucketRecord,
    name: string,
    file: string,
    hashes: Hashes,
    meta: ObjectMetaInput,
    contentType: string,
    pre: Preconditions,
    headerHashes: { crc32c?: string; md5?: string },
  ): ObjectRecord {
    checkHashes(hashes, meta, headerHashes);
    const existing = b.objects.get(name);
    checkPreconditions(existing, pre, 'write');
    if (existing) this.assertNotProtected(existing, 'overwritten');
    this.validateInsertMeta(b, meta);
    const t = this.nowIso();
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta.metadata ?? {})) if (v !== null) metadata[k] = v;
    const o: ObjectRecord = {
      bucket: b.name,
      name,
      generation: this.nextGeneration(),
      metageneration: 1,
      size: hashes.size,
      md5Hash: hashes.md5Hash,
      crc32c: hashes.crc32c,
      file,
      contentType,
      metadata,
      storageClass: meta.storageClass ?? b.storageClass,
      timeCreated: t,
      updated: t,
    };
    if (meta.contentEncoding) o.contentEncoding = meta.contentEncoding;
    if (meta.contentDisposition) o.contentDisposition = meta.contentDisposition;
    if (meta.contentLanguage) o.contentLanguage = meta.contentLanguage;
    if (meta.cacheControl) o.cacheControl = meta.cacheControl;
    if (meta.customTime) o.customTime = meta.customTime;
    if (meta.retention) o.retention = meta.retention;
    if (meta.temporaryHold) o.temporaryHold = true;
    if (meta.eventBasedHold) o.eventBasedHold = true;
    if (b.retentionPeriodSeconds !== undefined) {
      o.retentionExpirationTime = new Date(this.now() + b.retentionPeriodSeconds * 1000).toISOString();
    }
    b.objects.set(name, o);
    b.sorted = null;
    if (existing) void removeFile(existing.file);
    return o;
  }

  private contentTypeFor(meta: ObjectMetaInput, fallback: string | undefined): string {
    return meta.contentType || fallback || 'application/octet-stream';
  }

  private async insertMedia(
    req: IncomingMessage,
    res: ServerResponse,
    b: BucketRecord,
    q: URLSearchParams,
    base: string,
  ): Promise<void> {
    const name = validateObjectName(q.get('name') ?? undefined);
    const pre = parsePreconditions(q);
    const meta: ObjectMetaInput = {};
    const ce = q.get('contentEncoding');
    if (ce) meta.contentEncoding = ce;
    checkPreconditions(b.objects.get(name), pre, 'write'); // fail fast; re-checked at commit
    const writer = await BlobWriter.create(this.newDataPath('obj'));
    let committed = false;
    try {
      for await (const chunk of req) await writer.write(chunk as Buffer);
      const hashes = await writer.finish();
      const ct = this.contentTypeFor(meta, req.headers['content-type']);
      const o = this.commitObject(
        b,
        name,
        writer.path,
        hashes,
        meta,
        ct,
        pre,
        parseXGoogHash(req.headers['x-goog-hash']),
      );
      committed = true;
      this.sendObject(res, q, o, base);
    } finally {
      if (!committed) await writer.abort();
    }
  }

  private async insertMultipart(
    req: IncomingMessage,
    res: ServerResponse,
    b: BucketRecord,
    q: URLSearchParams,
    base: string,
  ): Promise<void> {
    const boundary = multipartBoundary(req.headers['content-type']);
    const pre = parsePreconditions(q);
    const queryName = q.get('name');
    if (queryName !== null) checkPreconditions(b.objects.get(queryName), pre, 'write');
    const writer = await BlobWriter.create(this.newDataPath('obj'));
    let committed = false;
    try {
      const parsed = await receiveMultipart(req, boundary, writer);
      const hashes = await writer.finish();
      const meta = parseObjectMeta(parsed.meta);
      if (queryName !== null && meta.name !== undefined && meta.name !== queryName) {
        throw invalid(`Value '${meta.name}' in content does not agree with value '${queryName}'.`);
      }
      const name = validateObjectName(queryName ?? meta.name);
      const ce = q.get('contentEncoding');
      if (ce && !meta.contentEncoding) meta.contentEncoding = ce;
      const ct = this.contentTypeFor(meta, parsed.mediaContentType);
      const o = this.commitObject(
        b,
        name,
        writer.path,
        hashes,
        meta,
        ct,
        pre,
        parseXGoogHash(req.headers['x-goog-hash']),
      );
      committed = true;
      this.sendObject(res, q, o, base);
    } finally {
      if (!committed) await writer.abort();
    }
  }

  private async startResumable(
    req: IncomingMessage,
    res: ServerResponse,
    b: BucketRecord,
    q: URLSearchParams,
    base: string,
    rawPath: string,
  ): Promise<void> {
    const body = parseJsonBody(await readBody(req, MAX_JSON_BODY));
    const meta = parseObjectMeta(body);
    const queryName = q.get('name');
    if (queryName !== null && meta.name !== undefined && meta.name !== queryName) {
      throw invalid(`Value '${meta.name}' in content does not agree with value '${queryName}'.`);
    }
    const name = validateObjectName(queryName ?? meta.name);
    const pre = parsePreconditions(q);
    checkPreconditions(b.objects.get(name), pre, 'write');
    const existing = b.objects.get(name);
    if (existing) this.assertNotProtected(existing, 'overwritten');
    this.validateInsertMeta(b, meta);
    const ce = q.get('contentEncoding');
    if (ce && !meta.contentEncoding) meta.contentEncoding = ce;
    const xlen = req.headers['x-upload-content-length'];
    let declaredSize: number | undefined;
    if (typeof xlen === 'string' && xlen !== '') {
      if (!/^\d+$/.test(xlen)) throw invalid(`Invalid X-Upload-Content-Length: ${xlen}`);
      declaredSize = Number(xlen);
    }
    const xtype = req.headers['x-upload-content-type'];
    const contentType = this.contentTypeFor(meta, typeof xtype === 'string' ? xtype : undefined);
    const id = randomBytes(24).toString('base64url');
    const file = this.newDataPath('upload');
    const fh = await open(file, 'wx');
    await fh.close();
    const session: UploadSession = {
      id,
      bucket: b.name,
      name,
      file,
      persisted: 0,
      contentType,
      meta,
      preconditions: pre,
      state: 'open',
      busy: false,
    };
    if (declaredSize !== undefined) session.declaredSize = declaredSize;
    this.sessions.set(id, session);
    const params = new URLSearchParams({ uploadType: 'resumable', name, upload_id: id });
    const location = `${base}${rawPath}?${params.toString()}`;
    sendEmpty(res, 200, { Location: location, 'X-GUploader-UploadID': id });
  }

  private async resumablePut(
    req: IncomingMessage,
    res: ServerResponse,
    q: URLSearchParams,
    base: string,
  ): Promise<void> {
    const id = q.get('upload_id');
    if (!id)
      throw invalid('Missing upload_id: PUT on the upload path is only valid on a resumable session URI.');
    const s = this.sessions.get(id);
    if (!s) throw new GcsError(404, `No such upload session: ${id}`, 'notFound');
    if (s.state === 'done') {
      await drain(req);
      this.sendObject(res, q, s.result!, base);
      return;
    }
    if (s.state === 'failed') {
      await drain(req);
      throw s.error!;
    }
    const header = req.headers['content-range'];
    const cr: ContentRange =
      typeof header === 'string'
        ? parseContentRange(header)
        : { kind: 'chunk', first: s.persisted, last: null, total: null };
    if (cr.kind === 'query' && cr.total === null) {
      // a plain status query is answered even while another request is writing, as on GCS
      await drain(req);
      this.sendIncomplete(res, s);
      return;
    }
    if (s.busy) {
      await drain(req);
      throw new GcsError(409, 'Another request is already writing to this upload session.', 'conflict');
    }
    s.busy = true;
    try {
      await this.resumablePutLocked(s, cr, req, res, q, base);
    } finally {
      s.busy = false;
    }
  }

  private async resumablePutLocked(
    s: UploadSession,
    cr: ContentRange,
    req: IncomingMessage,
    res: ServerResponse,
    q: URLSearchParams,
    base: string,
  ): Promise<void> {
    const header = req.headers['content-range'];
    const hdrHashes = parseXGoogHash(req.headers['x-goog-hash']);

    if (cr.kind === 'query') {
      await drain(req);
      if (cr.total !== null) {
        if (cr.total < s.persisted)
          throw invalid(
            `Content-Range total ${cr.total} is smaller than the ${s.persisted} bytes already uploaded.`,
          );
        if (cr.total === s.persisted) {
          await this.finalizeSession(s, hdrHashes);
          this.sendObject(res, q, s.result!, base);
          return;
        }
      }
      this.sendIncomplete(res, s);
      return;
    }

    if (cr.first > s.persisted) {
      await drain(req);
      throw invalid(
        `Invalid request. According to the Content-Range header, the upload offset is ${cr.first} byte(s), which exceeds already uploaded size of ${s.persisted} byte(s).`,
      );
    }
    const before = s.persisted;
    let skip = s.persisted - cr.first;
    let received = 0;
    const fh = await open(s.file, 'r+');
    try {
      let pos = s.persisted;
      for await (const chunk of req) {
        let c = chunk as Buffer;
        received += c.length;
        if (skip > 0) {
          const n = Math.min(skip, c.length);
          skip -= n;
          c = c.subarray(n);
        }
        let off = 0;
        while (off < c.length) {
          const { bytesWritten } = await fh.write(c, off, c.length - off, pos);
          off += bytesWritten;
          pos += bytesWritten;
        }
        s.persisted = pos; // a client that drops the connection keeps what arrived, as on GCS
      }
    } finally {
      await fh.close();
    }
    const rollback = async (err: GcsError): Promise<never> => {
      s.persisted = before;
      await truncate(s.file, before);
      throw err;
    };
    if (cr.last !== null && received !== cr.last - cr.first + 1) {
      await rollback(
        invalid(
          `Content-Range ${String(header)} announces ${cr.last - cr.first + 1} bytes but the body had ${received}.`,
        ),
      );
    }
    let total: number | null = cr.total;
    if (cr.last === null) {
      // "bytes N-*/T": the rest of the object is in this request, so it is the last one.
      if (total !== null && total !== s.persisted) {
        await rollback(
          invalid(`Content-Range total ${total} does not match the ${s.persisted} bytes received.`),
        );
      }
      total = s.persisted;
    }
    if (total !== null && s.persisted > total) {
      await rollback(
        invalid(`Received ${s.persisted} bytes, more than the ${total} announced in Content-Range.`),
      );
    }
    if (total !== null && s.declaredSize !== undefined && total !== s.declaredSize) {
      await rollback(
        invalid(
          `Upload size ${total} does not match X-Upload-Content-Length ${s.declaredSize} given at session start.`,
        ),
      );
    }
    if (total !== null && s.persisted === total) {
      await this.finalizeSession(s, hdrHashes);
      this.sendObject(res, q, s.result!, base);
      return;
    }
    this.sendIncomplete(res, s);
  }

  private sendIncomplete(res: ServerResponse, s: UploadSession): void {
    const headers: Record<string, string> = { 'X-GUploader-UploadID': s.id };
    if (s.persisted > 0) headers.Range = `bytes=0-${s.persisted - 1}`;
    sendEmpty(res, 308, headers, 'Resume Incomplete');
  }

  private async finalizeSession(
    s: UploadSession,
    hdrHashes: { crc32c?: string; md5?: string },
  ): Promise<void> {
    try {
      const b = this.getBucketForWrite(s.bucket);
      const hashes = await hashFile(s.file);
      s.result = this.commitObject(
        b,
        s.name,
        s.file,
        hashes,
        s.meta,
        s.contentType,
        s.preconditions,
        hdrHashes,
      );
      s.state = 'done';
    } catch (err) {
      const e = err instanceof GcsError ? err : new GcsError(500, String(err), 'backendError');
      s.state = 'failed';
      s.error = e;
      await removeFile(s.file);
      throw e;
    }
  }

  private async cancelResumable(
    req: IncomingMessage,
    res: ServerResponse,
    q: URLSearchParams,
  ): Promise<void> {
    await drain(req);
    const id = q.get('upload_id');
    const s = id ? this.sessions.get(id) : undefined;
    if (!s) throw new GcsError(404, `No such upload session: ${String(id)}`, 'notFound');
    this.sessions.delete(s.id);
    if (s.state !== 'done') await removeFile(s.file);
    sendEmpty(res, 499, {}, 'Client Closed Request');
  }

  private sendObject(res: ServerResponse, q: URLSearchParams, o: ObjectRecord, base: string): void {
    this.sendResource(res, q, this.objectResource(o, base));
  }

  private sendResource(
    res: ServerResponse,
    q: URLSearchParams,
    resource: Record<string, unknown>,
    status = 200,
  ): void {
    const fields = q.get('fields');
    sendJson(res, status, fields ? applyFields(resource, parseFields(fields)) : resource);
  }

  // ----- object reads / metadata -----

  private lookupObject(b: BucketRecord, name: string, q: URLSearchParams): ObjectRecord {
    const o = b.objects.get(name);
    const gen = q.get('generation');
    if (!o || (gen !== null && gen !== o.generation)) throw noSuchObject(b.name, name);
    return o;
  }

  private async sendMedia(
    req: IncomingMessage,
    res: ServerResponse,
    b: BucketRecord,
    name: string,
    q: URLSearchParams,
  ): Promise<void> {
    const o = this.lookupObject(b, name, q);
    checkPreconditions(o, parsePreconditions(q), 'read');
    let fh: FileHandle;
    try {
      fh = await open(o.file, 'r');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') throw noSuchObject(b.name, name); // deleted meanwhile
      throw err;
    }
    const headers: Record<string, string> = {
      'Content-Type': o.contentType,
      'Accept-Ranges': 'bytes',
      ETag: `"${o.md5Hash}"`,
      'Last-Modified': new Date(o.updated).toUTCString(),
      'Cache-Control': o.cacheControl ?? 'no-cache, no-store, max-age=0, must-revalidate',
      'x-goog-generation': o.generation,
      'x-goog-metageneration': String(o.metageneration),
      'x-goog-stored-content-encoding': o.contentEncoding ?? 'identity',
      'x-goog-stored-content-length': String(o.size),
      'x-goog-storage-class': o.storageClass,
      'x-goog-hash': `crc32c=${o.crc32c},md5=${o.md5Hash}`,
    };
    if (o.contentDisposition) headers['Content-Disposition'] = o.contentDisposition;
    if (o.contentLanguage) headers['Content-Language'] = o.contentLanguage;
    for (const [k, v] of Object.entries(o.metadata)) {
      if (/^[\x21-\x7e]+$/.test(k) && /^[\x20-\x7e]*$/.test(v)) headers[`x-goog-meta-${k}`] = v;
    }
    const acceptsGzip = /\bgzip\b/i.test(String(req.headers['accept-encoding'] ?? ''));
    if (o.contentEncoding === 'gzip' && !acceptsGzip) {
      // decompressive transcoding: ranges are ignored and the length is unknown up front
      headers.Warning = '214 UploadServer gunzipped';
      res.writeHead(200, headers);
      await pipeline(fh.createReadStream(), createGunzip(), res);
      return;
    }
    if (o.contentEncoding) headers['Content-Encoding'] = o.contentEncoding;
    const range = parseRange(typeof req.headers.range === 'string' ? req.headers.range : undefined, o.size);
    if (range === 'unsatisfiable') {
      await fh.close();
      res.writeHead(416, { 'Content-Range': `bytes */${o.size}`, 'Content-Type': JSON_TYPE });
      res.end(
        JSON.stringify({
          error: {
            code: 416,
            message: 'The requested range cannot be satisfied.',
            errors: [
              {
                message: 'The requested range cannot be satisfied.',
                domain: 'global',
                reason: 'requestedRangeNotSatisfiable',
              },
            ],
          },
        }),
      );
      return;
    }
    if (range) {
      const [start, end] = range;
      headers['Content-Range'] = `bytes ${start}-${end}/${o.size}`;
      headers['Content-Length'] = String(end - start + 1);
      res.writeHead(206, headers);
      await pipeline(fh.createReadStream({ start, end }), res);
      return;
    }
    headers['Content-Length'] = String(o.size);
    res.writeHead(200, headers);
    if (o.size === 0) {
      await fh.close();
      res.end();
      return;
    }
    await pipeline(fh.createReadStream(), res);
  }

  private async patchObject(
    req: IncomingMessage,
    res: ServerResponse,
    b: BucketRecord,
    name: string,
    q: URLSearchParams,
    base: string,
    replace: boolean,
  ): Promise<void> {
    const body = parseJsonBody(await readBody(req, MAX_JSON_BODY));
    const input = parseObjectMeta(body);
    const o = this.lookupObject(b, name, q);
    checkPreconditions(o, parsePreconditions(q), 'write');
    if (input.storageClass !== undefined && input.storageClass !== o.storageClass) {
      throw invalid(
        'The storage class of an existing object can only be changed by rewriting it (objects.rewrite).',
      );
    }
    if (replace) {
      // objects.update: absent writable fields are cleared
      for (const key of [
        'contentType',
        'contentEncoding',
        'contentDisposition',
        'contentLanguage',
        'cacheControl',
        'customTime',
        'metadata',
        'temporaryHold',
        'eventBasedHold',
      ] as const) {
        if (input[key] === undefined) input[key] = null;
      }
      if (input.retention === undefined && o.retention) input.retention = null;
    }
    // validate everything before changing anything
    const draft: ObjectRecord = { ...o, metadata: { ...o.metadata } };
    this.applyRetentionChange(b, draft, input.retention, q.get('overrideUnlockedRetention') === 'true');
    if (
      input.customTime !== undefined &&
      o.customTime &&
      (input.customTime === null || Date.parse(input.customTime) < Date.parse(o.customTime))
    ) {
      throw invalid('customTime cannot be removed or decreased once set.');
    }
    for (const key of [
      'contentEncoding',
      'contentDisposition',
      'contentLanguage',
      'cacheControl',
      'customTime',
    ] as const) {
      const v = input[key];
      if (v === null) delete draft[key];
      else if (v !== undefined) draft[key] = v;
    }
    if (input.contentType === null) draft.contentType = 'application/octet-stream';
    else if (input.contentType !== undefined) draft.contentType = input.contentType;
    if (input.metadata === null) draft.metadata = {};
    else if (input.metadata) {
      for (const [k, v] of Object.entries(input.metadata)) {
        if (v === null) delete draft.metadata[k];
        else draft.metadata[k] = v;
      }
    }
    for (const key of ['temporaryHold', 'eventBasedHold'] as const) {
      const v = input[key];
      if (v === null) delete draft[key];
      else if (v !== undefined) draft[key] = v;
    }
    draft.metageneration = o.metageneration + 1;
    draft.updated = this.nowIso();
    if (b.objects.get(name) !== o) throw preconditionFailed(); // replaced while we read the body
    b.objects.set(name, draft);
    this.sendObject(res, q, draft, base);
  }

  private async deleteObject(
    req: IncomingMessage,
    res: ServerResponse,
    b: BucketRecord,
    name: string,
    q: URLSearchParams,
  ): Promise<void> {
    await drain(req);
    const o = this.lookupObject(b, name, q);
    checkPreconditions(o, parsePreconditions(q), 'write');
    this.assertNotProtected(o, 'deleted');
    b.objects.delete(name);
    b.sorted = null;
    await removeFile(o.file);
    sendEmpty(res, 204);
  }

  private listObjects(b: BucketRecord, q: URLSearchParams, base: string): Record<string, unknown> {
    const prefix = q.get('prefix') ?? '';
    const delimiter = q.get('delimiter') ?? '';
    const includeTrailing = q.get('includeTrailingDelimiter') === 'true';
    const startOffset = q.get('startOffset');
    const endOffset = q.get('endOffset');
    if (q.get('matchGlob')) throw notImplemented('objects.list matchGlob');
    let max = 1000;
    const mr = q.get('maxResults');
    if (mr !== null) {
      if (!/^\d+$/.test(mr)) throw invalid(`Invalid value for maxResults: ${mr}`, 'invalidParameter');
      const n = Number(mr);
      if (n > 0) max = Math.min(n, 1000);
    }
    const pt = q.get('pageToken');
    const token = pt ? decodePageToken(pt) : undefined;

    const names = this.sortedNames(b);
    let from = prefix;
    if (startOffset && utf8Compare(startOffset, from) > 0) from = startOffset;
    if (token && utf8Compare(token.k, from) > 0) from = token.k;
    let lo = 0;
    let hi = names.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (utf8Compare(names[mid]!, from) < 0) lo = mid + 1;
      else hi = mid;
    }

    const items: Record<string, unknown>[] = [];
    const prefixes: string[] = [];
    let count = 0;
    let last: PageToken | undefined;
    let more = false;
    let lastPrefix: string | undefined;
    for (let i = lo; i < names.length; i++) {
      const name = names[i]!;
      if (!name.startsWith(prefix)) break; // names sharing a prefix are contiguous in byte order
      if (endOffset && utf8Compare(name, endOffset) >= 0) break;
      if (token && (token.p ? name.startsWith(token.k) : utf8Compare(name, token.k) <= 0)) continue;
      const o = b.objects.get(name)!;
      const rest = name.slice(prefix.length);
      const d = delimiter ? rest.indexOf(delimiter) : -1;
      if (d >= 0) {
        const p = prefix + rest.slice(0, d + delimiter.length);
        if (p === lastPrefix) continue;
        if (count >= max) {
          more = true;
          break;
        }
        prefixes.push(p);
        lastPrefix = p;
        count++;
        last = { k: p, p: true };
        if (includeTrailing && name === p) items.push(this.objectResource(o, base));
        continue;
      }
      if (count >= max) {
        more = true;
        break;
      }
      items.push(this.objectResource(o, base));
      count++;
      last = { k: name, p: false };
    }
    const out: Record<string, unknown> = { kind: 'storage#objects' };
    if (more && last) out.nextPageToken = encodePageToken(last);
    if (prefixes.length > 0) out.prefixes = prefixes;
    if (items.length > 0) out.items = items;
    return out;
  }

  // ----- buckets -----

  private async insertBucket(
    req: IncomingMessage,
    res: ServerResponse,
    q: URLSearchParams,
    base: string,
  ): Promise<void> {
    const body = parseJsonBody(await readBody(req, MAX_JSON_BODY));
    if (!q.get('project')) throw invalid('Required parameter: project', 'required');
    const name = body.name;
    if (typeof name !== 'string' || name === '') throw invalid('Required', 'required');
    validateBucketName(name);
    if (this.buckets.has(name)) {
      throw new GcsError(
        409,
        'Your previous request to create the named bucket succeeded and you already own it.',
        'conflict',
      );
    }
    const b = this.createBucketRecord(name);
    if (typeof body.location === 'string') b.location = body.location.toUpperCase();
    if (typeof body.storageClass === 'string') {
      if (!STORAGE_CLASSES.has(body.storageClass))
        throw invalid(`Invalid storage class: ${body.storageClass}`);
      b.storageClass = body.storageClass;
    }
    b.objectRetention = q.get('enableObjectRetention') === 'true';
    const rp = asRecord(body.retentionPolicy);
    if (rp && rp.retentionPeriod !== undefined) {
      const secs = Number(rp.retentionPeriod);
      if (!Number.isInteger(secs) || secs <= 0) throw invalid('Invalid retentionPolicy.retentionPeriod');
      b.retentionPeriodSeconds = secs;
      b.retentionEffectiveTime = b.timeCreated;
    }
    const labels = asRecord(body.labels);
    if (labels) for (const [k, v] of Object.entries(labels)) if (typeof v === 'string') b.labels[k] = v;
    this.buckets.set(name, b);
    this.sendResource(res, q, this.bucketResource(b, base));
  }

  private async deleteBucket(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    await drain(req);
    const b = this.getBucket(name);
    if (b.objects.size > 0)
      throw new GcsError(409, 'The bucket you tried to delete is not empty.', 'conflict');
    this.buckets.delete(name);
    sendEmpty(res, 204);
  }

  // ----- dispatch -----

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const rawUrl = req.url ?? '/';
    const qi = rawUrl.indexOf('?');
    const rawPath = qi >= 0 ? rawUrl.slice(0, qi) : rawUrl;
    const rawQuery = qi >= 0 ? rawUrl.slice(qi + 1) : '';
    const entry: FakeGcsRequest = { method, path: rawPath, query: rawQuery, headers: { ...req.headers } };
    this.requests.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
    });

    try {
      const failure = this.failures.find(
        (f) =>
          f.remaining > 0 &&
          (!f.method || f.method.toUpperCase() === method) &&
          (!f.path || (typeof f.path === 'string' ? rawPath.includes(f.path) : f.path.test(rawPath))),
      );
      if (failure) {
        failure.remaining--;
        if (failure.remaining === 0) this.failures.splice(this.failures.indexOf(failure), 1);
        await drain(req);
        throw new GcsError(
          failure.status,
          failure.message ?? `Injected failure (HTTP ${failure.status})`,
          'injectedFailure',
        );
      }
      await this.route(req, res, method, rawPath, new URLSearchParams(rawQuery));
    } catch (err) {
      if (err instanceof GcsError) {
        sendError(res, err);
        return;
      }
      if (isClientAbort(err) || req.destroyed) {
        if (!res.headersSent && !res.destroyed) res.destroy();
        return; // the client went away mid-request: nothing to answer
      }
      logUnexpected(`${method} ${rawUrl}`, err);
      sendError(res, new GcsError(500, `fake GCS internal error: ${String(err)}`, 'backendError'));
    }
  }

  private async route(
    req: IncomingMessage,
    res: ServerResponse,
    method: string,
    rawPath: string,
    q: URLSearchParams,
  ): Promise<void> {
    const base = `http://${req.headers.host ?? 'localhost'}`;
    let api: 'json' | 'upload' | 'download';
    let rest: string;
    if (rawPath.startsWith('/storage/v1/')) {
      api = 'json';
      rest = rawPath.slice('/storage/v1/'.length);
    } else if (rawPath.startsWith('/upload/storage/v1/')) {
      api = 'upload';
      rest = rawPath.slice('/upload/storage/v1/'.length);
    } else if (rawPath.startsWith('/download/storage/v1/')) {
      api = 'download';
      rest = rawPath.slice('/download/storage/v1/'.length);
    } else {
      await drain(req);
      throw notImplemented(
        `${method} ${rawPath} (only the JSON API under /storage/v1, /upload/storage/v1 and /download/storage/v1 exists)`,
      );
    }
    const seg = rest.split('/');
    const decode = (s: string): string => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw invalid(`Invalid URL encoding in path: ${s}`);
      }
    };
    if (seg[0] !== 'b') {
      await drain(req);
      throw notImplemented(`${method} ${rawPath}`);
    }
    // /b
    if (seg.length === 1 || (seg.length === 2 && seg[1] === '')) {
      if (api !== 'json') throw notImplemented(`${method} ${rawPath}`);
      if (method === 'POST') return this.insertBucket(req, res, q, base);
      if (method === 'GET') {
        await drain(req);
        if (!q.get('project')) throw invalid('Required parameter: project', 'required');
        const prefix = q.get('prefix') ?? '';
        const items = [...this.buckets.values()]
          .filter((b) => b.name.startsWith(prefix))
          .sort((x, y) => utf8Compare(x.name, y.name))
          .map((b) => this.bucketResource(b, base));
        this.sendResource(
          res,
          q,
          items.length ? { kind: 'storage#buckets', items } : { kind: 'storage#buckets' },
        );
        return;
      }
      throw notImplemented(`${method} ${rawPath}`);
    }
    const bucketName = decode(seg[1]!);
    // /b/BUCKET
    if (seg.length === 2) {
      if (api !== 'json') throw notImplemented(`${method} ${rawPath}`);
      if (method === 'GET') {
        await drain(req);
        this.sendResource(res, q, this.bucketResource(this.getBucket(bucketName), base));
        return;
      }
      if (method === 'DELETE') return this.deleteBucket(req, res, bucketName);
      await drain(req);
      throw notImplemented(`buckets ${method} (only insert, get, list and delete exist)`);
    }
    if (seg[2] !== 'o') {
      await drain(req);
      throw notImplemented(`${method} ${rawPath}`);
    }
    // /b/BUCKET/o
    if (seg.length === 3 || (seg.length === 4 && seg[3] === '')) {
      if (api === 'upload') {
        if (method === 'POST') {
          const uploadType = q.get('uploadType');
          const validTypes = ['media', 'multipart', 'resumable'];
          if (!uploadType || !validTypes.includes(uploadType)) {
            await drain(req);
            throw invalid(
              'Upload requests must include an uploadType URL parameter and a URL-encoded object name.',
            );
          }
          let b: BucketRecord;
          try {
            b = this.getBucketForWrite(bucketName);
          } catch (err) {
            await drain(req);
            throw err;
          }
          if (uploadType === 'media') return this.insertMedia(req, res, b, q, base);
          if (uploadType === 'multipart') return this.insertMultipart(req, res, b, q, base);
          return this.startResumable(req, res, b, q, base, rawPath);
        }
        if (method === 'PUT') return this.resumablePut(req, res, q, base);
        if (method === 'DELETE') return this.cancelResumable(req, res, q);
        await drain(req);
        throw notImplemented(`${method} ${rawPath}`);
      }
      if (api === 'json' && method === 'GET') {
        await drain(req);
        const b = this.getBucket(bucketName);
        this.sendResource(res, q, this.listObjects(b, q, base));
        return;
      }
      await drain(req);
      if (api === 'json' && method === 'POST') {
        throw invalid('Object uploads go to /upload/storage/v1/b/BUCKET/o with an uploadType parameter.');
      }
      throw notImplemented(`${method} ${rawPath}`);
    }
    // /b/BUCKET/o/OBJECT (the name is URL-encoded; raw slashes are kept as part of it)
    const name = decode(seg.slice(3).join('/'));
    if (api === 'upload') {
      await drain(req);
      throw notImplemented(`${method} ${rawPath}`);
    }
    if (method === 'GET') {
      await drain(req);
      const b = this.getBucket(bucketName);
      if (api === 'download' || q.get('alt') === 'media') return this.sendMedia(req, res, b, name, q);
      const o = this.lookupObject(b, name, q);
      checkPreconditions(o, parsePreconditions(q), 'read');
      this.sendObject(res, q, o, base);
      return;
    }
    if (api !== 'json') {
      await drain(req);
      throw notImplemented(`${method} ${rawPath}`);
    }
    if (method === 'DELETE') return this.deleteObject(req, res, this.getBucket(bucketName), name, q);
    if (method === 'PATCH' || method === 'PUT') {
      const b = this.buckets.get(bucketName);
      if (!b) {
        await drain(req);
        throw noSuchBucket();
      }
      return this.patchObject(req, res, b, name, q, base, method === 'PUT');
    }
    await drain(req);
    throw notImplemented(`${method} on an object (copy, rewrite, compose, ACLs are not implemented)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

export async function startFakeGcs(opts: FakeGcsOptions = {}): Promise<FakeGcs> {
  const parent = opts.dir ?? tmpdir();
  await mkdir(parent, { recursive: true });
  const dataDir = await mkdtemp(join(parent, 'fake-gcs-'));
  const fake = new FakeGcsServer(dataDir, opts);
  const server = http.createServer((req, res) => {
    fake.handle(req, res).catch((err: unknown) => {
      logUnexpected('request handler', err);
      if (!res.headersSent) res.destroy();
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const { port } = server.address() as AddressInfo;
  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: fake.requests,
    failNext: (f) => fake.failNext(f),
    listObjects: (bucket) => fake.listObjectInfos(bucket),
    readObject: (bucket, name) => fake.readObject(bucket, name),
    openUploadSessions: () => fake.openUploadSessions(),
    stop(): Promise<void> {
      stopped ??= (async () => {
        await new Promise<void>((resolve, reject) => {
          server.close((err) => (err ? reject(err) : resolve()));
          server.closeAllConnections();
        });
        await rm(dataDir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
