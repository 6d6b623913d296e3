/**
 * Loads a generated registry into CouchDB (or the express-pouchdb stand-in) with `_bulk_docs`, and applies
 * a later day's changes (updates carry the document's current `_rev`; unpublished packages are deleted).
 *
 * Plain `fetch`: credentials in the URL (`http://user:pass@host:5984`) become a Basic Authorization header.
 * Batches are bounded by document count and by bytes; a batch the server refuses as a whole — too large
 * (413; CouchDB's default `max_document_size` is 8 MB and real packuments reach ~20 MB) or bad (400, e.g.
 * an illegal `_id`) — is split, down to single documents, which are then reported as rejected. Per-document
 * errors in a `_bulk_docs` answer (conflict, forbidden, too_large) are reported the same way.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  generateChanges,
  generatePackuments,
  packumentFileName,
  readRegistryInfo,
  type GenerateOptions,
  type Packument,
  type RegistryChange,
  type RegistryOptions,
} from './registry.js';

export interface CouchLoadOptions {
  /** documents per `_bulk_docs` request at most (default 100) */
  batchSize?: number;
  /** request body bytes per `_bulk_docs` at most, unless one document alone is bigger (default 32 MiB) */
  maxBatchBytes?: number;
  /** `_bulk_docs` requests in flight (default 4) */
  concurrency?: number;
  /** create the database if it does not exist (default true) */
  create?: boolean;
  onProgress?: (docsDone: number) => void;
}

export interface RejectedDoc {
  id: string;
  error: string;
  reason: string;
}

export interface CouchLoadResult {
  /** documents sent */
  docs: number;
  /** documents the server accepted */
  written: number;
  /** documents refused (too large, conflict, forbidden, …) */
  rejected: RejectedDoc[];
  /** attachments sent inline */
  attachments: number;
  /** `_bulk_docs` request body bytes */
  requestBytes: number;
  requests: number;
  ms: number;
}

export interface CouchChangeResult extends CouchLoadResult {
  created: number;
  updated: number;
  deleted: number;
  /** deletes of documents the database did not have */
  missing: number;
}

/** A registry to load: generator options (with an optional day), a corpus directory, or packuments. */
export type PackumentSource = GenerateOptions | string | Iterable<Packument> | AsyncIterable<Packument>;

/** Changes to apply: generator options with the day to reach, a mutated corpus directory (its last day), or changes. */
export type ChangeSource =
  (RegistryOptions & { day: number }) | string | Iterable<RegistryChange> | AsyncIterable<RegistryChange>;

interface Conn {
  base: string;
  headers: Record<string, string>;
}

function connect(url: string): Conn {
  const u = new URL(url);
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
  if (u.username || u.password) {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  }
  u.username = '';
  u.password = '';
  return { base: u.toString().replace(/\/+$/, ''), headers };
}

async function request(
  c: Conn,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${c.base}${path}`, { method, headers: c.headers, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { error: 'bad_response', reason: text.slice(0, 200) };
  }
  return { status: res.status, json };
}

function dbPath(db: string): string {
  return `/${encodeURIComponent(db)}`;
}

async function ensureDb(c: Conn, db: string): Promise<void> {
  const r = await request(c, 'PUT', dbPath(db));
  if (r.status === 201 || r.status === 202 || r.status === 412) return;
  throw new Error(`creating database ${db}: HTTP ${r.status} ${JSON.stringify(r.json)}`);
}

function isAsync<T>(x: Iterable<T> | AsyncIterable<T>): x is AsyncIterable<T> {
  return typeof (x as AsyncIterable<T>)[Symbol.asyncIterator] === 'function';
}

function isIterable<T>(x: unknown): x is Iterable<T> | AsyncIterable<T> {
  return (
    x !== null &&
    typeof x === 'object' &&
    (typeof (x as Iterable<T>)[Symbol.iterator] === 'function' ||
      typeof (x as AsyncIterable<T>)[Symbol.asyncIterator] === 'function')
  );
}

async function* iterate<T>(x: Iterable<T> | AsyncIterable<T>): AsyncGenerator<T> {
  if (isAsync(x)) yield* x;
  else yield* x;
}

function* packumentsFromDir(dir: string): Generator<Packument> {
  const pdir = join(dir, 'packuments');
  for (const f of readdirSync(pdir)
    .filter((n) => n.endsWith('.json'))
    .sort()) {
    yield JSON.parse(readFileSync(join(pdir, f), 'utf8')) as Packument;
  }
}

interface Outgoing {
  id: string;
  json: string;
  attachments: number;
}

/** Sends documents in bounded `_bulk_docs` batches with bounded concurrency. */
class BulkWriter {
  private batch: Outgoing[] = [];
  private batchBytes = 0;
  private inflight = new Set<Promise<void>>();
  readonly result: CouchLoadResult = {
    docs: 0,
    written: 0,
    rejected: [],
    attachments: 0,
    requestBytes: 0,
    requests: 0,
    ms: 0,
  };
  private failure: unknown = null;

  constructor(
    private readonly c: Conn,
    private readonly db: string,
    private readonly opts: Required<Pick<CouchLoadOptions, 'batchSize' | 'maxBatchBytes' | 'concurrency'>> &
      CouchLoadOptions,
  ) {}

  async add(doc: Outgoing): Promise<void> {
    if (this.failure) throw this.failure;
    if (
      this.batch.length > 0 &&
      (this.batch.length >= this.opts.batchSize ||
        this.batchBytes + doc.json.length > this.opts.maxBatchBytes)
    ) {
      await this.flush();
    }
    this.batch.push(doc);
    this.batchBytes += doc.json.length + 1;
    this.result.docs++;
    this.result.attachments += doc.attachments;
  }

  async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const docs = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    while (this.inflight.size >= this.opts.concurrency) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
    const p: Promise<void> = this.send(docs)
      .catch((e: unknown) => {
        this.failure ??= e;
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  async finish(): Promise<CouchLoadResult> {
    await this.flush();
    await Promise.all(this.inflight);
    if (this.failure) throw this.failure;
    return this.result;
  }

  private async send(docs: Outgoing[]): Promise<void> {
    const body = `{"docs":[${docs.map((d) => d.json).join(',')}]}`;
    this.result.requestBytes += Buffer.byteLength(body);
    this.result.requests++;
    const r = await request(this.c, 'POST', `${dbPath(this.db)}/_bulk_docs`, body);
    if (r.status === 413 || r.status === 400) {
      // too large (413), or one bad document failing the whole request (400, e.g. an illegal _id):
      // bisect down to the documents at fault and report those
      if (docs.length === 1) {
        const j = (r.json ?? {}) as { error?: string; reason?: string };
        this.result.rejected.push({
          id: docs[0]!.id,
          error: r.status === 413 ? 'too_large' : (j.error ?? 'bad_request'),
          reason: `HTTP ${r.status}: ${j.reason ?? JSON.stringify(r.json)}`,
        });
        return;
      }
      const half = Math.ceil(docs.length / 2);
      await this.send(docs.slice(0, half));
      await this.send(docs.slice(half));
      return;
    }
    if (r.status !== 201 && r.status !== 202) {
      throw new Error(`_bulk_docs on ${this.db}: HTTP ${r.status} ${JSON.stringify(r.json).slice(0, 500)}`);
    }
    const rows = Array.isArray(r.json)
      ? (r.json as { id?: string; ok?: boolean; error?: string; reason?: string }[])
      : [];
    for (let i = 0; i < docs.length; i++) {
      const row = rows[i];
      if (row && row.error)
        this.result.rejected.push({ id: row.id ?? docs[i]!.id, error: row.error, reason: row.reason ?? '' });
      else this.result.written++;
    }
    this.opts.onProgress?.(this.result.written + this.result.rejected.length);
  }
}

function withDefaults(
  o: CouchLoadOptions,
): Required<Pick<CouchLoadOptions, 'batchSize' | 'maxBatchBytes' | 'concurrency'>> & CouchLoadOptions {
  return {
    ...o,
    batchSize: o.batchSize ?? 100,
    maxBatchBytes: o.maxBatchBytes ?? 32 * 1024 * 1024,
    concurrency: o.concurrency ?? 4,
  };
}

function attachmentCount(p: Packument): number {
  return p._attachments ? Object.keys(p._attachments).length : 0;
}

/**
 * Creates `db` (unless `create: false`) and loads every packument of `registry` into it. Packuments of
 * attachment-mode packages carry their tarballs inline (`_attachments` with base64 `data`).
 */
export async function loadIntoCouch(
  url: string,
  db: string,
  registry: PackumentSource,
  opts: CouchLoadOptions = {},
): Promise<CouchLoadResult> {
  const t0 = performance.now();
  const c = connect(url);
  if (opts.create !== false) await ensureDb(c, db);
  const source: Iterable<Packument> | AsyncIterable<Packument> =
    typeof registry === 'string'
      ? packumentsFromDir(registry)
      : isIterable<Packument>(registry)
        ? registry
        : generatePackuments(registry);
  const w = new BulkWriter(c, db, withDefaults(opts));
  for await (const p of iterate(source))
    await w.add({ id: p._id, json: JSON.stringify(p), attachments: attachmentCount(p) });
  const r = await w.finish();
  r.ms = Math.round(performance.now() - t0);
  return r;
}

function* changesFromDir(dir: string): Generator<RegistryChange> {
  const info = readRegistryInfo(dir);
  if (!info) throw new Error(`${dir}: not a generated registry`);
  const last = info.history[info.history.length - 1];
  if (!last || last.day !== info.day)
    throw new Error(`${dir}: no recorded changes for its day ${info.day} (was it mutated?)`);
  const read = (name: string): Packument =>
    JSON.parse(readFileSync(join(dir, 'packuments', packumentFileName(name)), 'utf8')) as Packument;
  for (const name of last.updated)
    yield { type: 'update', name, packument: read(name), newTarballs: [], removedTarballs: [] };
  for (const name of last.unpublished) yield { type: 'delete', name, newTarballs: [], removedTarballs: [] };
  for (const name of last.created)
    yield { type: 'create', name, packument: read(name), newTarballs: [], removedTarballs: [] };
}

interface RevInfo {
  rev: string;
  deleted: boolean;
}

async function currentRevs(c: Conn, db: string, ids: string[]): Promise<Map<string, RevInfo>> {
  const out = new Map<string, RevInfo>();
  if (ids.length === 0) return out;
  const r = await request(c, 'POST', `${dbPath(db)}/_all_docs`, JSON.stringify({ keys: ids }));
  if (r.status !== 200) throw new Error(`_all_docs on ${db}: HTTP ${r.status} ${JSON.stringify(r.json)}`);
  const rows =
    (r.json as { rows?: { key: string; value?: { rev: string; deleted?: boolean } }[] }).rows ?? [];
  for (const row of rows)
    if (row.value) out.set(row.key, { rev: row.value.rev, deleted: row.value.deleted === true });
  return out;
}

type AttachmentStub = { stub: true } & Record<string, unknown>;

/**
 * The attachment stubs of a document's current revision (fetched without their data). They are sent
 * back as they came: CouchDB needs only `stub: true`, PouchDB also the `digest`.
 */
async function currentAttachments(c: Conn, db: string, id: string): Promise<Map<string, AttachmentStub>> {
  const r = await request(c, 'GET', `${dbPath(db)}/${encodeURIComponent(id)}`);
  const out = new Map<string, AttachmentStub>();
  if (r.status !== 200) return out;
  const atts = (r.json as { _attachments?: Record<string, Record<string, unknown>> })._attachments ?? {};
  for (const [name, a] of Object.entries(atts)) out.set(name, { ...a, stub: true });
  return out;
}

/**
 * Applies a later day's changes to `db`: created and updated packuments are written with the current
 * `_rev` (if any), unpublished ones deleted. Attachments the stored document already has are sent as
 * stubs, so only new tarballs travel.
 */
export async function applyChangesToCouch(
  url: string,
  db: string,
  changes: ChangeSource,
  opts: CouchLoadOptions = {},
): Promise<CouchChangeResult> {
  const t0 = performance.now();
  const c = connect(url);
  const source: Iterable<RegistryChange> | AsyncIterable<RegistryChange> =
    typeof changes === 'string'
      ? changesFromDir(changes)
      : isIterable<RegistryChange>(changes)
        ? changes
        : generateChanges(changes, changes.day);
  const o = withDefaults(opts);
  const w = new BulkWriter(c, db, o);
  const counts = { created: 0, updated: 0, deleted: 0, missing: 0 };
  let pending: RegistryChange[] = [];
  const drain = async (): Promise<void> => {
    const batch = pending;
    pending = [];
    const revs = await currentRevs(
      c,
      db,
      batch.map((ch) => ch.packument?._id ?? ch.name),
    );
    for (const ch of batch) {
      const id = ch.packument?._id ?? ch.name;
      const cur = revs.get(id);
      if (ch.type === 'delete') {
        if (!cur || cur.deleted) {
          counts.missing++;
          continue;
        }
        counts.deleted++;
        await w.add({ id, json: JSON.stringify({ _id: id, _rev: cur.rev, _deleted: true }), attachments: 0 });
        continue;
      }
      const doc: Packument & { _rev?: string } = { ...ch.packument! };
      if (cur && !cur.deleted) doc._rev = cur.rev;
      let atts = 0;
      if (doc._attachments && cur && !cur.deleted) {
        const have = await currentAttachments(c, db, id);
        const next: Record<string, AttachmentStub | { content_type: string; data: string }> = {};
        for (const [name, a] of Object.entries(doc._attachments)) {
          const stub = have.get(name);
          if (stub) next[name] = stub;
          else {
            next[name] = a;
            atts++;
          }
        }
        (doc as { _attachments?: unknown })._attachments = next;
      } else {
        atts = attachmentCount(doc);
      }
      if (ch.type === 'create') counts.created++;
      else counts.updated++;
      await w.add({ id, json: JSON.stringify(doc), attachments: atts });
    }
  };
  for await (const ch of iterate(source)) {
    pending.push(ch);
    if (pending.length >= o.batchSize) await drain();
  }
  await drain();
  const r = await w.finish();
  return { ...r, ...counts, ms: Math.round(performance.now() - t0) };
}
