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
 * Warns when this machine's memory is still cold. On a freshly booted VM here, the first touch of each guest
 * page costs the hypervisor's fault (measured: 16 GB written to /dev/shm took 30 s the first time, 4.3 s the
 * second), charged to whichever process touches it first: the first benchmarks after boot then pay ~2 s per
 * GB of new memory (a restore into tmpfs ran 4.8 s instead of 2.0 s). Touches 512 MiB and times it.
 */
export function coldMemoryWarning(): string | undefined {
  const size = 512 * 1024 * 1024;
  const t0 = process.hrtime.bigint();
  const b = Buffer.alloc(size, 1);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (b[size - 1] !== 1 || seconds < 0.4) return undefined;
  return (
    `WARNING: touching 512 MiB of new memory took ${seconds.toFixed(2)} s: this VM's memory is cold and every ` +
    `figure below pays for it. Warm it first: dd if=/dev/zero of=/dev/shm/fill bs=1M count=16000; rm /dev/shm/fill`
  );
}
