import { lstatSync, readdirSync, realpathSync, statSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { systemCodeOf } from '../../errors.js';
import { decodeName, MAX_NAME_BYTES, nameProblem, showName } from '../../repo/names.js';
import { compareCodePoints, ExternalSorter } from '../../util/external-sort.js';

/**
 * Walks a directory tree in listing order: paths compared component by component (code point order), i.e.
 * as strings where "/" sorts before any other character.
 *
 * The walk runs in a worker thread with synchronous file-system calls: a tarball store holds millions of
 * files, and one awaited call per file would make the walk alone take longer than the backup. Directories
 * with a huge number of entries (a real registry has millions of package directories at the top level) are
 * sorted externally, so memory stays bounded.
 */
export interface WalkFile {
  kind: 'file';
  /** Relative, "/"-separated. */
  path: string;
  size: number;
  mtimeMs: number;
}

export interface WalkProblem {
  kind: 'problem';
  /** The path, or for a refused name its safely escaped form (showName). */
  path: string;
  /** Set when the name itself is refused by the name rule (src/repo/names.ts). */
  refused?: true;
  /** What is wrong, for the operator. */
  problem: string;
  /** 'error' makes the run partial; 'warning' is reported only. */
  severity: 'error' | 'warning';
}

export type WalkEntry = WalkFile | WalkProblem;

/**
 * A part of a tree: the paths whose first component lies in [from, to) (code point order; an absent bound is
 * open). Such a part is one contiguous stretch of the listing order, so the listings of consecutive shards,
 * concatenated, are the listing of the whole tree.
 */
export interface Shard {
  from?: string;
  to?: string;
}

export function inShard(p: string, shard: Shard | undefined): boolean {
  if (!shard) return true;
  const slash = p.indexOf('/');
  const top = slash < 0 ? p : p.slice(0, slash);
  return (
    (shard.from === undefined || compareCodePoints(top, shard.from) >= 0) &&
    (shard.to === undefined || compareCodePoints(top, shard.to) < 0)
  );
}

const IN_MEMORY_DIR = 50_000;

/** A directory entry: its name, or the raw bytes of a name that is not valid UTF-8. */
type Named = { name: string; type: 'd' | 'f' | 'l' | 'o'; raw?: Buffer };

function typeOf(e: Pick<Dirent, 'isDirectory' | 'isFile' | 'isSymbolicLink'>): Named['type'] {
  return e.isDirectory() ? 'd' : e.isFile() ? 'f' : e.isSymbolicLink() ? 'l' : 'o';
}

const byName = (a: Named, b: Named) => compareCodePoints(a.name, b.name);

/**
 * The entries of a directory of up to IN_MEMORY_DIR entries, sorted, or its entries read as bytes when it is
 * bigger (for sortHuge). Names are read as strings: Node turns bytes that are not UTF-8 into U+FFFD, so a
 * directory where a name holds U+FFFD is read again as bytes, and its names that are not UTF-8 (a string
 * would name a file that does not exist) come first, with their bytes, then the others sorted.
 */
function readNames(dir: string): { names: Named[] } | { huge: Dirent<Buffer>[] } {
  const entries = readdirSync(dir, { withFileTypes: true });
  if (entries.length > IN_MEMORY_DIR) {
    return {
      huge: readdirSync(dir, { withFileTypes: true, encoding: 'buffer' }) as unknown as Dirent<Buffer>[],
    };
  }
  if (!entries.some((e) => e.name.includes('\ufffd'))) {
    const names: Named[] = new Array(entries.length);
    for (let i = 0; i < entries.length; i++) names[i] = { name: entries[i]!.name, type: typeOf(entries[i]!) };
    return { names: names.sort(byName) };
  }
  const raw = readdirSync(dir, { withFileTypes: true, encoding: 'buffer' }) as unknown as Dirent<Buffer>[];
  const bad: Named[] = [];
  const named: Named[] = [];
  for (const e of raw) {
    const d = decodeName(e.name);
    if ('problem' in d) bad.push({ name: e.name.toString('utf8'), type: typeOf(e), raw: e.name });
    else named.push({ name: d.name, type: typeOf(e) });
  }
  return { names: bad.concat(named.sort(byName)) };
}

/**
 * A huge directory (a real registry has millions of package directories at the top level): readdirSync
 * already holds its names; they are sorted through run files rather than as objects, and the array is dropped
 * as soon as it is copied out. Names are JSON (a name may hold a newline). Names that are not UTF-8 first.
 */
async function* sortHuge(entries: Dirent<Buffer>[], tmpDir?: string): AsyncGenerator<Named> {
  for (const e of entries) {
    const d = decodeName(e.name);
    if ('problem' in d) yield { name: e.name.toString('utf8'), type: typeOf(e), raw: e.name };
  }
  const sorter = new ExternalSorter((r) => JSON.parse(r.slice(1)) as string, { tmpDir });
  for (let i = 0; i < entries.length; i++) {
    const d = decodeName(entries[i]!.name);
    if ('name' in d) await sorter.add(`${typeOf(entries[i]!)}${JSON.stringify(d.name)}`);
  }
  entries.length = 0;
  for await (const r of sorter.sorted())
    yield { name: JSON.parse(r.slice(1)) as string, type: r[0] as Named['type'] };
}

function problemOf(err: unknown): string {
  const code = systemCodeOf(err);
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOENT') return 'disappeared while being read';
  return code ?? String((err as Error).message ?? err);
}

/** A directory being walked: its entries in order and how far the walk is in them. */
interface Frame {
  /** Relative path ('' for the root). */
  rel: string;
  /** Absolute path, with a trailing separator. */
  abs: string;
  names?: Named[];
  at: number;
  /** A huge directory's entries, sorted through run files. */
  huge?: AsyncGenerator<Named>;
}

/**
 * The walk: an explicit stack of directories, synchronous file-system calls, one entry at a time into
 * batches (run it in a worker: see walkTreeBatches). Per file it costs a stat and the name check; there is no
 * await except in a huge directory (its names come from run files).
 */
export class Walker {
  private readonly stack: Frame[] = [];
  private readonly realRoot: string;
  private started = false;

  constructor(
    private readonly root: string,
    private readonly tmpDir?: string,
    private readonly shard?: Shard,
  ) {
    this.realRoot = realpathSync(root);
  }

  /** The next entries, up to `max` (fewer only at the end: an empty batch means the walk is over). */
  async next(max: number): Promise<WalkEntry[]> {
    const out: WalkEntry[] = [];
    if (!this.started) {
      this.started = true;
      // The root itself unreadable: the caller reports the source as unreadable.
      this.open('', out, true);
    }
    const { stack } = this;
    while (out.length < max && stack.length) {
      const f = stack[stack.length - 1]!;
      let e: Named | undefined;
      if (f.huge) {
        const r = await f.huge.next();
        e = r.done ? undefined : r.value;
      } else e = f.names![f.at++];
      if (!e) {
        stack.pop();
        continue;
      }
      if (!f.rel && !inShard(e.name, this.shard)) continue;
      this.visit(f, e, out);
    }
    return out;
  }

  /** Stops the walk early (a huge directory's run files are removed). */
  async close(): Promise<void> {
    for (const f of this.stack.splice(0)) await f.huge?.return(undefined);
  }

  private open(rel: string, out: WalkEntry[], isRoot = false): void {
    const abs = rel ? `${this.root}${path.sep}${rel}` : this.root;
    try {
      const r = readNames(abs);
      const frame: Frame = { rel, abs: abs + path.sep, at: 0 };
      if ('huge' in r) frame.huge = sortHuge(r.huge, this.tmpDir);
      else if (r.names.length) frame.names = r.names;
      else return;
      this.stack.push(frame);
    } catch (err) {
      if (isRoot) throw err;
      out.push({
        kind: 'problem',
        path: rel,
        problem: `directory cannot be read: ${problemOf(err)}`,
        severity: 'error',
      });
    }
  }

  private visit(f: Frame, e: Named, out: WalkEntry[]): void {
    const { rel } = f;
    const relPath = rel ? `${rel}/${e.name}` : e.name;
    // The name rule (src/repo/names.ts): a name a snapshot cannot hold is reported, never stored. The
    // directories above were checked on the way down: the name alone, and the whole path's length.
    const refused = e.raw
      ? 'is not valid UTF-8'
      : (nameProblem(e.name) ??
        (relPath.length * 3 > MAX_NAME_BYTES && rel ? nameProblem(relPath) : undefined));
    if (refused) {
      const shown = e.raw
        ? showName(Buffer.concat([Buffer.from(rel ? `${rel}/` : ''), e.raw]))
        : showName(relPath);
      out.push({
        kind: 'problem',
        path: shown,
        refused: true,
        problem: `${refused}: a name a snapshot cannot hold; skipped${e.type === 'd' ? ' with everything under it' : ''}`,
        severity: 'error',
      });
      return;
    }
    const full = f.abs + e.name;
    if (e.type === 'd') {
      this.open(relPath, out);
    } else if (e.type === 'f') {
      try {
        const st = lstatSync(full);
        if (!st.isFile()) return; // replaced while walking
        out.push({ kind: 'file', path: relPath, size: st.size, mtimeMs: Math.floor(st.mtimeMs) });
      } catch (err) {
        out.push({
          kind: 'problem',
          path: relPath,
          problem: `cannot stat: ${problemOf(err)}`,
          severity: 'error',
        });
      }
    } else if (e.type === 'l') {
      // A symbolic link is never followed: the store is a tree of plain files. One that points outside the
      // tree is an error (someone may be trying to get files outside the store into the backup).
      const { realRoot } = this;
      try {
        const target = realpathSync(full);
        const inside = target === realRoot || target.startsWith(realRoot + path.sep);
        const isFile = statSync(full).isFile();
        out.push({
          kind: 'problem',
          path: relPath,
          problem: inside
            ? `is a symbolic link (to ${path.relative(realRoot, target)}); not followed`
            : 'is a symbolic link pointing out of the tree; not followed',
          severity: inside && isFile ? 'warning' : 'error',
        });
      } catch {
        out.push({
          kind: 'problem',
          path: relPath,
          problem: 'is a dangling symbolic link; skipped',
          severity: 'warning',
        });
      }
    } else {
      out.push({
        kind: 'problem',
        path: relPath,
        problem: 'is not a regular file; skipped',
        severity: 'warning',
      });
    }
  }
}

/** The walk in this thread, one entry at a time (tests; the backup runs it in a worker: see walkTreeBatches). */
export async function* walkTreeHere(root: string, tmpDir?: string, shard?: Shard): AsyncGenerator<WalkEntry> {
  const w = new Walker(root, tmpDir, shard);
  try {
    for (;;) {
      const batch = await w.next(BATCH);
      if (!batch.length) return;
      yield* batch;
    }
  } finally {
    await w.close();
  }
}

/**
 * A batch of the walk as the worker sends it: the files' paths joined by NUL (a byte no name can hold) and
 * their sizes and times in typed arrays — one string and two buffers to copy between threads, not thousands
 * of objects to clone — and the problems, each after `at` files of the batch.
 */
export interface PackedBatch {
  paths: string;
  sizes: Float64Array;
  mtimes: Float64Array;
  problems: { at: number; problem: WalkProblem }[];
}

/** Message protocol of the walk worker (walk-worker.ts). */
export type WalkMessage = { batch: PackedBatch } | { done: true } | { error: string; code?: string };

export function packBatch(entries: WalkEntry[]): PackedBatch {
  const paths: string[] = [];
  const problems: PackedBatch['problems'] = [];
  for (const e of entries) {
    if (e.kind === 'file') paths.push(e.path);
    else problems.push({ at: paths.length, problem: e });
  }
  const sizes = new Float64Array(paths.length);
  const mtimes = new Float64Array(paths.length);
  let i = 0;
  for (const e of entries) {
    if (e.kind !== 'file') continue;
    sizes[i] = e.size;
    mtimes[i++] = e.mtimeMs;
  }
  return { paths: paths.join('\0'), sizes, mtimes, problems };
}

export function unpackBatch(b: PackedBatch): WalkEntry[] {
  const out: WalkEntry[] = [];
  const paths = b.sizes.length ? b.paths.split('\0') : [];
  let p = 0;
  for (let i = 0; i <= paths.length; i++) {
    while (p < b.problems.length && b.problems[p]!.at === i) out.push(b.problems[p++]!.problem);
    if (i < paths.length)
      out.push({ kind: 'file', path: paths[i]!, size: b.sizes[i]!, mtimeMs: b.mtimes[i]! });
  }
  return out;
}

/**
 * Entries per batch (per message from the walk's worker): 100 messages per 100k files cost nothing; a bigger
 * batch only costs memory (4096: +11 MB peak RSS of a walk, 1024: the same CPU time).
 */
const BATCH = 1024;

/**
 * Walks `root` in a worker thread and yields its entries in listing order. The worker walks ahead by at most
 * a few batches (it waits for the consumer), so memory stays bounded.
 */
export async function* walkTree(root: string, tmpDir?: string, shard?: Shard): AsyncGenerator<WalkEntry> {
  for await (const batch of walkTreeBatches(root, tmpDir, shard)) yield* batch;
}

/** walkTree, in the batches the worker sends (one await per batch, not per file). */
export async function* walkTreeBatches(
  root: string,
  tmpDir?: string,
  shard?: Shard,
): AsyncGenerator<WalkEntry[]> {
  const worker = new Worker(new URL('./walk-worker.js', import.meta.url), {
    workerData: { root, tmpDir, batch: BATCH, shard },
    // A small young generation: the walk's garbage is short-lived (-9 MB peak RSS, the same CPU time). The old
    // generation holds a huge directory's names while they are sorted.
    resourceLimits: { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 96 },
  });
  const queue: WalkMessage[] = [];
  let wake: (() => void) | undefined;
  let failed: Error | undefined;
  worker.on('message', (m: WalkMessage) => {
    queue.push(m);
    wake?.();
  });
  worker.on('error', (err) => {
    failed = err;
    wake?.();
  });
  try {
    for (;;) {
      while (queue.length === 0 && !failed) await new Promise<void>((r) => (wake = r));
      wake = undefined;
      if (failed) throw failed;
      const m = queue.shift()!;
      if ('error' in m) throw Object.assign(new Error(m.error), { code: m.code });
      if ('done' in m) return;
      // Ask for the next batch while this one is consumed.
      worker.postMessage('more');
      yield unpackBatch(m.batch);
    }
  } finally {
    await worker.terminate();
  }
}
