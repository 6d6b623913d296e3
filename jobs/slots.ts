import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { systemCodeOf } from '../src/errors.js';
import { processAlive } from '../src/util/process.js';

/**
 * Cache slots. The local cache (blob index, restore journals) is safe for one process at a time; a worker
 * runs several jobs at once, and several workers may share a host and a cache directory. Each running job
 * takes a slot — `<cache>/slots/<n>/`, claimed with a lock file naming its process — and uses it as its
 * cache root; a slot whose process is gone is taken over. Slots persist, so the index cached in them is
 * reused by later jobs.
 */
export interface Slot {
  root: string;
  release(): void;
}

const held = new Set<string>();

export function acquireSlot(cacheRoot: string, max = 256): Slot {
  const dir = path.join(cacheRoot, 'slots');
  mkdirSync(dir, { recursive: true });
  for (let n = 0; n < max; n++) {
    const lock = path.join(dir, `${n}.lock`);
    if (held.has(lock)) continue;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(
          lock,
          JSON.stringify({ pid: process.pid, host: os.hostname(), since: new Date().toISOString() }),
          { flag: 'wx' },
        );
        held.add(lock);
        const root = path.join(dir, String(n));
        mkdirSync(root, { recursive: true });
        return {
          root,
          release() {
            held.delete(lock);
            rmSync(lock, { force: true });
          },
        };
      } catch (err) {
        if (systemCodeOf(err) !== 'EEXIST') throw err;
        // Taken: by a live process (try the next slot) or by one that died (take it over).
        let owner: { pid?: number; host?: string } = {};
        try {
          owner = JSON.parse(readFileSync(lock, 'utf8')) as typeof owner;
        } catch (e) {
          if (systemCodeOf(e) === 'ENOENT') continue; // released meanwhile: try again
          owner = {}; // unreadable (half written): treat as taken
        }
        const stale =
          owner.host === os.hostname() &&
          typeof owner.pid === 'number' &&
          owner.pid !== process.pid &&
          !processAlive(owner.pid);
        if (!stale) break;
        rmSync(lock, { force: true });
      }
    }
  }
  throw new Error(`no free cache slot in ${dir} (${max} in use)`);
}
