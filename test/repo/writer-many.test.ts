import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { readAll, writeBuffers } from '../../src/repo/stream-ref.js';
import { makeTestRepo } from '../helpers/repo.js';

/** Deterministic bytes that do not compress away: hex of a SHA-256 chain. */
function noise(seed: string, bytes: number): string {
  const parts: string[] = [];
  let h = seed;
  let size = 0;
  while (size < bytes) {
    h = createHash('sha256').update(h).digest('hex');
    parts.push(h);
    size += h.length;
  }
  return parts.join('').slice(0, bytes);
}

/** Text whose UTF-8 puts 2-, 3- and 4-byte characters everywhere, so chunk boundaries fall inside characters. */
function multibyte(seed: number, bytes: number): string {
  const chars = ['é', '€', '😀', 'ß', '中', '𝄞', 'a'];
  const parts: string[] = [];
  let size = 0;
  for (let i = seed; size < bytes; i = (i * 7 + 3) % 1000003) {
    const c = chars[i % chars.length]!;
    parts.push(c);
    size += Buffer.byteLength(c);
  }
  return parts.join('');
}

function doc(i: number, extra = ''): Buffer {
  return Buffer.from(
    JSON.stringify({
      _id: `pkg-${i}`,
      _rev: `1-${i}`,
      name: `pkg-${i}`,
      readme: noise(`d${i}`, 2000 + (i % 7) * 500),
      extra,
    }),
  );
}

describe('BlobWriter.writeMany (batches of small buffers)', () => {
  test('the same chunks as one write per buffer, in order, byte for byte: small, empty, big, non-ASCII across chunk boundaries', async () => {
    const t = await makeTestRepo();
    try {
      const bufs: Buffer[] = [];
      for (let i = 0; i < 300; i++) bufs.push(doc(i));
      bufs.push(Buffer.alloc(0));
      // Several CDC chunks inside one batched buffer (under the size streamed alone), characters cut by them.
      bufs.push(Buffer.from(JSON.stringify({ text: multibyte(1, 200 * 1024) })));
      // A big body among small ones: streamed on its own, in pieces.
      bufs.push(Buffer.from(JSON.stringify({ text: multibyte(2, 3 * 1024 * 1024 + 5) })));
      for (let i = 300; i < 400; i++) bufs.push(doc(i, multibyte(i, 100)));
      // The same bytes twice in one batch: stored once.
      bufs.push(doc(7));

      const refs = await writeBuffers(t.writer, bufs, 'json');
      assert.equal(refs.length, bufs.length);
      const stored = t.writer.stats.newBlobs;
      assert.deepEqual(refs.at(-1), refs[7], 'the repeated document names the same chunk');
      assert.ok(t.writer.stats.dedupBlobs >= 1, 'the repeated document is deduplicated within its batch');

      // One write per buffer names the same chunks (and stores nothing new).
      const one = await t.writer.writeMany([], 'json');
      assert.deepEqual(one, []);
      for (let i = 0; i < bufs.length; i++) {
        const c = await t.writer.write(bufs[i]!, 'json');
        const many = await t.writer.writeMany([bufs[i]!], 'json');
        assert.deepEqual(
          many[0]!.ids.map((b) => b.toString('hex')),
          c.ids.map((b) => b.toString('hex')),
        );
        assert.equal(refs[i]!.size, bufs[i]!.length);
        if (refs[i]!.chunks)
          assert.deepEqual(
            refs[i]!.chunks,
            c.ids.map((b) => b.toString('hex')),
            `buffer ${i}`,
          );
      }
      assert.equal(t.writer.stats.newBlobs, stored, 'writing the same buffers again stores nothing');
      assert.ok(refs[302]!.indirect, 'the big body has many chunks (listed indirectly)');
      assert.ok((refs[301]!.chunks?.length ?? 0) > 1, 'the 200 KiB body is cut into several chunks');

      await t.writer.flush();
      const reader = await t.restoreReader();
      for (let i = 0; i < bufs.length; i++) {
        const back = await readAll(reader, refs[i]!);
        assert.ok(back.equals(bufs[i]!), `buffer ${i} reads back byte for byte`);
      }
    } finally {
      await t.close();
    }
  });

  test('a failure in the middle of a batch fails every buffer of it, and the writer: nothing hangs', async () => {
    // Small packs: the batch fills the open pack, and the next one cannot be created.
    const t = await makeTestRepo({ packSize: 64 * 1024 });
    try {
      await t.writer.write(doc(-1), 'json'); // a pack is open
      const spool = path.join(t.repo.cacheDir, 'spool');
      const mine = readdirSync(spool).filter((d) => d.startsWith(`${process.pid}-`));
      assert.ok(mine.length > 0);
      for (const d of mine) rmSync(path.join(spool, d), { recursive: true, force: true });

      const bufs: Buffer[] = [];
      for (let i = 0; i < 200; i++) bufs.push(doc(1000 + i));
      bufs.splice(100, 0, Buffer.from(noise('big', 2 * 1024 * 1024)));
      await assert.rejects(writeBuffers(t.writer, bufs, 'json'), (err: Error) => {
        assert.match(err.message, /pack worker|ENOENT/);
        return true;
      });
      // The writer has failed: later writes are refused with the same error, at once.
      await assert.rejects(t.writer.writeMany([doc(5000)], 'json'), /pack worker|ENOENT/);
      await assert.rejects(t.writer.flush(), /pack worker|ENOENT/);
    } finally {
      await t.close();
    }
  });
});
