/**
 * Which compiled test files are unit tests and which are end-to-end tests, for `npm run test:unit` and
 * `npm run test:e2e` (`npm test` runs them all). Run after the build: `node dist/test/select.js unit|e2e`
 * prints the files, one a line, sorted.
 *
 * The rule: a test is e2e when its code, or test code it imports (followed transitively through the
 * relative imports of the compiled JavaScript, so type-only imports do not count), reaches a server or a
 * process: a module of test/harness/ other than harness/tmp (CouchDB stand-in, s3rver, Redis, the age CLI,
 * the prerequisites check), of test/fakes/ (the GCS fake), test/helpers/cli (spawns the binary), a test
 * fixture that starts servers, or node:child_process. Every other test is a unit test: it needs no server
 * and no external program.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const testRoot = path.dirname(fileURLToPath(import.meta.url)); // dist/test

/** Test-side modules that start or reach a server or a process (paths relative to dist/test). */
function reachesServer(rel: string): boolean {
  return (
    (rel.startsWith('harness/') && rel !== 'harness/tmp.js') ||
    rel.startsWith('fakes/') ||
    rel === 'helpers/cli.js'
  );
}

/** Packages whose import means a process or a server. */
const SERVER_PACKAGES = new Set(['node:child_process', 'child_process', 's3rver', 'bullmq', 'ioredis']);

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])([^'"]+)\1/g;

function importsOf(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(IMPORT)].map((m) => m[2]!);
}

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) out.push(...testFiles(p));
    else if (d.name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

/** Whether a test file (or test code it imports) reaches a server or a process. */
export function isEndToEnd(file: string, memo = new Map<string, boolean>()): boolean {
  const seen = new Set<string>();
  const visit = (f: string): boolean => {
    const known = memo.get(f);
    if (known !== undefined) return known;
    if (seen.has(f)) return false; // an import cycle: decided by the other modules on it
    seen.add(f);
    let e2e = false;
    for (const spec of importsOf(f)) {
      if (SERVER_PACKAGES.has(spec)) e2e = true;
      if (!spec.startsWith('.')) continue;
      const target = path.resolve(path.dirname(f), spec);
      const rel = path.relative(testRoot, target).split(path.sep).join('/');
      if (rel.startsWith('..')) continue; // production code (src, restore, jobs, bench): not followed
      if (reachesServer(rel) || visit(target)) e2e = true;
    }
    memo.set(f, e2e);
    return e2e;
  };
  return visit(path.resolve(file));
}

/** The compiled test files of one set, sorted, as paths relative to the working directory. */
export function select(set: 'unit' | 'e2e'): string[] {
  const memo = new Map<string, boolean>();
  return testFiles(testRoot)
    .filter((f) => isEndToEnd(f, memo) === (set === 'e2e'))
    .map((f) => path.relative(process.cwd(), f))
    .sort();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const set = process.argv[2];
  if (set !== 'unit' && set !== 'e2e') {
    process.stderr.write('usage: node dist/test/select.js unit|e2e\n');
    process.exit(2);
  }
  process.stdout.write(select(set).join('\n') + '\n');
}
