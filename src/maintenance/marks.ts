import os from 'node:os';
import pLimit from 'p-limit';
import { IntegrityError } from '../errors.js';
import type { Repository } from '../repo/repository.js';
import { META_PREFIX } from '../repo/repository.js';
import { log } from '../log.js';
import { ObjectNotFoundError, type ObjectStore } from '../store/types.js';
import { nameTime, parseTimedName } from '../repo/format/object-name.js';

/**
 * Prune marks (docs/FORMAT.md §14, "Deleting: forget, prune, marks"): signed, encrypted JSON objects under `marks/`. Pruning never
 * deletes at once, and never takes a lock:
 *
 * 1. a prune run marks the packs no snapshot needs (`kind: "marked"`);
 * 2. backups that start later see the mark and do not deduplicate against those packs (they store such
 *    blobs again); a backup that started earlier may still use them;
 * 3. a later prune run, once the mark is older than the grace period (longer than any backup run), checks
 *    the references again against every snapshot that exists then — including those of the backups that
 *    started before the mark — deletes what is still unneeded, and records it (`kind: "executed"`);
 * 4. a backup that started before an execution and used one of its packs refuses to commit (the next run
 *    redoes the work): a backup longer than the grace period is the only way to meet this, and it stays safe.
 */
export interface MarkBody {
  version: 1;
  /** marked / executed: see above. forgotten: snapshots deleted by `forget` (never to be copied back). */
  kind: 'marked' | 'executed' | 'forgotten';
  /** When the mark was written. */
  time: string;
  host: string;
  /** Marked: packs no snapshot needed at `time`. Executed: packs deleted. */
  packs: string[];
  /** Marked: packs mostly unneeded, to be rewritten. Executed: packs rewritten (and deleted). */
  repack: string[];
  /** Executed: the mark acted on. */
  of?: string;
  /** Forgotten: the snapshot object keys deleted. */
  snapshots?: string[];
  /** Executed: other objects the execution deletes (the marks it acts on, index objects it rewrote). */
  deletes?: string[];
}

export interface Mark {
  key: string;
  body: MarkBody;
}

/**
 * Every mark on `store`, oldest first. Marks come and go while this reads them (a prune deletes the marks it
 * acted on, and old execution records): a mark listed but gone when read was deleted on purpose, after the
 * record that replaces it was written. So the listing is read again, a few times, until every mark listed can
 * be read; the marks that keep going away are then left out (deleted, they no longer say anything).
 */
export async function loadMarks(repo: Repository, store: ObjectStore): Promise<Mark[]> {
  const read = new Map<string, Mark>();
  for (let attempt = 1; ; attempt++) {
    const keys: string[] = [];
    for await (const o of store.list(META_PREFIX.mark))
      if (parseTimedName(META_PREFIX.mark, o.key)) keys.push(o.key);
    const limit = pLimit(8);
    const vanished: string[] = [];
    await Promise.all(
      keys
        .filter((key) => !read.has(key))
        .map((key) =>
          limit(async () => {
            const mark = await readMark(repo, store, key);
            if (mark) read.set(key, mark);
            else vanished.push(key);
          }),
        ),
    );
    const listed = new Set(keys);
    // A mark read earlier but not listed now was deleted meanwhile.
    for (const key of read.keys()) if (!listed.has(key)) read.delete(key);
    if (vanished.length === 0 || attempt >= MARK_LISTINGS) break;
    log().debug({ target: store.name, mark: vanished[0] }, 'a mark went away while read; listing again');
  }
  return [...read.values()].sort((a, b) => a.body.time.localeCompare(b.body.time));
}

/** How many times loadMarks lists the marks while some keep disappearing. */
const MARK_LISTINGS = 5;

/** One mark, or undefined when it no longer exists (deleted since it was listed). */
async function readMark(repo: Repository, store: ObjectStore, key: string): Promise<Mark | undefined> {
  let bytes: Buffer;
  try {
    bytes = await repo.readMeta('mark', key, store);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
  const body = JSON.parse(bytes.toString('utf8')) as MarkBody;
  if (
    body.version !== 1 ||
    !Array.isArray(body.packs) ||
    !Array.isArray(body.repack) ||
    !['marked', 'executed', 'forgotten'].includes(body.kind)
  ) {
    throw new IntegrityError(`mark ${key} on ${store.name} has an unknown shape`);
  }
  return { key, body };
}

export async function sealMark(
  repo: Repository,
  body: Omit<MarkBody, 'version' | 'time' | 'host'>,
  now = new Date(),
): Promise<{ key: string; bytes: Buffer; body: MarkBody }> {
  const full: MarkBody = { version: 1, time: now.toISOString(), host: os.hostname(), ...body };
  const sealed = await repo.sealMeta('mark', Buffer.from(JSON.stringify(full)), `${nameTime(now)}-`);
  return { key: sealed.key, bytes: sealed.bytes, body: full };
}

/** Packs a backup must not deduplicate against: marked for deletion or rewriting, or already deleted. */
export function excludedPacks(marks: readonly Mark[]): Set<string> {
  const out = new Set<string>();
  for (const m of marks) {
    for (const p of m.body.packs) out.add(p);
    for (const p of m.body.repack) out.add(p);
  }
  return out;
}

/** Packs deleted by prune executions at or after `since` (for the commit-time check of a backup). */
export function deletedSince(marks: readonly Mark[], since: Date): Set<string> {
  const out = new Set<string>();
  for (const m of marks) {
    if (m.body.kind !== 'executed' || Date.parse(m.body.time) < since.getTime()) continue;
    for (const p of [...m.body.packs, ...m.body.repack]) out.add(p);
  }
  return out;
}

/**
 * Object keys deleted on purpose (prune executions, forgotten snapshots): catching a target up must not copy
 * them back from a target where the deletion has not happened (yet, or because of retention).
 */
export function deletedKeys(marks: readonly Mark[]): Set<string> {
  const out = new Set<string>();
  for (const m of marks) {
    if (m.body.kind === 'executed') {
      for (const p of [...m.body.packs, ...m.body.repack]) {
        out.add(`data/${p.slice(0, 2)}/${p}`);
        out.add(`tree/${p.slice(0, 2)}/${p}`);
      }
    }
    if (m.body.kind === 'executed') for (const k of m.body.deletes ?? []) out.add(k);
    if (m.body.kind === 'forgotten') for (const k of m.body.snapshots ?? []) out.add(k);
  }
  return out;
}
