/**
 * Worker thread of the blob writer: compresses, encrypts and packs the blobs the main thread sends (the main
 * thread has already chunked, named and deduplicated them), and hands back sealed packs. One per core.
 *
 * Protocol (structured clone, large buffers transferred):
 *   in:  { t: 'blobs', seq, data: ArrayBuffer, ids: Uint8Array (n*32), meta: Uint32Array (n*4: type, hint, offset, length) }
 *        { t: 'flush', seq }
 *   out: { t: 'ack', seq, bytes }             a batch is consumed (its memory can be reused)
 *        { t: 'pack', pack: WirePack }         a sealed pack (bytes transferred)
 *        { t: 'flushed', seq }                 every pack holding earlier blobs has been sent
 *        { t: 'error', message }
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BlobCompressor } from './compress.js';
import { BlobType } from './ids.js';
import { encodeEntry, ENTRY_SIZE, PackBuilder } from './pack.js';
import { HINT_RAW, type PackWorkerIn, type PackWorkerInit, type PackWorkerOut } from './pack-protocol.js';

const init = workerData as PackWorkerInit;
const port = parentPort!;
const compressor = new BlobCompressor(init.compressionLevel);
const open: { [BlobType.data]?: PackBuilder; [BlobType.tree]?: PackBuilder } = {};
const sizes = { [BlobType.data]: { raw: 0, stored: 0 }, [BlobType.tree]: { raw: 0, stored: 0 } };

function send(msg: PackWorkerOut, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

function seal(type: BlobType.data | BlobType.tree): void {
  const b = open[type];
  if (!b || b.count === 0) return;
  open[type] = undefined;
  const p = b.finish();
  const entries = new Uint8Array(p.entries.length * ENTRY_SIZE);
  const eb = Buffer.from(entries.buffer);
  p.entries.forEach((e, i) => encodeEntry(e, eb, i * ENTRY_SIZE));
  // Hand the pack's own ArrayBuffer over when it is exactly the pack; copy otherwise.
  const ab =
    p.bytes.byteOffset === 0 && p.bytes.byteLength === p.bytes.buffer.byteLength
      ? (p.bytes.buffer as ArrayBuffer)
      : (p.bytes.buffer.slice(p.bytes.byteOffset, p.bytes.byteOffset + p.bytes.byteLength) as ArrayBuffer);
  send(
    {
      t: 'pack',
      pack: { id: p.id, type, bytes: ab, sha256: p.sha256.toString('hex'), entries, rawBytes: sizes[type].raw, storedBytes: sizes[type].stored },
    },
    [ab, entries.buffer as ArrayBuffer],
  );
  sizes[type] = { raw: 0, stored: 0 };
}

async function builder(type: BlobType.data | BlobType.tree): Promise<PackBuilder> {
  let b = open[type];
  if (!b) {
    b = await PackBuilder.create(type, type === BlobType.tree ? init.recipients.tree : init.recipients.data);
    open[type] = b;
  }
  return b;
}

async function handle(msg: PackWorkerIn): Promise<void> {
  if (msg.t === 'flush') {
    seal(BlobType.data);
    seal(BlobType.tree);
    send({ t: 'flushed', seq: msg.seq });
    return;
  }
  const data = Buffer.from(msg.data);
  const ids = Buffer.from(msg.ids.buffer, msg.ids.byteOffset, msg.ids.byteLength);
  const n = msg.meta.length / 4;
  for (let i = 0; i < n; i++) {
    const type = msg.meta[i * 4]! as BlobType.data | BlobType.tree;
    const hint = msg.meta[i * 4 + 1]!;
    const off = msg.meta[i * 4 + 2]!;
    const len = msg.meta[i * 4 + 3]!;
    const plain = data.subarray(off, off + len);
    const { bytes, compression } = compressor.compress(plain, hint === HINT_RAW ? 'raw' : 'try');
    const b = await builder(type);
    b.add(Buffer.from(ids.subarray(i * 32, i * 32 + 32)), compression, len, bytes);
    sizes[type].raw += len;
    sizes[type].stored += bytes.length;
    if (b.size >= init.packSize) seal(type);
  }
  send({ t: 'ack', seq: msg.seq, bytes: data.length });
}

let chain = Promise.resolve();
port.on('message', (msg: PackWorkerIn) => {
  chain = chain.then(
    () => handle(msg),
    () => undefined,
  );
  chain.catch((err: unknown) => send({ t: 'error', message: err instanceof Error ? err.message : String(err) }));
});
