import { Worker } from 'node:worker_threads';
import { decodeRun, type RunResult, type RunTask } from './crypto.js';

interface Slot {
  worker: Worker;
  busy: number;
  pending: Map<number, { resolve: (r: RunResult) => void; reject: (e: Error) => void }>;
}

/**
 * A few worker threads that decrypt and verify runs of pack segments (crypto-worker.ts). With `size` 0 the
 * work is done inline on the calling thread. Ciphertext goes to a worker and plaintext comes back by
 * transfer, not copy. A worker holds the process open only while it has work.
 */
export class CryptoPool {
  private readonly slots: Slot[] = [];
  private next = 0;
  private closed = false;

  constructor(
    readonly size: number,
    private readonly idKey: Buffer,
  ) {}

  async run(task: RunTask): Promise<RunResult> {
    if (this.size <= 0) return decodeRun(task, this.idKey);
    if (this.closed) throw new Error('crypto pool is closed');
    if (this.slots.length < this.size) this.slots.push(this.start());
    const slot = this.slots.reduce((a, b) => (b.busy < a.busy ? b : a));
    const n = this.next++;
    // Transfer the ciphertext when the buffer is its own; otherwise a copy (cheap next to the decryption).
    let cipher = task.cipher;
    if (cipher.byteOffset !== 0 || cipher.byteLength !== cipher.buffer.byteLength)
      cipher = new Uint8Array(cipher);
    return new Promise<RunResult>((resolve, reject) => {
      slot.pending.set(n, { resolve, reject });
      if (slot.busy++ === 0) slot.worker.ref();
      slot.worker.postMessage({ n, task: { ...task, cipher } }, [cipher.buffer as ArrayBuffer]);
    });
  }

  private start(): Slot {
    const worker = new Worker(new URL('./crypto-worker.js', import.meta.url), {
      workerData: new Uint8Array(this.idKey),
    });
    worker.unref();
    const slot: Slot = { worker, busy: 0, pending: new Map() };
    const settle = (n: number) => {
      const p = slot.pending.get(n);
      slot.pending.delete(n);
      if (--slot.busy === 0) worker.unref();
      return p;
    };
    worker.on('message', (msg: { n: number; result?: RunResult; error?: string }) => {
      const p = settle(msg.n);
      if (msg.result) p?.resolve(msg.result);
      else p?.reject(new Error(msg.error ?? 'decryption worker failed'));
    });
    const failAll = (err: Error) => {
      for (const n of [...slot.pending.keys()]) settle(n)?.reject(err);
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
    };
    worker.on('error', (err) => failAll(err));
    worker.on('exit', (code) => {
      if (!this.closed) failAll(new Error(`decryption worker exited (code ${code})`));
    });
    return slot;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
