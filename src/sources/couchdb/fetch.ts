import { SourceError } from '../../errors.js';
import { writeBuffers, type StreamRef } from '../../repo/stream-ref.js';
import { attachmentStubs, attEntry, downloadAttachment, reusable, type AttStub } from './attachments.js';
import type { ChangeRow } from './changes.js';
import { bodyBytes } from '../../couchdb/client.js';
import type { DbRun } from './context.js';
import type { PackumentTarballs } from '../../couchdb/expectations.js';
import type { ResultInfo } from './inspect.js';
import { FunctionPool } from '../../util/function-pool.js';
import { releaseNow } from '../../util/release.js';
import { JsonShapeError, splitArrayMember } from '../../util/json-split.js';
import {
  compareLeaves,
  encodeRecord,
  type AttEntry,
  type DocEntry,
  type FetchedRecord,
  type LeafEntry,
} from '../../repo/format/couchdb-listing.js';

/** A document to fetch: its current leaves, and its entry in the previous listing (to reuse attachments). */
export interface FetchItem extends ChangeRow {
  prev?: DocEntry;
}

export interface BatchResult {
  /** Sorter records (see src/repo/format/couchdb-listing.ts) of the documents fetched. */
  records: string[];
  /** Documents with a leaf or attachment that was gone when fetched: they must be read again. */
  gone: string[];
}

interface LeafAcc {
  rev: string;
  deleted: boolean;
  body: StreamRef;
  stubs: AttStub[];
  tarballs?: PackumentTarballs;
  ancestors?: string[];
}

interface DocAcc {
  item: FetchItem;
  leaves: Map<string, LeafAcc>;
}

/** Groups items into batches of `size` documents; within a batch a repeated document keeps its last row. */
export async function* batches(src: AsyncIterable<FetchItem>, size: number): AsyncGenerator<FetchItem[]> {
  let batch = new Map<string, FetchItem>();
  for await (const item of src) {
    batch.delete(item.id);
    batch.set(item.id, item);
    if (batch.size >= size) {
      yield [...batch.values()];
      batch = new Map();
    }
  }
  if (batch.size) yield [...batch.values()];
}

/**
 * Fetches exactly the given leaf revisions of a batch of documents with one `POST _bulk_get?revs=true`
 * (bodies with `_revisions`, attachments as stubs), parsing the answer one result at a time and storing each
 * body as it arrives (exact bytes as served). Then the attachments, each streamed into the repository or
 * reused from the previous listing. The request slot is released before the attachments are fetched.
 */
export async function fetchBatch(run: DbRun, items: FetchItem[]): Promise<BatchResult> {
  const round = run.round;
  await run.opts.beforeBulkGet?.(
    round,
    items.map((i) => i.id),
  );
  const docs = items.flatMap((it) => it.revs.map((rev) => ({ id: it.id, rev })));
  const path = `${run.path}/_bulk_get?revs=true`;
  let accs = new Map<string, DocAcc>();
  run.stats.bulkGetRequests++;
  const opts = { db: run.db, body: { docs }, notFound: 'return' as const, pass: [400, 405] };
  const refused = await run.client.exchange('POST', path, opts, async (res) => {
    if (!res.ok) return res.status;
    accs = new Map(items.map((it) => [it.id, { item: it, leaves: new Map() }]));
    try {
      const writes = new WriteWindow();
      const groups = new InspectGroups(run, accs, writes);
      for await (const el of splitArrayMember(bodyBytes(res), 'results', { owned: true }))
        await groups.add(el);
      await groups.finish();
      await writes.drain();
    } catch (err) {
      if (!(err instanceof JsonShapeError)) throw err;
      throw new SourceError(
        `${run.client.where(run.db)}: the answer to POST /${run.path}/_bulk_get is not the JSON expected (${err.message})`,
        {
          source: run.cfg.name,
          db: run.db,
          path: `/${run.path}/_bulk_get`,
        },
      );
    }
    return undefined;
  });
  if (refused !== undefined) {
    // The database is gone (then GET /db throws DbGoneError), or the server predates _bulk_get (CouchDB 1.x).
    // Asked here, not while the request slot above was held.
    await run.client.json('GET', run.path, { db: run.db });
    throw new SourceError(
      `${run.client.where(run.db)}: the server has no _bulk_get (HTTP ${refused}); CouchDB 2.0 or later is needed`,
      { source: run.cfg.name, db: run.db },
    );
  }

  const out: BatchResult = { records: [], gone: [] };
  await Promise.all(
    [...accs.values()].map(async (acc) => {
      const { item } = acc;
      let gone = acc.leaves.size < item.revs.length;
      if (acc.leaves.size === 0) {
        out.gone.push(item.id);
        return;
      }
      const leaves = [...acc.leaves.values()].sort(compareLeaves);
      const data = await attachmentData(run, item, leaves);
      const entryLeaves: LeafEntry[] = leaves.map((l) => {
        const atts: AttEntry[] = [];
        for (const s of l.stubs) {
          const ref = data.get(attKey(s));
          if (ref) atts.push(attEntry(s, ref));
          else gone = true;
        }
        const leaf: LeafEntry = { rev: l.rev, deleted: l.deleted, body: l.body };
        if (atts.length) leaf.atts = atts;
        if (l.ancestors) leaf.ancestors = l.ancestors;
        return leaf;
      });
      const winner = leaves[0]!;
      const entry: DocEntry = { id: item.id, rev: winner.rev, deleted: winner.deleted, leaves: entryLeaves };
      const rec: FetchedRecord = { e: entry };
      if (!winner.deleted && winner.tarballs) {
        if (winner.tarballs.expectations.length) rec.x = winner.tarballs.expectations;
        for (const h of winner.tarballs.hostile) {
          run.findings.add({
            severity: 'warning',
            code: 'tarball-path-unsafe',
            object: `${run.db}/${item.id}`,
            message: `version ${JSON.stringify(h.version)} names an unsafe tarball path ${h.problem}; not expected in the tarball store`,
          });
        }
      }
      out.records.push(encodeRecord(item.id, rec));
      if (gone) out.gone.push(item.id);
    }),
  );
  run.stats.docsFetched += items.length;
  run.ctx.progress.docs += items.length;
  return out;
}

/** Elements sent to the inspector in one message: at most this many, or about this many bytes. */
const GROUP_ELEMENTS = 64;
const GROUP_BYTES = 1024 * 1024;

/**
 * The elements of one `_bulk_get` answer on their way through the inspector, in groups (one message per
 * group, not per document): while one group is being scanned on the worker thread the next is gathered;
 * the results are taken in the answer's order. At most two groups are in flight.
 */
class InspectGroups {
  private group: Buffer[] = [];
  private bytes = 0;
  private readonly inflight: Promise<void>[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly run: DbRun,
    private readonly accs: Map<string, DocAcc>,
    private readonly writes: WriteWindow,
  ) {}

  async add(el: Buffer): Promise<void> {
    this.group.push(el);
    this.bytes += el.length;
    if (this.group.length >= GROUP_ELEMENTS || this.bytes >= GROUP_BYTES) await this.dispatch();
  }

  private async dispatch(): Promise<void> {
    const els = this.group;
    this.group = [];
    this.bytes = 0;
    if (els.length === 0) return;
    while (this.inflight.length >= 2) await this.inflight.shift();
    // Scanned on a worker thread: where the bodies are, their revisions and what a packument names. This
    // thread only cuts the answer into elements and stores the bodies byte for byte.
    // One copy of the group, handed over (transferred) to the worker.
    let total = 0;
    for (const e of els) total += e.length;
    const group = new Uint8Array(total);
    let at = 0;
    for (const e of els) {
      group.set(e, at);
      at += e.length;
    }
    const scanned = inspector().runOwned<ResultInfo[]>(
      group,
      this.run.db,
      els.map((e) => e.length),
    );
    scanned.catch(() => undefined); // awaited in order below
    const done = (this.chain = this.chain.then(async () => {
      const infos = await scanned;
      const bodies: { leaf: LeafAcc; raw: Buffer }[] = [];
      for (let i = 0; i < els.length; i++) takeResult(this.run, els[i]!, infos[i]!, this.accs, bodies);
      // The elements are the splitter's copies, this group's alone: freed once their bodies are stored.
      if (bodies.length === 0) {
        releaseNow(els);
        return;
      }
      // The group's bodies are stored together (one batch to a pack worker, not one job per document).
      let size = 0;
      for (const b of bodies) size += b.raw.length;
      await this.writes.add(
        storeBodies(
          this.run,
          bodies.map((b) => b.raw),
        ).then((refs) => {
          for (let i = 0; i < bodies.length; i++) bodies[i]!.leaf.body = refs[i]!;
          releaseNow(els);
        }),
        size,
      );
    }));
    done.catch(() => undefined); // awaited by dispatch or finish
    this.inflight.push(done);
  }

  async finish(): Promise<void> {
    await this.dispatch();
    await this.chain;
  }
}

/** Takes one element's leaves into its document; their bodies (raw bytes) go to `bodies`, to be stored. */
function takeResult(
  run: DbRun,
  el: Buffer,
  r: ResultInfo,
  accs: Map<string, DocAcc>,
  bodies: { leaf: LeafAcc; raw: Buffer }[],
): void {
  if (r.error) throw new JsonShapeError(r.error);
  const acc = typeof r.id === 'string' ? accs.get(r.id) : undefined;
  if (!acc) {
    run.ctx.log.warn(
      { source: run.cfg.name, db: run.db, id: r.id },
      '_bulk_get answered for a document not asked for; ignored',
    );
    return;
  }
  for (const info of r.docs) {
    if (!info) {
      run.stats.leavesGone++;
      continue;
    }
    if (acc.leaves.has(info.rev)) continue;
    const raw = el.subarray(info.start, info.end);
    const leaf: LeafAcc = {
      rev: info.rev,
      deleted: info.deleted,
      body: { size: raw.length, chunks: [] }, // replaced when the body is stored
      stubs: attachmentStubs(run, acc.item.id, info.attachments),
      tarballs: info.tarballs,
    };
    if (info.ancestors) leaf.ancestors = info.ancestors;
    acc.leaves.set(info.rev, leaf);
    run.stats.leavesFetched++;
    run.stats.bodyBytesFetched += raw.length;
    run.ctx.progress.bytes += raw.length;
    bodies.push({ leaf, raw });
  }
}

/**
 * Stores bodies byte for byte: small ones in batches (BlobWriter.writeMany), a big one (a 20 MB packument)
 * streamed in pieces on its own (the writer's stream window then bounds what is in flight).
 */
function storeBodies(run: DbRun, raws: Buffer[]): Promise<StreamRef[]> {
  return writeBuffers(run.ctx.writer, raws, 'json');
}

let pool: FunctionPool | undefined;

/** The worker threads that parse document bodies (shared by every database of the process). */
function inspector(): FunctionPool {
  pool ??= new FunctionPool(new URL('./inspect.js', import.meta.url).href, 'inspectResults');
  return pool;
}

/**
 * Body writes in flight for one `_bulk_get` answer (one per group of bodies): the next bodies are parsed while
 * earlier ones are being stored, up to 64 writes or 2 MiB (at least one, whatever its size), so that the pack
 * workers stay busy instead of waiting on this thread.
 */
export class WriteWindow {
  private readonly pending: { p: Promise<void>; size: number }[] = [];
  private bytes = 0;

  async add(p: Promise<void>, size: number): Promise<void> {
    p.catch(() => undefined); // awaited in order below; this only keeps an early failure from being "unhandled"
    this.pending.push({ p, size });
    this.bytes += size;
    while (this.pending.length > 64 || (this.pending.length > 1 && this.bytes > 2 * 1024 * 1024))
      await this.shift();
  }

  private async shift(): Promise<void> {
    const w = this.pending.shift()!;
    this.bytes -= w.size;
    await w.p;
  }

  async drain(): Promise<void> {
    while (this.pending.length) await this.shift();
  }
}

function attKey(s: { name: string; digest: string; length: number }): string {
  return `${s.length}\t${s.digest}\t${s.name}`;
}

/** The data of every attachment of a document's leaves: reused, or downloaded once per distinct content. */
async function attachmentData(
  run: DbRun,
  item: FetchItem,
  leaves: LeafAcc[],
): Promise<Map<string, StreamRef>> {
  const wanted = new Map<string, { stub: AttStub; revs: string[] }>();
  for (const l of leaves) {
    for (const s of l.stubs) {
      const k = attKey(s);
      const w = wanted.get(k);
      if (w) w.revs.push(l.rev);
      else wanted.set(k, { stub: s, revs: [l.rev] });
    }
  }
  const data = new Map<string, StreamRef>();
  await Promise.all(
    [...wanted].map(async ([k, { stub, revs }]) => {
      const prev = reusable(item.prev, stub);
      if (prev) {
        run.stats.attachmentsReused++;
        data.set(k, prev);
        return;
      }
      // Any leaf that has it will do (same name, digest and length); the next one if a revision is gone.
      for (const rev of revs) {
        const ref = await downloadAttachment(run, item.id, rev, stub);
        if (ref) {
          data.set(k, ref);
          return;
        }
      }
    }),
  );
  return data;
}
