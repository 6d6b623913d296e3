import os from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * Runs a pure function of a module on worker threads: `run(buf, ...args)` sends a copy of `buf` (and the
 * structured-cloneable `args`) to the least busy worker, which calls `module[fn](buf, ...args)` and sends the
 * (structured-cloneable) result back. For CPU work the main thread must not do — parsing big JSON documents —
 * without the callers depending on worker plumbing.
 */
export class FunctionPool {
  private readonly workers: { w: Worker; busy: number }[] = [];
  private readonly calls = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  private next = 1;
  private closed = false;

  constructor(moduleUrl: string, fn: string, size = Math.max(1, Math.min(2, os.availableParallelism() - 1))) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL('./function-worker.js', import.meta.url), {
        workerData: { moduleUrl, fn },
        // The buffers sent are outside the heap; what a call builds is small and short-lived: a big heap only
        // lets garbage pile up (memory is a budget).
        resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 },
      });
      const slot = { w, busy: 0 };
      w.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
        slot.busy--;
        const c = this.calls.get(m.id);
        this.calls.delete(m.id);
        if (!c) return;
        if (m.ok) c.resolve(m.value);
        else c.reject(new Error(m.error));
      });
      w.on('error', (err) => {
        for (const c of this.calls.values()) c.reject(err);
        this.calls.clear();
      });
      w.unref();
      this.workers.push(slot);
    }
  }

  run<T>(buf: Buffer, ...args: unknown[]): Promise<T> {
    const copy = new Uint8Array(buf.length);
    copy.set(buf);
    return this.runOwned(copy, ...args);
  }

  /**
   * Like run(), without the copy: `data` (a whole ArrayBuffer, which the caller gives up) is transferred to the
   * worker thread, which frees it once the function has returned.
   */
  runOwned<T>(data: Uint8Array, ...args: unknown[]): Promise<T> {
    if (this.closed) return Promise.reject(new Error('function pool is closed'));
    if (
      !(data.buffer instanceof ArrayBuffer) ||
      data.byteOffset !== 0 ||
      data.byteLength !== data.buffer.byteLength
    ) {
      const whole = new Uint8Array(data.byteLength);
      whole.set(data);
      data = whole;
    }
    const copy = data;
    const slot = this.workers.reduce((a, b) => (b.busy < a.busy ? b : a));
    const id = this.next++;
    slot.busy++;
    return new Promise<T>((resolve, reject) => {
      this.calls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      slot.w.postMessage({ id, buf: copy, args }, [copy.buffer as ArrayBuffer]);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.workers.map((s) => s.w.terminate()));
  }
}
