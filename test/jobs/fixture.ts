import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { applyChangesToCouch, loadIntoCouch } from '../generate/couch.js';
import { mutateRegistry, writeRegistry, type RegistryOptions } from '../generate/registry.js';
import { startServers, tmpDir, type CouchServer, type RedisServer, type S3Server } from '../harness/index.js';
import { BIN, runCli, type CliResult } from '../helpers/cli.js';
import { configYaml } from '../helpers/config.js';

/**
 * A registry for the worker, drill, alert and metrics tests: a source CouchDB holding a generated registry
 * (some packages with their tarballs as attachments), its tarball directory, keys, and a configuration with
 * two targets — `local` (a directory) and `aws` (s3rver) — plus whatever YAML a test adds.
 */
export interface JobsFixture {
  dir: string;
  configFile: string;
  env: NodeJS.ProcessEnv;
  couch: CouchServer;
  s3: S3Server;
  bucket: string;
  redis?: RedisServer;
  registryDir: string;
  registryOptions: RegistryOptions;
  /** Rewrites the configuration with extra YAML appended. */
  writeConfig(extra?: string): void;
  cli(args: string[], env?: NodeJS.ProcessEnv): Promise<CliResult>;
  /** Day N of the registry: some packages publish, some are created, one is unpublished. */
  advanceDay(day: number): Promise<void>;
  stop(): Promise<void>;
}

export async function makeFixture(
  opts: { redis?: boolean; packages?: number; extra?: string; attachments?: number } = {},
): Promise<JobsFixture> {
  const dir = await tmpDir(undefined, 'regbackup-jobs-');
  const servers = await startServers({ couchdb: true, s3: true, ...(opts.redis ? { redis: true } : {}) });
  const s = servers as unknown as {
    couchdb: CouchServer;
    s3: S3Server;
    redis?: RedisServer;
    stop(): Promise<void>;
  };
  const registryDir = path.join(dir, 'registry');
  const registryOptions: RegistryOptions = {
    packages: opts.packages ?? 30,
    seed: 5,
    maxVersionsPerPackage: 6,
    tarballVersions: 3,
    attachments: opts.attachments ?? 0.15,
    maxTarballBytes: 200_000,
  };
  await writeRegistry({ ...registryOptions, out: registryDir });
  await loadIntoCouch(s.couchdb.url, 'registry', registryDir);
  const bucket = await s.s3.createBucket();
  const configFile = path.join(dir, 'regbackup.yaml');
  const env: NodeJS.ProcessEnv = { REGBACKUP_CONFIG: configFile, COUCH_URL: s.couchdb.url };
  const base = () =>
    configYaml({
      identity: true,
      packSize: '1MiB',
      couchdb: '${COUCH_URL}',
      tarballs: './registry/tarballs',
      targets: [
        '{ name: local, type: fs, path: ./target-local }',
        `{ name: aws, type: s3, bucket: ${bucket}, endpoint: "${s.s3.endpoint}", forcePathStyle: true, credentials: { accessKeyId: S3RVER, secretAccessKey: S3RVER } }`,
      ],
    });
  const f: JobsFixture = {
    dir,
    configFile,
    env,
    couch: s.couchdb,
    s3: s.s3,
    bucket,
    redis: s.redis,
    registryDir,
    registryOptions,
    writeConfig(extra = '') {
      writeFileSync(configFile, base() + extra);
    },
    cli: (args, e = {}) => runCli(args, { env: { ...env, ...e } }),
    async advanceDay(day) {
      await mutateRegistry({ out: registryDir, day });
      await applyChangesToCouch(s.couchdb.url, 'registry', registryDir);
    },
    stop: () => s.stop(),
  };
  f.writeConfig(opts.extra);
  const gen = await f.cli(['keys', 'generate', '--out', path.join(dir, 'keys')]);
  assert.equal(gen.code, 0, gen.stderr);
  const init = await f.cli(['init']);
  assert.equal(init.code, 0, init.stderr);
  return f;
}

/** A local HTTP receiver standing for PagerDuty and a webhook: records every JSON body posted. */
export interface Receiver {
  url: string;
  events: { path: string; body: Record<string, unknown>; headers: http.IncomingHttpHeaders }[];
  /** Answer with this status (default 202). */
  status: number;
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const r: Receiver = { url: '', events: [], status: 202, close: async () => undefined };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        body = { raw: text };
      }
      if (r.status < 300) r.events.push({ path: req.url ?? '/', body, headers: req.headers });
      res.writeHead(r.status, { 'content-type': 'application/json' }).end('{"status":"success"}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  r.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}

/** A `regbackup worker` process, its output collected. */
export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when stderr (JSON log lines) matches. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
}

export function spawnWorker(env: NodeJS.ProcessEnv, args: string[] = []): WorkerProcess {
  const child = spawn(process.execPath, [BIN, 'worker', ...args], {
    env: { ...process.env, REGBACKUP_LOG_LEVEL: 'debug', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
    for (const w of [...waiters]) {
      if (w.re.test(err)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    pid: child.pid!,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 60_000) {
      if (re.test(err)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `worker ${child.pid}: ${re} not seen within ${timeoutMs} ms; stderr tail:\n${err.slice(-4000)}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          re,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
}

/** Polls `fn` until it returns a truthy value. */
export async function until<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  what: string,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
