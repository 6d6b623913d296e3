import { after, before } from 'node:test';
import { startCouchDB, type CouchServer, type CouchServerOptions } from './couchdb.js';
import { startGcs, type FakeGcsOptions, type GcsServer } from './gcs.js';
import { startRedis, type RedisServer } from './redis.js';
import { startS3, type S3Server } from './s3.js';

export { startCouchDB, startGcs, startRedis, startS3 };
export type { CouchServer, CouchServerOptions, GcsServer, RedisServer, S3Server };
export { tmpDir, tmpDirSync, removeTmpDir } from './tmp.js';
export { freePort, sleep } from './net.js';
export * from './age.js';

/** Which servers a suite needs: `true` for defaults, or that server's options. */
export interface ServerOptions {
  couchdb?: boolean | CouchServerOptions;
  s3?: boolean;
  gcs?: boolean | FakeGcsOptions;
  redis?: boolean;
}

export interface AllServers {
  couchdb: CouchServer;
  s3: S3Server;
  gcs: GcsServer;
  redis: RedisServer;
}

/** The servers asked for in `O`, and only those (`{ s3: true }` gives `{ s3: S3Server }`). */
export type Servers<O extends ServerOptions> = {
  [K in keyof O & keyof AllServers as O[K] extends false | undefined ? never : K]: AllServers[K];
};

type Started = Partial<AllServers>;

async function startOne(kind: keyof AllServers, opt: unknown): Promise<AllServers[keyof AllServers]> {
  switch (kind) {
    case 'couchdb':
      return startCouchDB(typeof opt === 'object' && opt !== null ? (opt as CouchServerOptions) : {});
    case 's3':
      return startS3();
    case 'gcs':
      return startGcs(typeof opt === 'object' && opt !== null ? (opt as FakeGcsOptions) : {});
    case 'redis':
      return startRedis();
  }
}

/**
 * Starts the servers in `opts` in parallel. If one fails to start, the others are stopped again and the
 * error is thrown. Call `stop()` when done (it never throws for one server: it stops all, then reports).
 */
export async function startServers<O extends ServerOptions>(
  opts: O,
): Promise<Servers<O> & { stop(): Promise<void> }> {
  const started: Started = {};
  const kinds = (Object.keys(opts) as Array<keyof ServerOptions>).filter((k) => opts[k]);
  const results = await Promise.allSettled(
    kinds.map(async (k) => {
      const server = await startOne(k, opts[k]);
      (started as Record<string, unknown>)[k] = server;
    }),
  );
  const stop = () => stopAll(started);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop().catch((err: unknown) => console.error('while stopping after a failed start:', err));
    throw failed.reason;
  }
  return Object.assign({}, started as Servers<O>, { stop });
}

async function stopAll(started: Started): Promise<void> {
  const servers = Object.entries(started) as Array<[string, { stop(): Promise<void> }]>;
  const results = await Promise.allSettled(servers.map(([, s]) => s.stop()));
  const errors = results.flatMap((r, i) =>
    r.status === 'rejected' ? [`${servers[i]![0]}: ${String(r.reason)}`] : [],
  );
  for (const key of Object.keys(started)) delete (started as Record<string, unknown>)[key];
  if (errors.length) throw new Error(`stopping test servers failed: ${errors.join('; ')}`);
}

/**
 * Fresh servers for one suite. Call in a `describe` body (or at the top of a test file): it registers a
 * `before` hook that starts them and an `after` hook that stops them, which node:test runs even when tests
 * fail. The returned object fills in when `before` has run; touching it earlier throws.
 *
 *   describe('backup to s3', () => {
 *     const servers = useServers({ couchdb: true, s3: true });
 *     it('works', async () => { const bucket = await servers.s3.createBucket(); … servers.couchdb.url … });
 *   });
 */
export function useServers<O extends ServerOptions>(
  opts: O,
  hookOptions: { timeout?: number } = {},
): Servers<O> {
  let running: (Servers<O> & { stop(): Promise<void> }) | undefined;
  const view = {} as Servers<O>;
  for (const kind of Object.keys(opts) as Array<keyof ServerOptions>) {
    if (!opts[kind]) continue;
    Object.defineProperty(view, kind, {
      enumerable: true,
      get() {
        const server = running && (running as Record<string, unknown>)[kind];
        if (!server) throw new Error(`the ${kind} test server is not running: use it inside a test or hook`);
        return server;
      },
    });
  }
  before(
    async () => {
      running = await startServers(opts);
    },
    { timeout: hookOptions.timeout ?? 60_000 },
  );
  after(
    async () => {
      const r = running;
      running = undefined;
      await r?.stop();
    },
    { timeout: hookOptions.timeout ?? 60_000 },
  );
  return view;
}
