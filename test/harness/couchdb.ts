import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type Request, type Response } from 'express';
import expressPouchDB from 'express-pouchdb';
import PouchDB from 'pouchdb-core';
import memoryAdapter from 'pouchdb-adapter-memory';
import httpAdapter from 'pouchdb-adapter-http';
import mapreduce from 'pouchdb-mapreduce';
import replication from 'pouchdb-replication';
import { removeTmpDir, tmpDir } from './tmp.js';
import { createAdmin, pouchGuard } from '../../restore/drill-standby.js';
import { removeMultipartUploads } from '../../restore/pouch-uploads.js';

PouchDB.plugin(memoryAdapter).plugin(httpAdapter).plugin(mapreduce).plugin(replication);
removeMultipartUploads();

export interface CouchCredentials {
  username: string;
  password: string;
}

export interface CouchServerOptions {
  /**
   * A server admin (as CouchDB 3 always has). Default: user `admin` with a random password. `false`: no
   * admin at all ("admin party": everyone may do everything, as CouchDB 1.x/2.x out of the box).
   */
  admin?: CouchCredentials | false;
}

export interface CouchServer {
  /** The URL a client configuration would carry: with the admin's credentials when there is an admin. */
  url: string;
  /** The same server without credentials, e.g. http://127.0.0.1:PORT (anonymous requests). */
  baseUrl: string;
  /** The admin's credentials, if there is an admin. */
  admin: CouchCredentials | undefined;
  /** `url` with other credentials in it (e.g. a wrong password, to test a 401). */
  urlWith(credentials: CouchCredentials): string;
  stop(): Promise<void>;
}

/**
 * PouchDB's CouchDB-compatible HTTP server (express-pouchdb 4.2 in "fullCouchDB" mode, memory adapter),
 * in-process, on a random loopback port. See ENVIRONMENT.md for what it does differently from CouchDB.
 *
 * Two of its crashes are fenced off here, because they kill the whole test process:
 * - once an admin exists, creating or deleting a database without admin credentials throws inside
 *   express-pouchdb (TypeError / unhandled rejection): such requests get CouchDB's 401 before reaching it;
 * - `_changes?filter=_selector` crashes it: such requests get a 400 that says so.
 */
export async function startCouchDB(opts: CouchServerOptions = {}): Promise<CouchServer> {
  const admin: CouchCredentials | undefined =
    opts.admin === false
      ? undefined
      : (opts.admin ?? { username: 'admin', password: `pw-${randomBytes(8).toString('hex')}` });
  const dir = await tmpDir(undefined, 'regbackup-couchdb-');
  const LocalPouchDB = PouchDB.defaults({ adapter: 'memory', prefix: `${dir}/` });
  const pouchApp = expressPouchDB(LocalPouchDB, {
    configPath: `${dir}/config.json`,
    logPath: `${dir}/log.txt`,
    mode: 'fullCouchDB',
  });

  const app = express();
  // `_revs_limit` (CouchDB: GET answers the number, PUT takes one), which express-pouchdb lacks: kept per
  // database and answered, so that a backup and a restore can carry it. It stems nothing here.
  const revsLimits = new Map<string, number>();
  app.all('/:db/_revs_limit', express.json({ strict: false }), (req: Request, res: Response) => {
    const db = req.params.db!;
    if (req.method === 'GET') return res.json(revsLimits.get(db) ?? 1000);
    if (req.method !== 'PUT') return res.status(405).json({ error: 'method_not_allowed' });
    if (!Number.isSafeInteger(req.body) || (req.body as number) < 1)
      return res.status(400).json({ error: 'bad_request', reason: 'the limit must be a positive integer' });
    revsLimits.set(db, req.body as number);
    return res.json({ ok: true });
  });
  app.use(pouchGuard(admin?.username));
  app.use('/', pouchApp);

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  const urlWith = (c: CouchCredentials) =>
    `http://${encodeURIComponent(c.username)}:${encodeURIComponent(c.password)}@127.0.0.1:${port}`;

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await removeTmpDir(dir);
  };

  try {
    if (admin) await createAdmin(baseUrl, admin);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: admin ? urlWith(admin) : baseUrl, baseUrl, admin, urlWith, stop };
}
