/** Worker thread of walkTree (walk.ts): walks with synchronous calls, sends entries in batches on request. */
import { parentPort, workerData } from 'node:worker_threads';
import { systemCodeOf } from '../../errors.js';
import { packBatch, Walker, type Shard, type WalkMessage } from './walk.js';

const { root, tmpDir, batch, shard } = workerData as {
  root: string;
  tmpDir?: string;
  batch: number;
  shard?: Shard;
};
const port = parentPort!;
/** Batches sent and not yet asked for again: the walk stays at most this far ahead of its consumer. */
let credit = 2;
let resume: (() => void) | undefined;
port.on('message', () => {
  credit++;
  resume?.();
});

const send = (m: WalkMessage) => port.postMessage(m);

async function main(): Promise<void> {
  try {
    const walker = new Walker(root, tmpDir, shard);
    for (;;) {
      const entries = await walker.next(batch);
      if (!entries.length) break;
      while (credit === 0) await new Promise<void>((r) => (resume = r));
      credit--;
      const packed = packBatch(entries);
      port.postMessage({ batch: packed } satisfies WalkMessage, [
        packed.sizes.buffer as ArrayBuffer,
        packed.mtimes.buffer as ArrayBuffer,
      ]);
    }
    send({ done: true });
  } catch (err) {
    send({ error: (err as Error).message, code: systemCodeOf(err) });
  }
}
void main();
