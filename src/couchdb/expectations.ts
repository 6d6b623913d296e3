import type { TarballExpectation } from '../repo/format/source-snapshots.js';

/**
 * The tarballs a packument names: for each version with a `dist`, the path in a tarball store
 * (`<name>/-/<name>-<version>.tgz`; scoped: `@scope/name/-/name-<version>.tgz`) and the checksums recorded.
 * Names and versions come from whoever published the package: a path that could escape the store or is
 * not a plain relative path is refused and reported, never returned.
 */
export interface PackumentTarballs {
  expectations: TarballExpectation[];
  /** Versions skipped because their path would be unsafe, with why. */
  hostile: { version: string; problem: string }[];
}

function safePath(p: string): string | undefined {
  if (p.length === 0 || p.length > 4096) return 'empty or too long';
  if (p.includes('\0') || p.includes('\\') || p.includes('\n') || p.includes('\r')) {
    return 'contains NUL, a backslash or a line break';
  }
  if (p.startsWith('/')) return 'is absolute';
  if (p.split('/').some((s) => s === '' || s === '.' || s === '..'))
    return 'has an empty, "." or ".." segment';
  return undefined;
}

/** True when the body looks like a packument (it has a `versions` object). */
export function isPackument(body: unknown): body is { versions: Record<string, unknown>; name?: unknown } {
  const v = (body as { versions?: unknown } | null)?.versions;
  return (
    typeof body === 'object' && body !== null && typeof v === 'object' && v !== null && !Array.isArray(v)
  );
}

export function packumentTarballs(body: unknown, docId: string, db: string): PackumentTarballs {
  const out: PackumentTarballs = { expectations: [], hostile: [] };
  if (!isPackument(body)) return out;
  const name = typeof body.name === 'string' && body.name.length > 0 ? body.name : docId;
  const slash = name.indexOf('/');
  let base: string;
  let nameProblem: string | undefined;
  if (name.startsWith('@')) {
    base = name.slice(slash + 1);
    if (slash < 2 || base.includes('/')) nameProblem = 'a scoped name must be "@scope/name"';
  } else {
    base = name;
    if (slash >= 0) nameProblem = 'an unscoped name cannot contain "/"';
  }
  for (const [version, v] of Object.entries(body.versions)) {
    const dist = (v as { dist?: unknown } | null)?.dist;
    if (typeof dist !== 'object' || dist === null) continue;
    const d = dist as { shasum?: unknown; integrity?: unknown };
    const path = `${name}/-/${base}-${version}.tgz`;
    const problem =
      nameProblem ??
      (version.length === 0 || version.includes('/')
        ? 'the version is empty or contains "/"'
        : safePath(path));
    if (problem) {
      out.hostile.push({ version, problem: `${JSON.stringify(path)}: ${problem}` });
      continue;
    }
    out.expectations.push({
      path,
      shasum: typeof d.shasum === 'string' ? d.shasum : undefined,
      integrity: typeof d.integrity === 'string' ? d.integrity : undefined,
      doc: docId,
      db,
    });
  }
  return out;
}
