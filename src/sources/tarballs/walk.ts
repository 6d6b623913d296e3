import { lstatSync, readdirSync, realpathSync, statSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { systemCodeOf } from '../../errors.js';
import { decodeName, nameProblem, showName } from '../../repo/names.js';
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

/**
 * The entries of a directory, names read as bytes (a string read would turn bytes that are not UTF-8 into
 * U+FFFD, naming a file that does not exist): the names that are not UTF-8 first, then the others sorted.
 */
async function* sortedNames(dir: string, tmpDir?: string): AsyncGenerator<Named> {
  const entries = readdirSync(dir, {
    withFileTypes: true,
    encoding: 'buffer',
  }) as unknown as Dirent<Buffer>[];
  const named: Named[] = [];
  for (const e of entries) {
    const d = decodeName(e.name);
    if ('problem' in d) yield { name: e.name.toString('utf8'), type: typeOf(e), raw: e.name };
    else if (entries.length <= IN_MEMORY_DIR) named.push({ name: d.name, type: typeOf(e) });
  }
  if (entries.length <= IN_MEMORY_DIR) {
    named.sort((a, b) => compareCodePoints(a.name, b.name));
    yield* named;
    return;
  }
  // A huge directory: readdirSync already holds its names; sort them through run files rather than as
  // objects, and drop the array as soon as it is copied out. Names are JSON (a name may hold a newline).
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

/** The walk itself, synchronous calls inside an async generator (run it in a worker: see walkTree). */
export async function* walkTreeHere(root: string, tmpDir?: string, shard?: Shard): AsyncGenerator<WalkEntry> {
  const realRoot = realpathSync(root);
  yield* walkDir(root, realRoot, '', tmpDir, shard);
}

async function* walkDir(
  root: string,
  realRoot: string,
  rel: string,
  tmpDir?: string,
  shard?: Shard,
): AsyncGenerator<WalkEntry> {
  const abs = rel ? path.join(root, rel) : root;
  let names: AsyncGenerator<Named>;
  try {
    names = sortedNames(abs, tmpDir);
    const first = await names.next();
    if (first.done) return;
    names = (async function* (head, rest) {
      yield head;
      yield* rest;
    })(first.value, names);
  } catch (err) {
    if (!rel) throw err; // the root itself: the caller reports the source as unreadable
    yield {
      kind: 'problem',
      path: rel,
      problem: `directory cannot be read: ${problemOf(err)}`,
      severity: 'error',
    };
    return;
  }
  for await (const e of names) {
    if (!rel && !inShard(e.name, shard)) continue;
    const relPath = rel ? `${rel}/${e.name}` : e.name;
    // The name rule (src/repo/names.ts): a name a snapshot cannot hold is reported, never stored.
    const refused = e.raw ? 'is not valid UTF-8' : nameProblem(relPath);
    if (refused) {
      const shown = e.raw
        ? showName(Buffer.concat([Buffer.from(rel ? `${rel}/` : ''), e.raw]))
        : showName(relPath);
      yield {
        kind: 'problem',
        path: shown,
        refused: true,
        problem: `${refused}: a name a snapshot cannot hold; skipped${e.type === 'd' ? ' with everything under it' : ''}`,
        severity: 'error',
      };
      continue;
    }
    const full = path.join(root, relPath);
    if (e.type === 'd') {
      yield* walkDir(root, realRoot, relPath, tmpDir);
    } else if (e.type === 'f') {
      try {
        const st = lstatSync(full);
        if (!st.isFile()) continue; // replaced while walking
        yield { kind: 'file', path: relPath, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
      } catch (err) {
        yield {
          kind: 'problem',
          path: relPath,
          problem: `cannot stat: ${problemOf(err)}`,
          severity: 'error',
        };
      }
    } else if (e.type === 'l') {
      // A symbolic link is never followed: the store is a tree of plain files. One that points outside the
      // tree is an error (someone may be trying to get files outside the store into the backup).
      try {
        const target = realpathSync(full);
        const inside = target === realRoot || target.startsWith(realRoot + path.sep);
        const isFile = statSync(full).isFile();
        yield {
          kind: 'problem',
          path: relPath,
          problem: inside
            ? `is a symbolic link (to ${path.relative(realRoot, target)}); not followed`
            : 'is a symbolic link pointing out of the tree; not followed',
          severity: inside && isFile ? 'warning' : 'error',
        };
      } catch {
        yield {
          kind: 'problem',
          path: relPath,
          problem: 'is a dangling symbolic link; skipped',
          severity: 'warning',
        };
      }
    } else {
      yield {
        kind: 'problem',
        path: relPath,
        problem: 'is not a regular file; skipped',
        severity: 'warning',
      };
    }
  }
}

/** Message protocol of the walk worker (walk-worker.ts). */
export type WalkMessage = { entries: WalkEntry[] } | { done: true } | { error: string; code?: string };

const BATCH = 512;

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
    resourceLimits: { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 96 },
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
      yield m.entries;
    }
  } finally {
    await worker.terminate();
  }
}
