/** Worker thread of writeRegistry/mutateRegistry: builds and writes the packages it is sent. */

import { parentPort, workerData } from 'node:worker_threads';
import { createContext, type GenContextOptions, type PackageSpec } from './packument.js';
import { writePackage } from './registry.js';

const data = workerData as { ctx: GenContextOptions; out: string };
const ctx = createContext(data.ctx);

parentPort!.on('message', (job: { id: number; spec: PackageSpec; newFrom: number }) => {
  try {
    const stats = writePackage(ctx, job.spec, data.out, job.newFrom);
    parentPort!.postMessage({ id: job.id, ok: true, stats });
  } catch (e) {
    parentPort!.postMessage({
      id: job.id,
      ok: false,
      error: e instanceof Error ? (e.stack ?? e.message) : String(e),
    });
  }
});
