import { DestinationError, messageOf } from '../src/errors.js';
import type { Progress } from '../src/util/progress.js';
import { docPath, dbPath } from '../src/couchdb/client.js';
import type { DocEntry, LeafEntry } from '../src/repo/format/couchdb-listing.js';
import {
  base64Stream,
  bodyMembers,
  inlineBody,
  multipartBody,
  multipartSafeName,
  type BodyEdit,
  type MultipartBody,
} from './couch-body.js';
import { reasonOf, type CouchDestination, type RawResponse } from './couch-http.js';
import type { BlobFetcher } from './fetch.js';
import type { StreamBytes } from './prefetch.js';

/** How documents with attachments are sent: streamed multipart/related (default), or JSON with base64. */
export type AttachmentMode = 'multipart' | 'inline';

export interface DocFailure {
  id: string;
  rev?: string;
  message: string;
}

export interface WriterOptions {
  parallel: number;
  /** Bytes of bodies per `_bulk_docs` request (a bigger document goes alone). */
  batchBytes?: number;
  /** Revisions per `_bulk_docs` request. */
  batchDocs?: number;
  attachments?: AttachmentMode;
  progress?: Progress;
  /** Called, in listing order, with the last document of each contiguous prefix written without failure. */
  onCheckpoint?: (id: string) => void;
}

interface Pending {
  id: string;
  remaining: number;
  failed: boolean;
  bytes: number;
}

interface BatchItem {
  idx: number;
  id: string;
  rev: string;
  /** The stored body, as read (pieces, not joined), or — a big one — still to be read as it is sent. */
  body: Buffer[] | StreamBytes;
  size: number;
}

const RETRY_STATUS = new Set([500, 502, 503, 504, 429]);

/**
 * Writes stored revisions into one destination database with `new_edits=false`, so that revision IDs,
 * histories, conflicts and tombstones come back exactly: revisions without attachments in `_bulk_docs`
 * requests bounded by bytes (the stored JSON sent as is), revisions with attachments one by one as streamed
 * `multipart/related` PUTs (or JSON with base64 attachments, streamed too). Requests run `parallel` at a
 * time; a document that the destination refuses is recorded (and named) and the rest goes on.
 */
export class DocWriter {
  readonly failures: DocFailure[] = [];
  failureCount = 0;
  docs = 0;
  revisions = 0;
  attachments = 0;
  bytes = 0;
  private seq = 0;
  private frontier = 0;
  private readonly pending = new Map<number, Pending>();
  private batch: BatchItem[] = [];
  private batchSize = 0;
  private readonly inflight = new Set<Promise<void>>();
  private fatal?: unknown;
  private maxDocSize?: Promise<string>;
  private readonly batchBytes: number;
  private readonly batchDocs: number;

  constructor(
    private readonly dest: CouchDestination,
    private readonly db: string,
    private readonly fetcher: BlobFetcher,
    private readonly opts: WriterOptions,
  ) {
    this.batchBytes = opts.batchBytes ?? 1024 * 1024;
    this.batchDocs = opts.batchDocs ?? 1000;
  }

  private get path(): string {
    return dbPath(this.db);
  }

  /** Queues every leaf of `doc`; `streams` holds, per leaf, its body then its attachments' data. */
  async add(doc: DocEntry, streams: StreamBytes[]): Promise<void> {
    this.check();
    const idx = this.seq++;
    const p: Pending = { id: doc.id, remaining: doc.leaves.length, failed: false, bytes: 0 };
    this.pending.set(idx, p);
    let s = 0;
    for (const leaf of doc.leaves) {
      const body = streams[s++]!;
      const atts = (leaf.atts ?? []).map(() => streams[s++]!);
      p.bytes += body.size + atts.reduce((n, a) => n + a.size, 0);
      if (!leaf.atts?.length && body.size > this.batchBytes) {
        // A big document goes alone, streamed from the repository into the request: never whole in memory.
        await this.start(() => this.sendBatch([{ idx, id: doc.id, rev: leaf.rev, body, size: body.size }]));
      } else if (!leaf.atts?.length) {
        const pieces: Buffer[] = [];
        for await (const b of body) pieces.push(b);
        if (
          this.batch.length &&
          (this.batchSize + body.size > this.batchBytes || this.batch.length >= this.batchDocs)
        )
          await this.flush();
        this.batch.push({ idx, id: doc.id, rev: leaf.rev, body: pieces, size: body.size });
        this.batchSize += body.size;
      } else {
        const bodyBytes = await body.all();
        await this.start(() => this.putLeaf(idx, doc.id, leaf, bodyBytes, atts));
      }
    }
  }

  /** Writes a new revision on top of `baseRev` (a package put back into a live database), not new_edits=false. */
  async putNewEdit(
    doc: DocEntry,
    leaf: LeafEntry,
    body: Buffer,
    atts: StreamBytes[],
    baseRev: string,
  ): Promise<string> {
    const edit: BodyEdit = {
      drop: ['_rev', '_revisions', '_deleted'],
      add: [`"_rev":${JSON.stringify(baseRev)}`],
    };
    const res = await this.sendLeaf(doc.id, leaf, body, atts, edit, '');
    if (res.status !== 201 && res.status !== 202) {
      throw new DestinationError(
        `${this.dest.where(this.db)}: writing ${JSON.stringify(doc.id)} failed with HTTP ${res.status}: ${reasonOf(res.body)}`,
        { object: doc.id },
      );
    }
    const j = JSON.parse(res.body.toString('utf8')) as { rev?: string };
    return j.rev ?? '?';
  }

  async finish(): Promise<void> {
    if (this.batch.length) await this.flush();
    while (this.inflight.size) await Promise.race(this.inflight);
    this.check();
  }

  private check(): void {
    if (this.fatal !== undefined) throw this.fatal;
  }

  private async flush(): Promise<void> {
    const items = this.batch;
    this.batch = [];
    this.batchSize = 0;
    await this.start(() => this.sendBatch(items));
  }

  /** Runs `fn` with at most `parallel` requests in flight (waiting for a slot). */
  private async start(fn: () => Promise<void>): Promise<void> {
    while (this.inflight.size >= this.opts.parallel) await Promise.race(this.inflight);
    this.check();
    const p = fn().catch((err: unknown) => {
      this.fatal ??= err;
    });
    const tracked = p.finally(() => this.inflight.delete(tracked));
    this.inflight.add(tracked);
  }

  private leafDone(idx: number, failure?: DocFailure): void {
    const p = this.pending.get(idx);
    if (!p) return;
    if (failure) {
      p.failed = true;
      this.failureCount++;
      if (this.failures.length < 1000) this.failures.push(failure);
    }
    if (--p.remaining > 0) return;
    this.docs++;
    this.bytes += p.bytes;
    if (this.opts.progress) {
      this.opts.progress.docs++;
      this.opts.progress.bytes += p.bytes;
    }
    // Advance the checkpoint over the contiguous prefix of documents written without failure.
    let last: string | undefined;
    for (;;) {
      const head = this.pending.get(this.frontier);
      if (!head || head.remaining > 0 || head.failed) break;
      last = head.id;
      this.pending.delete(this.frontier);
      this.frontier++;
    }
    if (last !== undefined) this.opts.onCheckpoint?.(last);
  }

  private async sendBatch(items: BatchItem[]): Promise<void> {
    const head = Buffer.from('{"new_edits":false,"docs":[');
    const comma = Buffer.from(',');
    const tail = Buffer.from(']}');
    const length =
      head.length + tail.length + items.reduce((n, it) => n + it.size, 0) + Math.max(0, items.length - 1);
    let first = true;
    const fetcher = this.fetcher;
    const body = () => {
      // A streamed body is read from the repository again when the request is retried.
      const fresh = !first;
      first = false;
      return (async function* () {
        yield head;
        for (let i = 0; i < items.length; i++) {
          if (i) yield comma;
          const b = items[i]!.body;
          if (Array.isArray(b)) yield* b;
          else yield* fresh ? fetcher.stream(b.ref) : b;
        }
        yield tail;
      })();
    };
    const res = await this.request('POST', `${this.path}/_bulk_docs`, 'application/json', body, length);
    if (res.status === 413 || res.status === 400) {
      if (items.length > 1) {
        // One of them is too big (or refused): send them one by one to find it, and write the others.
        for (const it of items) await this.sendBatch([it]);
        return;
      }
      const it = items[0]!;
      const message = res.status === 413 ? await this.tooLarge(it.size) : `refused: ${reasonOf(res.body)}`;
      this.leafDone(it.idx, { id: it.id, rev: it.rev, message });
      return;
    }
    this.expectOk(res, 'POST _bulk_docs');
    // CouchDB answers [] to new_edits=false when all went well; others list every document. Errors name the ID.
    let answer: { id?: string; rev?: string; error?: string; reason?: string }[] = [];
    try {
      answer = JSON.parse(res.body.toString('utf8')) as typeof answer;
    } catch {
      throw new DestinationError(`${this.dest.where(this.db)}: the answer to POST _bulk_docs is not JSON`);
    }
    const errors = new Map<string, string>();
    for (const a of Array.isArray(answer) ? answer : []) {
      if (a.error && a.id !== undefined)
        errors.set(
          `${a.id}\0${a.rev ?? ''}`,
          a.error === 'too_large' || a.error === 'document_too_large'
            ? 'too_large'
            : `${a.error}${a.reason ? `: ${a.reason}` : ''}`,
        );
    }
    for (const it of items) {
      const e = errors.get(`${it.id}\0${it.rev}`) ?? errors.get(`${it.id}\0`);
      if (!e) {
        this.revisions++;
        this.leafDone(it.idx);
      } else
        this.leafDone(it.idx, {
          id: it.id,
          rev: it.rev,
          message: e === 'too_large' ? await this.tooLarge(it.size) : `refused: ${e}`,
        });
    }
  }

  private async putLeaf(
    idx: number,
    id: string,
    leaf: LeafEntry,
    body: Buffer,
    atts: StreamBytes[],
  ): Promise<void> {
    const res = await this.sendLeaf(id, leaf, body, atts, {}, '?new_edits=false');
    if (res.status === 413) {
      this.leafDone(idx, { id, rev: leaf.rev, message: await this.tooLarge(body.length, leaf.atts) });
      return;
    }
    if (res.status === 400 || res.status === 403 || res.status === 409 || res.status === 415) {
      this.leafDone(idx, { id, rev: leaf.rev, message: `refused: HTTP ${res.status} ${reasonOf(res.body)}` });
      return;
    }
    this.expectOk(res, `PUT ${id}`);
    this.revisions++;
    this.attachments += leaf.atts?.length ?? 0;
    this.leafDone(idx);
  }

  private async sendLeaf(
    id: string,
    leaf: LeafEntry,
    body: Buffer,
    atts: StreamBytes[],
    edit: BodyEdit,
    query: string,
  ): Promise<RawResponse> {
    const entries = leaf.atts ?? [];
    const members = bodyMembers(body, edit, `${this.db}/${id} revision ${leaf.rev}`);
    const inline =
      entries.length === 0 ||
      this.opts.attachments === 'inline' ||
      !entries.every((a) => multipartSafeName(a.name));
    const mb: MultipartBody = inline ? inlineBody(members, entries) : multipartBody(members, entries);
    let first = true;
    const source = () => {
      // The first attempt reads the prefetched bytes; a retry reads them again from the repository.
      const streams = first ? atts : atts.map((a) => this.fetcher.stream(a.ref));
      first = false;
      return (async function* () {
        for (const p of mb.parts) {
          if (typeof p !== 'number') yield p;
          else if (inline) yield* base64Stream(streams[p]!);
          else yield* streams[p]!;
        }
      })();
    };
    return this.request('PUT', `${this.path}/${docPath(id)}${query}`, mb.contentType, source, mb.length);
  }

  private async request(
    method: string,
    path: string,
    type: string,
    body: () => AsyncIterable<Buffer> | Buffer[],
    length: number,
  ): Promise<RawResponse> {
    for (let attempt = 1; ; attempt++) {
      const res = await this.dest.raw(method, path, type, () => toAsync(body()), length, this.db);
      if (!RETRY_STATUS.has(res.status) || attempt >= 4) return res;
      await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 1)));
    }
  }

  private expectOk(res: RawResponse, what: string): void {
    if (res.status === 201 || res.status === 202 || res.status === 200) return;
    const reason = reasonOf(res.body);
    if (res.status === 401 || res.status === 403) {
      throw new DestinationError(
        `${this.dest.where(this.db)}: the destination refused the credentials (${res.status})${reason ? `: ${reason}` : ''}; restoring needs a server admin`,
      );
    }
    if (res.status === 404)
      throw new DestinationError(
        `${this.dest.where(this.db)}: the database disappeared during the restore (${reason})`,
      );
    throw new DestinationError(
      `${this.dest.where(this.db)}: ${what} failed with HTTP ${res.status}${reason ? `: ${reason}` : ''}`,
    );
  }

  /** The message for a document the destination finds too large, with its limit when the server tells it. */
  private async tooLarge(bodyBytes: number, atts?: { length: number }[]): Promise<string> {
    this.maxDocSize ??= this.readMaxDocSize();
    const limit = await this.maxDocSize;
    const attBytes = (atts ?? []).reduce((n, a) => n + a.length, 0);
    return `too large for the destination: the document is ${bodyBytes.toLocaleString('en-US')} bytes of JSON${attBytes ? ` (+ ${attBytes.toLocaleString('en-US')} bytes of attachments)` : ''}, the destination's limit (couchdb/max_document_size${attBytes ? ', couchdb/max_attachment_size' : ''}) is ${limit}; raise it on the destination and run the restore again`;
  }

  private async readMaxDocSize(): Promise<string> {
    for (const p of ['_node/_local/_config/couchdb/max_document_size', '_config/couchdb/max_document_size']) {
      try {
        const r = await this.dest.json<unknown>('GET', p, { notFound: 'return', pass: [400, 401, 403, 405] });
        if (r.status === 200 && (typeof r.body === 'string' || typeof r.body === 'number'))
          return `${Number(r.body).toLocaleString('en-US')} bytes`;
      } catch (err) {
        return `unknown (${messageOf(err)}; CouchDB's default is 8,000,000 bytes)`;
      }
    }
    return "not readable here (CouchDB's default is 8,000,000 bytes)";
  }
}

async function* toAsync(src: AsyncIterable<Buffer> | Buffer[]): AsyncGenerator<Buffer> {
  yield* src;
}
