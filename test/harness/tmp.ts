import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Something that runs a function after a test or suite: node:test's `t` (TestContext) or SuiteContext-like. */
export interface AfterHost {
  after(fn: () => void | Promise<void>): void;
}

const leftovers = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort for directories whose owner never cleaned up (a crashed suite): remove them at exit.
  process.on('exit', () => {
    for (const dir of leftovers) rmSync(dir, { recursive: true, force: true });
  });
}

/**
 * A fresh temporary directory. With `t` (a node:test TestContext), it is removed after that test, pass or
 * fail; without, it is removed when the process exits. Either way nothing is left in /tmp.
 */
export async function tmpDir(t?: AfterHost, prefix = 'regbackup-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  leftovers.add(dir);
  installExitHook();
  t?.after(() => removeTmpDir(dir));
  return dir;
}

/** Synchronous variant for places that cannot await (a describe body). Removed at process exit. */
export function tmpDirSync(prefix = 'regbackup-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  leftovers.add(dir);
  installExitHook();
  return dir;
}

export async function removeTmpDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  leftovers.delete(dir);
}
