#!/usr/bin/env -S MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=8388608 MALLOC_MMAP_THRESHOLD_=4194304 node --max-semi-space-size=4 --heap-growing-percent=100
// Entry point installed as the `regbackup` binary. The TypeScript sources are compiled to dist/ by
// `npm ci` (the `prepare` script) or `npm run build`. No --max-old-space-size: V8 applies it to every isolate,
// overriding the workers' resourceLimits (a 64 MB pack worker got 256 MB), and the workers' garbage grew with it:
// +60-75 MB peak RSS on a backup of large files (it saved ~30 MB on 20k small files: the main thread's heap).
// --heap-growing-percent=100: each heap's next full-GC limit (main thread and workers) is 2x what the last full
// GC left live, instead of a factor V8 picks up to 4x: most of a backup's heap is garbage between collections
// (a CouchDB backup of 100k or 1M small documents keeps 25-40 MB live on its main thread; that heap reached
// 90-145 MB). Real CouchDB 3.5, small packuments: 100k peak RSS 377 -> 333 MiB, 1M 464 -> 378 MiB, CPU within
// a few % (a third more at 1M with 50; --optimize-for-size / --memory-saver-mode: ~235 MiB at 100k, +65-95% CPU).
// MALLOC_TRIM_THRESHOLD_ / MALLOC_MMAP_THRESHOLD_: every 64 KiB age segment that node:crypto seals or opens is a
// fresh malloc (and Node copies it once more into one of the exact size); with glibc's defaults (trim above
// 128 KiB free, mmap from 128 KiB) the arenas gave those pages back and faulted them in again, and each 1 MiB
// read buffer was a fresh mmap. Keeping up to 8 MiB free at an arena's top and serving blocks up to 4 MiB from
// the arenas cut the CPU of an 841 MB tarball backup by ~15 % and of its restore by ~25 % (perf: page faults
// under CipherBase::Update went away), peak RSS within a few MB.
//
// regbackup runs on Node.js 24 (package.json "engines"). `npx regbackup` and npm scripts find Node 24 in
// node_modules/.bin (the devDependency "node"); the Docker image is built on it. An older Node is refused
// here, before anything loads, with what to do instead.
const REQUIRED_MAJOR = 24;
const major = Number(process.versions.node.split('.')[0]);
if (major < REQUIRED_MAJOR) {
  process.stderr.write(
    `regbackup needs Node.js ${REQUIRED_MAJOR} or later; this is ${process.version} (${process.execPath}).\n` +
      `Run it as \`npx regbackup …\` from the project folder after \`npm ci\` (npm provides Node ${REQUIRED_MAJOR}), ` +
      `use the Docker image, or install Node.js ${REQUIRED_MAJOR} LTS.\n`,
  );
  process.exit(2);
}

// Compiled modules are cached between runs (Node's module compile cache): start-up is most of a short
// command's time. The cache lives under the user's cache directory ($XDG_CACHE_HOME or ~/.cache, then
// regbackup/compile-cache), or where NODE_COMPILE_CACHE says. A cache that cannot be written only costs speed:
// Node reports it in the returned status, and nothing here may stop the command.
const { enableCompileCache } = await import('node:module');
try {
  if (process.env.NODE_COMPILE_CACHE) enableCompileCache?.();
  else {
    const { homedir } = await import('node:os');
    const { mkdirSync } = await import('node:fs');
    const base = process.env.XDG_CACHE_HOME || `${homedir()}/.cache`;
    const dir = `${base}/regbackup/compile-cache`;
    // Made here first, one level at a time: Node 24's recursive mkdir (which the compile cache uses too) spins
    // forever on a parent where mkdir says ENOENT (under /proc, say) instead of failing.
    let at = '';
    for (const part of dir.split('/')) {
      at = at ? `${at}/${part}` : part || '/';
      try {
        mkdirSync(at, { mode: 0o700 });
      } catch (err) {
        if (err.code !== 'EEXIST') throw err;
      }
    }
    enableCompileCache?.(dir);
  }
} catch {
  // no cache: the command runs all the same
}

const { main } = await import('../dist/src/cli/main.js');

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    // main() handles its own errors; this is only reached on a bug in the handler itself.
    console.error(err);
    process.exitCode = 70;
  },
);
