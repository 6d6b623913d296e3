import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response } from 'express';
import expressPouchDB from 'express-pouchdb';
import PouchDB from 'pouchdb-core';
import memoryAdapter from 'pouchdb-adapter-memory';
import httpAdapter from 'pouchdb-adapter-http';
import mapreduce from 'pouchdb-mapreduce';
import replication from 'pouchdb-replication';
import { DestinationError, messageOf } from '../src/errors.js';
import { registerSecret } from '../src/util/redact.js';
import { removeMultipartUploads } from './pouch-uploads.js';

// Adapters and views on PouchDB itself: registering them again is harmless (another module of the process
// may register the same ones). Replication, which express-pouchdb needs, cannot be registered twice on one
// class: it goes on this server's own class (see below).
PouchDB.plugin(memoryAdapter).plugin(httpAdapter).plugin(mapreduce);
removeMultipartUploads();

/**
 * A temporary CouchDB-compatible server for a restore drill when no drill CouchDB is configured: PouchDB's
 * server (express-pouchdb, "fullCouchDB" mode) with the in-memory adapter, on 127.0.0.1 and a random port,
 * with a server admin of a random password (another local user can neither read nor write it). Everything
 * lives in memory and is gone at stop(): good for registries that fit in memory; configure `drill.couchdb`
 * for larger ones. The demo uses the same server as its stand-in for the registry's CouchDB.
 *
 * Two requests that crash express-pouchdb's process are answered here instead: creating or deleting a
 * database without admin credentials (CouchDB's 401), and `_changes?filter=_selector` (400).
 */
export interface TemporaryCouch {
  /** With the admin's credentials. */
  url: string;
  /** Without credentials. */
  baseUrl: string;
  stop(): Promise<void>;
}

const SYSTEM_DBS = new Set(['_users', '_replicator', '_global_changes']);

function basicAuthUser(header: string | undefined): string | undefined {
  const m = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : decoded.slice(0, colon);
}

/**
 * Answers the two requests that crash express-pouchdb's process instead of passing them on: creating or
 * deleting a database without admin credentials (CouchDB's 401; `admin` undefined: admin party, no check),
 * and `_changes?filter=_selector` (400). Shared by the drill standby and the test harness's server.
 */
export function pouchGuard(admin: string | undefined) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (req.path.endsWith('/_changes') && req.query.filter === '_selector') {
      res
        .status(400)
        .json({ error: 'bad_request', reason: 'filter=_selector is not supported by this server' });
      return;
    }
    const m = /^\/([^/]+)\/?$/.exec(req.path);
    const isDbLevel = m !== null && (!m[1]!.startsWith('_') || SYSTEM_DBS.has(decodeURIComponent(m[1]!)));
    if (
      admin !== undefined &&
      isDbLevel &&
      (req.method === 'PUT' || req.method === 'DELETE') &&
      basicAuthUser(req.headers.authorization) !== admin &&
      !/\bAuthSession=/.test(req.headers.cookie ?? '')
    ) {
      res.status(401).json({ error: 'unauthorized', reason: 'You are not a server admin.' });
      return;
    }
    next();
  };
}

export async function startTemporaryCouch(
  opts: { host?: string; port?: number } = {},
): Promise<TemporaryCouch> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'regbackup-couch-'));
  const admin = { username: 'regbackup', password: randomBytes(18).toString('base64url') };
  registerSecret(admin.password);
  const LocalPouchDB = PouchDB.defaults({ adapter: 'memory', prefix: `${dir}/` });
  // PouchDB.plugin() always installs on the base class; the plugin function itself takes any class.
  (replication as (cls: unknown) => void)(LocalPouchDB);
  const app = express();
  app.disable('x-powered-by');
  app.use(pouchGuard(admin.username));
  app.use(
    '/',
    expressPouchDB(LocalPouchDB, {
      configPath: path.join(dir, 'config.json'),
      logPath: path.join(dir, 'log.txt'),
      mode: 'fullCouchDB',
    }),
  );
  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = app.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw new DestinationError(`cannot start the temporary CouchDB-compatible server: ${messageOf(err)}`);
  }
  const { port } = server.address() as AddressInfo;
  const baseUrl = `http://127.0.0.1:${port}`;
  const url = `http://${admin.username}:${encodeURIComponent(admin.password)}@127.0.0.1:${port}`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await createAdmin(baseUrl, admin);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, baseUrl, stop };
}

/**
 * Ends "admin party" as CouchDB's setup does (PUT /_config/admins/<name>), and waits until the password is
 * accepted (it is hashed asynchronously). The one admin setup of the stand-in server; the test harness uses it.
 */
export async function createAdmin(
  baseUrl: string,
  admin: { username: string; password: string },
): Promise<void> {
  const res = await fetch(`${baseUrl}/_config/admins/${encodeURIComponent(admin.username)}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(admin.password),
  });
  if (!res.ok)
    throw new DestinationError(
      `the temporary CouchDB-compatible server refused its admin: HTTP ${res.status}`,
    );
  await res.body?.cancel();
  const auth = `Basic ${Buffer.from(`${admin.username}:${admin.password}`).toString('base64')}`;
  for (let i = 0; i < 200; i++) {
    const check = await fetch(`${baseUrl}/_session`, { headers: { authorization: auth } });
    const body = (await check.json()) as { userCtx?: { roles?: string[] } };
    if (check.ok && body.userCtx?.roles?.includes('_admin')) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new DestinationError('the temporary CouchDB-compatible server never accepted its admin');
}
