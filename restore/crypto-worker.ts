/**
 * Worker thread of the restore's blob fetcher: decrypts runs of pack segments and verifies the blobs in them
 * (see crypto.ts). Messages: `{ n, task }` in, `{ n, result }` or `{ n, error }` out; buffers are transferred.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { decodeRun, type RunTask } from './crypto.js';

const idKey = Buffer.from(workerData as Uint8Array);
const port = parentPort!;

port.on('message', (msg: { n: number; task: RunTask }) => {
  try {
    const result = decodeRun(msg.task, idKey);
    port.postMessage({ n: msg.n, result }, result.buffers);
  } catch (err) {
    port.postMessage({ n: msg.n, error: err instanceof Error ? err.message : String(err) });
  }
});
