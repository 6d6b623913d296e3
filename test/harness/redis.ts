import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { freePort, sleep } from './net.js';
import { removeTmpDir, tmpDir } from './tmp.js';

const execFileP = promisify(execFile);

export interface RedisServer {
  /** redis://127.0.0.1:PORT */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Daemons started by this process, killed at exit if a suite never stopped them (a crash). */
const running = new Map<number, number>(); // port -> pid
let exitHookInstalled = false;

/**
 * The system's redis-server (Debian 7.0) as a daemon on a random free loopback port, no persistence, its
 * files in a temporary directory. A port taken between choosing and binding is retried on another port.
 */
export async function startRedis(): Promise<RedisServer> {
  installExitHook();
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const dir = await tmpDir(undefined, 'regbackup-redis-');
    try {
      const pid = await launch(port, dir);
      running.set(port, pid);
      let stopped = false;
      return {
        url: `redis://127.0.0.1:${port}`,
        port,
        async stop() {
          if (stopped) return;
          stopped = true;
          await shutdown(port, pid);
          running.delete(port);
          await removeTmpDir(dir);
        },
      };
    } catch (err) {
      lastError = err;
      await removeTmpDir(dir);
    }
  }
  throw new Error(
    `could not start redis-server: ${lastError instanceof Error ? lastError.message : String(lastError)}`,
  );
}

async function launch(port: number, dir: string): Promise<number> {
  const pidfile = `${dir}/redis.pid`;
  const logfile = `${dir}/redis.log`;
  await execFileP('redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--daemonize',
    'yes',
    '--dir',
    dir,
    '--pidfile',
    pidfile,
    '--logfile',
    logfile,
  ]);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const pid = await readPid(pidfile);
    // Ours only if the server on that port reports our pid (another redis may have won the port).
    const info = await command(port, 'INFO server').catch(() => undefined);
    const servingPid = info && /process_id:(\d+)/.exec(info)?.[1];
    if (pid !== undefined && servingPid === String(pid)) return pid;
    const log = await readFile(logfile, 'utf8').catch(() => '');
    if (/Address already in use|Could not create server TCP listening socket/i.test(log)) {
      if (pid !== undefined) killQuietly(pid);
      throw new Error(`port ${port} was taken`);
    }
    await sleep(25);
  }
  throw new Error(`redis-server on port ${port} did not answer within 10 s (log: ${logfile})`);
}

async function shutdown(port: number, pid: number): Promise<void> {
  try {
    await execFileP('redis-cli', ['-p', String(port), 'shutdown', 'nosave']);
  } catch (err) {
    // redis-cli reports an error when the server closes the connection on shutdown in some versions; the
    // loop below checks that the process is gone, and kills it if not.
    void err;
  }
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline && isAlive(pid)) await sleep(20);
  if (isAlive(pid)) killQuietly(pid, 'SIGKILL');
}

async function readPid(pidfile: string): Promise<number | undefined> {
  const text = await readFile(pidfile, 'utf8').catch(() => '');
  const n = Number.parseInt(text.trim(), 10);
  return Number.isFinite(n) && n > 0 ? n : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGTERM'): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    // Already gone: that is what we wanted.
    void err;
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of running.values()) killQuietly(pid, 'SIGKILL');
  });
}

/** One inline command over a raw socket; resolves with the raw reply (no redis-cli process per poll). */
function command(port: number, cmd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ port, host: '127.0.0.1' });
    let data = '';
    const timer = setTimeout(() => sock.destroy(new Error('timeout')), 1000);
    sock.on('connect', () => sock.write(`${cmd}\r\n`));
    sock.on('data', (chunk) => {
      data += chunk.toString('utf8');
      // A bulk reply: "$<len>\r\n<payload>\r\n"; a status or error: one line.
      const m = /^\$(\d+)\r\n/.exec(data);
      if (
        (m && data.length >= m[0].length + Number(m[1]) + 2) ||
        (!data.startsWith('$') && data.endsWith('\r\n'))
      ) {
        clearTimeout(timer);
        sock.end();
        resolve(data);
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
