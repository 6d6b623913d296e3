#!/usr/bin/env -S node --max-old-space-size=256
// Entry point installed as the `regbackup` binary. The TypeScript sources are compiled to dist/ by
// `npm ci` (the `prepare` script) or `npm run build`. The main thread's heap is capped (the shebang): its live
// data is bounded by design (external sorts, a budgeted index), and an uncapped heap only lets garbage grow.
import { main } from '../dist/src/cli/main.js';

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
