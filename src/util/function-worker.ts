/** Worker thread of FunctionPool (function-pool.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { releaseNow } from './release.js';

const { moduleUrl, fn } = workerData as { moduleUrl: string; fn: string };
const mod = (await import(moduleUrl)) as Record<string, (buf: Buffer, ...args: unknown[]) => unknown>;
const f = mod[fn];
if (typeof f !== 'function') throw new Error(`${moduleUrl} exports no function ${fn}`);

parentPort!.on('message', (m: { id: number; buf: Uint8Array; args: unknown[] }) => {
  const buf = Buffer.from(m.buf.buffer, m.buf.byteOffset, m.buf.byteLength);
  try {
    const value = f(buf, ...m.args);
    parentPort!.postMessage({ id: m.id, ok: true, value });
  } catch (err) {
    parentPort!.postMessage({ id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) });
  }
  // The input was transferred here (this thread's alone) and the answer is posted (copied): freed now, not at
  // this thread's next GC.
  releaseNow([buf]);
});
