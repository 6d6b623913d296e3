import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import pLimit from 'p-limit';
import tar from 'tar-stream';
import { readListing } from '../src/repo/format/listing.js';
import type { DbSnapshot, TarballSourceSnapshot } from '../src/repo/format/source-snapshots.js';
import { messageOf, systemCodeOf } from '../src/errors.js';
import type { BlobReader } from '../src/repo/reader.js';
import { type CouchClient, dbPath, docPath } from '../src/couchdb/client.js';
import { packumentTarballs } from '../src/couchdb/expectations.js';
import { checkDocEntry, type DocEntry } from '../src/repo/format/couchdb-listing.js';
import { checkEntry } from '../src/repo/format/tarball-listing.js';
import { comparePaths } from '../src/repo/format/order.js';
import type { DrillCheck } from './drill-report.js';

/**
 * The drill's tarball checks, read back from the standby and the scratch directory: every tarball the
 * restored packuments name is there (in the tarball store, or as an attachment of its packument), or was
 * already missing when the snapshot was taken; every one that is there has the sha512 of its packument's
 * `dist.integrity` (sha1 `dist.shasum` when no integrity is recorded); and a sample of them unpacks
 * (gunzip + tar) into a package whose `package/package.json` has the name and version of the packument
 * entry it belongs to. A referenced tarball found nowhere fails the drill only when the snapshot has it (the
 * restore lost it); one the tarball store already lacked at backup time is counted (the backup reported it).
 */
export interface RestoredDb {
  db: DbSnapshot;
  scratch: string;
}

export interface RestoredStore {
  source: TarballSourceSnapshot;
  dir: string;
}

interface Candidate {
  where: string;
  name: string;
  version: string;
  open: () => Promise<Readable>;
}

const MAX_DETAILS = 20;
/** Referenced paths found nowhere that are remembered for the lookup in the listings (bounded memory). */
const MAX_NOT_RESTORED = 1_000_000;

/** `dist.integrity` (SRI, possibly several hashes) → its sha512 digests, base64. */
export function sha512Of(integrity: string | undefined): string[] {
  if (!integrity) return [];
  return integrity
    .trim()
    .split(/\s+/)
    .flatMap((s) => (s.startsWith('sha512-') ? [s.slice(7).replace(/\?.*$/, '')] : []));
}

async function digest(src: Readable): Promise<{ sha512: string; sha1: string; size: number }> {
  const h512 = createHash('sha512');
  const h1 = createHash('sha1');
  let size = 0;
  for await (const b of src) {
    h512.update(b as Buffer);
    h1.update(b as Buffer);
    size += (b as Buffer).length;
  }
  return { sha512: h512.digest('base64'), sha1: h1.digest('hex'), size };
}

/** Reads `<root>/package.json` (npm's root is `package/`; a few old packages use another one). */
export async function packageJsonOf(src: Readable): Promise<{ name?: unknown; version?: unknown }> {
  const extract = tar.extract();
  const done = pipeline(src, createGunzip(), extract);
  done.catch(() => undefined); // its error also surfaces through the iteration below
  let found: Buffer | undefined;
  let other: Buffer | undefined;
  for await (const entry of extract) {
    const name = entry.header.name.replace(/^\.\//, '');
    if (
      (entry.header.type ?? 'file') === 'file' &&
      /^[^/]+\/package\.json$/.test(name) &&
      (name === 'package/package.json' || !other)
    ) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      if (name === 'package/package.json') found = Buffer.concat(chunks);
      else other = Buffer.concat(chunks);
    } else entry.resume();
    if (found) break;
  }
  if (found) src.destroy();
  else await done;
  const bytes = found ?? other;
  if (!bytes) throw new Error('no package/package.json in the tarball');
  return JSON.parse(bytes.toString('utf8')) as { name?: unknown; version?: unknown };
}

export interface VerifyTarballsOptions {
  standby: CouchClient;
  reader: BlobReader;
  dbs: RestoredDb[];
  stores: RestoredStore[];
  sample: number;
  parallel?: number;
  signal?: AbortSignal;
  random?: () => number;
}

/** How a tarball's bytes compare with its packument entry's checksums. */
export type DigestVerdict = 'sha512' | 'sha1' | 'no-checksum' | 'mismatch';

/**
 * Compares a tarball's digests with its packument entry: the sha512 of `dist.integrity` when recorded, else
 * a 40-hex `dist.shasum` (sha1); `no-checksum` when the entry has neither.
 */
export function judgeDigest(
  exp: { integrity?: string; shasum?: string },
  got: { sha512: string; sha1: string },
): DigestVerdict {
  const want512 = sha512Of(exp.integrity);
  if (want512.length) return want512.includes(got.sha512) ? 'sha512' : 'mismatch';
  if (exp.shasum && /^[0-9a-f]{40}$/i.test(exp.shasum))
    return exp.shasum.toLowerCase() === got.sha1 ? 'sha1' : 'mismatch';
  return 'no-checksum';
}

/** A uniform random sample of `size` items of a stream of unknown length (reservoir sampling). */
export class Reservoir<T> {
  readonly items: T[] = [];
  private seen = 0;

  constructor(
    private readonly size: number,
    private readonly random: () => number = Math.random,
  ) {}

  offer(item: T): void {
    this.seen++;
    if (this.items.length < this.size) this.items.push(item);
    else {
      const j = Math.floor(this.random() * this.seen);
      if (j < this.size) this.items[j] = item;
    }
  }
}

/** The version a tarball's file name gives (`<base>-<version>.tgz`, the scope left out of a scoped name). */
export function versionOfFile(name: string, file: string): string {
  const base = name.startsWith('@') ? name.slice(name.indexOf('/') + 1) : name;
  return file.slice(base.length + 1, -'.tgz'.length);
}

/** What the packuments' tarballs were found to be, counted as they are looked at. */
class TarballAudit {
  readonly c = {
    referenced: 0,
    inStore: 0,
    asAttachment: 0,
    absent: 0,
    bySha512: 0,
    bySha1: 0,
    noChecksum: 0,
    mismatched: 0,
    flaggedMismatch: 0,
    unreadable: 0,
  };
  /** Packuments that could not be read (the first ones). */
  readonly absent: string[] = [];
  /** Referenced and not restored anywhere: each is looked up in the snapshot's listings afterwards. */
  readonly notRestored: string[] = [];
  readonly mismatches: string[] = [];
  readonly sample: Reservoir<Candidate>;
  /** With several databases, a tarball two of them name is counted once. */
  readonly seen: Set<string> | undefined;

  constructor(
    o: VerifyTarballsOptions,
    /** Files that did not match their packument when backed up: restored as they were, not a failure. */
    readonly flagged: Set<string>,
  ) {
    this.sample = new Reservoir<Candidate>(o.sample, o.random ?? Math.random);
    this.seen = o.dbs.length > 1 ? new Set<string>() : undefined;
  }

  /** Counts a tarball's verdict; true when it matched (or has no checksum to match). */
  judge(
    where: string,
    exp: { integrity?: string; shasum?: string },
    got: { sha512: string; sha1: string },
    isFlagged: boolean,
  ): boolean {
    const verdict = judgeDigest(exp, got);
    if (verdict === 'sha512') this.c.bySha512++;
    else if (verdict === 'sha1') this.c.bySha1++;
    else if (verdict === 'no-checksum') this.c.noChecksum++;
    if (verdict !== 'mismatch') return true;
    if (isFlagged) this.c.flaggedMismatch++;
    else {
      this.c.mismatched++;
      if (this.mismatches.length < MAX_DETAILS) {
        const want = sha512Of(exp.integrity)[0] ?? exp.shasum ?? '';
        this.mismatches.push(
          `${where}: sha512 ${got.sha512.slice(0, 16)}… is not dist.integrity ${want.slice(0, 16)}…`,
        );
      }
    }
    return false;
  }
}

/**
 * Checks the tarballs of a drill's restore against the restored packuments (see above): their checksums,
 * their presence (or absence already at backup time), and that a sample of them unpacks.
 */
export async function verifyTarballs(o: VerifyTarballsOptions): Promise<DrillCheck[]> {
  const limit = pLimit(Math.max(1, o.parallel ?? 8));
  const { flagged, listed } = await flaggedFiles(o);
  const audit = new TarballAudit(o, flagged);
  await auditPackuments(o, audit, limit);
  // Absent from the restore: was it in the snapshot (then the restore lost it) or already missing from the
  // tarball store when the snapshot was taken (the registry lacks it; the backup reported it then)?
  audit.notRestored.sort(comparePaths);
  const lost = await lostByRestore(o, audit.notRestored);
  const sample = await unpackSample(audit.sample.items, limit);
  const object = o.stores.map((s) => `${s.source.name} -> ${s.dir}`).join(', ') || 'attachments';
  return [
    integrityCheck(object, audit),
    presenceCheck(object, audit, lost, listed),
    sampleCheck(object, audit.sample.items.length, sample),
  ];
}

function storeListing(o: VerifyTarballsOptions, s: RestoredStore) {
  return readListing(
    o.reader,
    s.source.listing,
    checkEntry,
    `tarball listing of ${s.source.name}`,
    () => {}, // a refused name: the drill's restore reports it (and fails); the other entries are checked
  );
}

/**
 * The files of the tarball stores' listings that did not match their packument at backup time, and how many
 * files the listings have.
 */
async function flaggedFiles(o: VerifyTarballsOptions): Promise<{ flagged: Set<string>; listed: number }> {
  const flagged = new Set<string>();
  let listed = 0;
  for (const s of o.stores) {
    for await (const e of storeListing(o, s)) {
      listed++;
      if (e.flag === 'checksum-mismatch') flagged.add(e.path);
    }
  }
  return { flagged, listed };
}

/** Packuments read from the standby per request (`_all_docs?include_docs=true` with `keys`), at most. */
export const AUDIT_BATCH_DOCS = 200;
/** Body bytes (the listing's size of each winning revision) per request, at most: one bigger goes alone. */
export const AUDIT_BATCH_BYTES = 1024 * 1024;
/** Requests of packuments in flight, at most (each holds up to AUDIT_BATCH_BYTES of JSON, parsed). */
const AUDIT_PARALLEL = 4;

/**
 * Reads every restored packument (but design documents) from the standby and audits its tarballs. The
 * packuments are read in batches (`POST _all_docs?include_docs=true` with `keys`, bounded by count and by
 * bytes), not one request each: a request per document costs a round trip, and the HTTP client's per-request
 * state (a timeout signal) lives until its timeout, so a million requests would hold a million of them.
 */
async function auditPackuments(
  o: VerifyTarballsOptions,
  audit: TarballAudit,
  limit: ReturnType<typeof pLimit>,
): Promise<void> {
  const batchLimit = pLimit(Math.min(AUDIT_PARALLEL, Math.max(1, o.parallel ?? 8)));
  for (const d of o.dbs) {
    let pending: Promise<void>[] = [];
    const what = `listing of database ${d.db.name}`;
    for await (const ids of auditBatches(readListing(o.reader, d.db.listing, checkDocEntry, what))) {
      if (o.signal?.aborted) throw new Error('drill interrupted');
      const p = batchLimit(() => auditBatch(o, audit, d, ids, limit));
      p.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"
      pending.push(p);
      if (pending.length >= AUDIT_PARALLEL * 2) {
        await Promise.all(pending.slice(0, AUDIT_PARALLEL));
        pending = pending.slice(AUDIT_PARALLEL);
      }
    }
    await Promise.all(pending);
  }
}

/**
 * The IDs of the packuments to audit (not local, deleted or design documents), in listing order, in batches of
 * at most `maxDocs` documents and `maxBytes` of winning-revision bodies (a bigger document goes alone).
 */
export async function* auditBatches(
  entries: AsyncIterable<DocEntry>,
  maxDocs = AUDIT_BATCH_DOCS,
  maxBytes = AUDIT_BATCH_BYTES,
): AsyncGenerator<string[]> {
  let ids: string[] = [];
  let bytes = 0;
  for await (const e of entries) {
    if (e.local || e.deleted || e.id.startsWith('_design/')) continue;
    const size = e.leaves.find((l) => l.rev === e.rev)?.body.size ?? 0;
    if (ids.length && (ids.length >= maxDocs || bytes + size > maxBytes)) {
      yield ids;
      ids = [];
      bytes = 0;
    }
    ids.push(e.id);
    bytes += size;
  }
  if (ids.length) yield ids;
}

/** One batch of packuments, read from the standby in one request, each audited. */
async function auditBatch(
  o: VerifyTarballsOptions,
  audit: TarballAudit,
  d: RestoredDb,
  ids: string[],
  limit: ReturnType<typeof pLimit>,
): Promise<void> {
  const { c } = audit;
  const unreadable = (id: string, why: string) => {
    c.unreadable++;
    if (audit.absent.length < MAX_DETAILS)
      audit.absent.push(`packument ${JSON.stringify(id)} cannot be read from the standby (${why})`);
  };
  const { status, body } = await o.standby.json<{
    rows?: {
      key?: string;
      error?: string;
      value?: { deleted?: boolean };
      doc?: Record<string, unknown> | null;
    }[];
  }>('POST', `${dbPath(d.scratch)}/_all_docs?include_docs=true`, {
    db: d.scratch,
    notFound: 'return',
    body: { keys: ids },
  });
  if (status !== 200) {
    for (const id of ids) unreadable(id, `HTTP ${status}`);
    return;
  }
  const rows = body.rows ?? [];
  // The tarballs of a batch's packuments are hashed `limit` at a time, as the packuments come.
  await Promise.all(
    ids.map((id, i) => {
      const row = rows[i];
      const doc = row?.key === id ? row.doc : undefined;
      if (!doc) {
        unreadable(id, row?.error ?? (row?.value?.deleted ? 'deleted' : 'missing'));
        return undefined;
      }
      return limit(() => auditPackument(o, audit, d, id, doc));
    }),
  );
}

/** One packument: each tarball it names, in the tarball store, as an attachment, or absent. */
async function auditPackument(
  o: VerifyTarballsOptions,
  audit: TarballAudit,
  d: RestoredDb,
  id: string,
  body: Record<string, unknown>,
) {
  const { c } = audit;
  const db = dbPath(d.scratch);
  const { expectations } = packumentTarballs(body, id, d.db.name);
  if (!expectations.length) return;
  const name = typeof body.name === 'string' && body.name ? body.name : id;
  const atts = (body._attachments ?? {}) as Record<string, unknown>;
  for (const exp of expectations) {
    if (audit.seen) {
      if (audit.seen.has(exp.path)) continue;
      audit.seen.add(exp.path);
    }
    c.referenced++;
    const file = exp.path.slice(exp.path.lastIndexOf('/') + 1);
    const version = versionOfFile(name, file);
    const onDisk = await findFile(o.stores, exp.path);
    if (onDisk) {
      c.inStore++;
      const ok = audit.judge(
        exp.path,
        exp,
        await digest(createReadStream(onDisk)),
        audit.flagged.has(exp.path),
      );
      if (ok)
        audit.sample.offer({ where: exp.path, name, version, open: async () => createReadStream(onDisk) });
      continue;
    }
    if (file in atts) {
      c.asAttachment++;
      const attPath = `${db}/${docPath(id)}/${encodeURIComponent(file)}`;
      const open = () =>
        o.standby.exchange('GET', attPath, { db: d.scratch }, async (res) =>
          Readable.from(Buffer.from(await res.arrayBuffer())),
        );
      const where = `${d.scratch}/${id}/${file} (attachment)`;
      const ok = audit.judge(where, exp, await digest(await open()), false);
      if (ok) audit.sample.offer({ where, name, version, open });
      continue;
    }
    c.absent++;
    if (audit.notRestored.length < MAX_NOT_RESTORED) audit.notRestored.push(exp.path);
  }
}

/** The restored file of a listing path, in the first store directory that has it. */
async function findFile(stores: RestoredStore[], p: string): Promise<string | undefined> {
  for (const s of stores) {
    const f = path.join(s.dir, ...p.split('/'));
    try {
      if ((await lstat(f)).isFile()) return f;
    } catch (err) {
      if (systemCodeOf(err) !== 'ENOENT' && systemCodeOf(err) !== 'ENOTDIR') throw err;
    }
  }
  return undefined;
}

/** Referenced paths restored nowhere (sorted) that the snapshot has: lost by the restore. */
async function lostByRestore(
  o: VerifyTarballsOptions,
  notRestored: string[],
): Promise<{ first: string[]; count: number }> {
  const first: string[] = [];
  let count = 0;
  for (const s of o.stores) {
    let i = 0;
    for await (const e of storeListing(o, s)) {
      while (i < notRestored.length && comparePaths(notRestored[i]!, e.path) < 0) i++;
      if (i >= notRestored.length) break;
      if (notRestored[i] === e.path) {
        count++;
        if (first.length < MAX_DETAILS) first.push(`in the snapshot but not restored: ${e.path}`);
      }
    }
  }
  return { first, count };
}

/** Unpacks each sampled tarball: its package.json must have the packument entry's name and version. */
async function unpackSample(
  candidates: Candidate[],
  limit: ReturnType<typeof pLimit>,
): Promise<{ ok: string[]; bad: string[] }> {
  const ok: string[] = [];
  const bad: string[] = [];
  await Promise.all(
    candidates.map((cand) =>
      limit(async () => {
        try {
          const pj = await packageJsonOf(await cand.open());
          if (pj.name === cand.name && pj.version === cand.version) ok.push(cand.where);
          else bad.push(sampleMismatch(cand, pj));
        } catch (err) {
          bad.push(`${cand.where}: ${messageOf(err)}`);
        }
      }),
    ),
  );
  return { ok, bad };
}

export function sampleMismatch(
  cand: { where: string; name: string; version: string },
  pj: { name?: unknown; version?: unknown },
): string {
  return (
    `${cand.where}: package.json says ${JSON.stringify(pj.name)}@${JSON.stringify(pj.version)}, ` +
    `the packument entry is ${cand.name}@${cand.version}`
  );
}

type Counts = TarballAudit['c'];

/** The detail line of the checksum check: where the tarballs were and how each was matched. */
export function integrityDetail(c: Counts): string {
  const flagged = c.flaggedMismatch
    ? `; ${c.flaggedMismatch} did not match already when backed up (restored as they were)`
    : '';
  return (
    `${c.inStore} in the tarball store and ${c.asAttachment} as attachments: ` +
    `${c.bySha512} match by sha512, ${c.bySha1} by sha1 (no integrity recorded), ` +
    `${c.noChecksum} without any checksum${flagged}`
  );
}

function integrityCheck(object: string, audit: TarballAudit): DrillCheck {
  const { c } = audit;
  const verifiable = c.bySha512 + c.bySha1 + c.mismatched + c.flaggedMismatch;
  return {
    group: 'tarballs',
    object,
    check: "every restored tarball's sha512 equals its packument's dist.integrity",
    ok: c.mismatched === 0,
    expected: verifiable - c.flaggedMismatch,
    actual: c.bySha512 + c.bySha1,
    details: [integrityDetail(c), ...audit.mismatches],
  };
}

/** The detail line of the presence check: where the referenced tarballs were, and what no packument names. */
export function presenceDetail(c: Counts, lostCount: number, notLookedUp: number, listed: number): string {
  const unchecked = notLookedUp > 0 ? ` (${notLookedUp} not looked up)` : '';
  return (
    `${c.referenced} referenced: ${c.inStore} in the tarball store, ` +
    `${c.asAttachment} as attachments of their packument; ` +
    `${c.absent - lostCount} were not in the tarball store when the snapshot was taken ` +
    `(the backup reported them as missing)${unchecked}; ` +
    `${Math.max(0, listed - c.inStore - lostCount)} stored files no packument names`
  );
}

function presenceCheck(
  object: string,
  audit: TarballAudit,
  lost: { first: string[]; count: number },
  listed: number,
): DrillCheck {
  const { c } = audit;
  return {
    group: 'tarballs',
    object,
    check:
      'every tarball the packuments refer to is present (unless the tarball store lacked it at backup time)',
    ok: c.unreadable === 0 && lost.count === 0,
    expected: c.referenced - (c.absent - lost.count),
    actual: c.inStore + c.asAttachment,
    details: [
      presenceDetail(c, lost.count, c.absent - audit.notRestored.length, listed),
      ...lost.first,
      ...audit.absent,
    ],
  };
}

function sampleCheck(object: string, sampled: number, r: { ok: string[]; bad: string[] }): DrillCheck {
  return {
    group: 'tarballs',
    object,
    check: 'sampled tarballs unpack (gunzip + tar) to package/package.json of their name and version',
    ok: r.bad.length === 0,
    expected: sampled,
    actual: r.ok.length,
    details: r.bad.slice(0, MAX_DETAILS),
  };
}
