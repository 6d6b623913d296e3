import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';

/** Shared helpers of the benchmark scripts: timing child processes, peak RSS, warming the page cache. */

export interface Measured {
  seconds: number;
  maxRssMiB: number;
  stdout: string;
  stderr: string;
}

/** Runs a command under /usr/bin/time (GNU time) and returns wall time, peak RSS and its output. */
export function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/time', ['-f', '__TIME__ %e %M', cmd, ...args], {
      env: { ...process.env, ...env },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code) => {
      const stderr = Buffer.concat(err).toString();
      const m = /__TIME__ ([\d.]+) (\d+)/.exec(stderr);
      if (code !== 0 || !m)
        return reject(new Error(`${cmd} ${args.join(' ')} failed (exit ${code}):\n${stderr.slice(-2000)}`));
      resolve({
        seconds: Number(m[1]),
        maxRssMiB: Number(m[2]) / 1024,
        stdout: Buffer.concat(out).toString(),
        stderr: stderr.replace(/__TIME__.*\n?/, ''),
      });
    });
  });
}

/** Reads every file under `dir` once, so that every contender starts from a warm page cache. */
export async function warm(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await warm(p);
    else if (e.isFile()) {
      for await (const c of createReadStream(p)) total += (c as Buffer).length;
    }
  }
  return total;
}

export function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ')).join('\n');
}

export const fmt = (n: number, d = 1) => n.toFixed(d);

/**
 * What touching new memory costs on this machine, printed beside the figures. On the VMs here (a PVM guest)
 * each first touch of a page is a fault that costs ~12 µs (512 MiB of new memory: 1.6 s; writing the same
 * memory again: 0.02 s), far more than on a typical host, so every MB a process allocates fresh shows in its
 * CPU time. Right after boot it is worse still: the host backs guest memory on first use (16 GB written to
 * /dev/shm took 30 s the first time, 4.3 s the second).
 */
export function pageFaultCost(): string {
  const size = 512 * 1024 * 1024;
  const t0 = process.hrtime.bigint();
  const b = Buffer.alloc(size, 1);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const perPage = (seconds / (size / 4096)) * 1e6;
  return `touching 512 MiB of new memory: ${seconds.toFixed(2)} s (${perPage.toFixed(1)} µs per 4 KiB page${b[0] === 1 && perPage > 2 ? '; page faults are costly on this machine: fresh memory shows in CPU time' : ''})`;
}
