import { systemCodeOf } from '../errors.js';

/**
 * Whether a process with this ID exists on this host (signal 0: nothing is sent). EPERM means it exists but
 * belongs to another user: alive. Used to tell a lock, slot, spool directory or job record left by a killed
 * process from one whose owner still runs.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return systemCodeOf(err) === 'EPERM';
  }
}
