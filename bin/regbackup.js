#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-old-space-size=256 --max-semi-space-size=4
// Entry point installed as the `regbackup` binary. The TypeScript sources are compiled to dist/ by
// `npm ci` (the `prepare` script) or `npm run build`. The main thread's heap is capped (the shebang): its live
// data is bounded by design (external sorts, a budgeted index), and an uncapped heap only lets garbage grow.
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
// command's time. The cache lives in the system's temporary directory unless NODE_COMPILE_CACHE says where.
const { enableCompileCache } = await import('node:module');
enableCompileCache?.();

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
