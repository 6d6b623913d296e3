import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BlobWriter } from '../../src/repo/writer.js';
import { makeTestRepo } from '../helpers/repo.js';

describe('BlobWriter budget (bytes in flight)', () => {
  test('many files stored at once stay within maxInflight (plus one file): jobs are let in as room frees, not all at once', async () => {
    const t = await makeTestRepo();
    try {
      await t.writer.close();
      const maxInflight = 256 * 1024;
      t.writer = new BlobWriter(t.repo, t.index, t.fanout, { workers: 2, maxInflight });
      const size = 64 * 1024;
      const files: string[] = [];
      for (let i = 0; i < 120; i++) {
        const f = path.join(t.dir, `f${i}.tgz`);
        writeFileSync(f, randomBytes(size));
        files.push(f);
      }
      // Every file asked for at once, as the tarball source does with its files in flight.
      const results = await Promise.all(
        files.map((f) => {
          const st = statSync(f);
          return t.writer.writeFile(f, 'bulk', { size: st.size, mtimeMs: Math.floor(st.mtimeMs) });
        }),
      );
      assert.equal(results.length, 120);
      for (const r of results) assert.equal(r.size, size);
      assert.equal(t.writer.stats.newBytes, 120 * size);
      const peak = t.writer.stats.peakInflight;
      assert.ok(peak >= size, `peak ${peak}`);
      // Before the fix every waiting file came in as soon as any room freed: ~120 x 64 KiB in flight.
      assert.ok(peak <= maxInflight + size, `peak in flight ${peak} bytes, budget ${maxInflight}`);
      await t.writer.flush();
    } finally {
      await t.close();
    }
  });
});
