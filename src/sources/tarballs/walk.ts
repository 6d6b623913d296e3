import { lstat, opendir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { systemCodeOf } from '../../errors.js';
import { compareCodePoints, ExternalSorter } from '../../util/external-sort.js';

/**
 * Walks a directory tree in listing order: paths compared component by component (code point order), i.e.
 * as strings where "/" sorts before any other character. Directories with a huge number of entries (a real
 * registry has millions of package directories at the top level) are sorted externally, so memory stays
 * bounded.
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
  path: string;
  /** What is wrong, for the operator. */
  problem: string;
  /** 'error' makes the run partial; 'warning' is reported only. */
  severity: 'error' | 'warning';
}

export type WalkEntry = WalkFile | WalkProblem;

/** Listing order of two relative paths. */
export function comparePaths(a: string, b: string): number {
  return compareCodePoints(a.replaceAll('/', '\0'), b.replaceAll('/', '\0'));
}

const IN_MEMORY_DIR = 50_000;

async function* sortedNames(dir: string): AsyncGenerator<{ name: string; type: 'dir' | 'file' | 'link' | 'other' }> {
  const d = await opendir(dir, { bufferSize: 256 });
  let small: { name: string; type: 'dir' | 'file' | 'link' | 'other' }[] | undefined = [];
  let sorter: ExternalSorter | undefined;
  for await (const e of d) {
    const type = e.isDirectory() ? 'dir' : e.isFile() ? 'file' : e.isSymbolicLink() ? 'link' : 'other';
    if (small) {
      small.push({ name: e.name, type });
      if (small.length > IN_MEMORY_DIR) {
        sorter = new ExternalSorter((r) => r.slice(2));
        for (const s of small) await sorter.add(`${s.type[0]}:${s.name}`);
        small = undefined;
      }
    } else await sorter!.add(`${type[0]}:${e.name}`);
  }
  if (small) {
    small.sort((a, b) => compareCodePoints(a.name, b.name));
    yield* small;
    return;
  }
  const types = { d: 'dir', f: 'file', l: 'link', o: 'other' } as const;
  for await (const r of sorter!.sorted()) yield { name: r.slice(2), type: types[r[0] as keyof typeof types] };
}

export async function* walkTree(root: string): AsyncGenerator<WalkEntry> {
  const realRoot = await realpath(root);
  yield* walkDir(root, realRoot, '');
}

function problemOf(err: unknown): string {
  const code = systemCodeOf(err);
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOENT') return 'disappeared while being read';
  return code ?? String((err as Error).message ?? err);
}

async function* walkDir(root: string, realRoot: string, rel: string): AsyncGenerator<WalkEntry> {
  const abs = rel ? path.join(root, rel) : root;
  let names: AsyncGenerator<{ name: string; type: 'dir' | 'file' | 'link' | 'other' }>;
  try {
    names = sortedNames(abs);
    // Prime the generator so that an unreadable directory is reported here.
    const first = await names.next();
    if (first.done) return;
    names = (async function* (head, rest) {
      yield head;
      yield* rest;
    })(first.value, names);
  } catch (err) {
    yield { kind: 'problem', path: rel || '.', problem: `directory cannot be read: ${problemOf(err)}`, severity: 'error' };
    return;
  }
  for await (const e of names) {
    const relPath = rel ? `${rel}/${e.name}` : e.name;
    // Names with "/" cannot come from readdir; names with NUL or "\n" cannot be stored safely in a listing.
    if (e.name.includes('\0') || e.name.includes('\n')) {
      yield { kind: 'problem', path: JSON.stringify(relPath), problem: 'file name contains a control character; skipped', severity: 'error' };
      continue;
    }
    const full = path.join(root, relPath);
    if (e.type === 'dir') {
      yield* walkDir(root, realRoot, relPath);
    } else if (e.type === 'file') {
      try {
        const st = await lstat(full);
        if (!st.isFile()) continue; // replaced while walking
        yield { kind: 'file', path: relPath, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
      } catch (err) {
        yield { kind: 'problem', path: relPath, problem: `cannot stat: ${problemOf(err)}`, severity: 'error' };
      }
    } else if (e.type === 'link') {
      // A symbolic link is never followed: the store is a tree of plain files. One that points outside the
      // tree is reported as an error (someone may be trying to exfiltrate files through the backup).
      try {
        const target = await realpath(full);
        const inside = target === realRoot || target.startsWith(realRoot + path.sep);
        const st = await stat(full);
        yield {
          kind: 'problem',
          path: relPath,
          problem: inside
            ? `is a symbolic link (to ${path.relative(realRoot, target)}); not followed`
            : `is a symbolic link pointing out of the tree; not followed`,
          severity: inside && st.isFile() ? 'warning' : 'error',
        };
      } catch {
        yield { kind: 'problem', path: relPath, problem: 'is a dangling symbolic link; skipped', severity: 'warning' };
      }
    } else {
      yield { kind: 'problem', path: relPath, problem: 'is not a regular file; skipped', severity: 'warning' };
    }
  }
}
