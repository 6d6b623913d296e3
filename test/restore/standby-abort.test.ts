import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import express from 'express';
import expressPouchDB from 'express-pouchdb';
import PouchDB from 'pouchdb-core';
import { pouchGuard } from '../../restore/drill-standby.js';
import { removeMultipartUploads } from '../../restore/pouch-uploads.js';
// Its PouchDB plugins (memory, http, views, replication), as the tests' CouchDB has them.
import '../harness/couchdb.js';

/**
 * The flake of "killed once the journal …" (test/restore/couchdb.test.ts): the restore SIGKILLed mid-way
 * aborts a multipart/related PUT (a document with attachments) in flight, and express-pouchdb — the drill
 * standby and the tests' CouchDB — died of an unhandled rejection some time later (under load, after the
 * test had emptied the database: the resumed restore then met ECONNREFUSED). Here the server is in this
 * process, as the drill standby is in the worker's.
 */
describe('the PouchDB server (drill standby): an aborted multipart upload', () => {
  let server: http.Server;
  let base: string;
  let dir: string;
  const rejections: unknown[] = [];
  const onRejection = (err: unknown) => rejections.push(err);
  const closedRequests: (() => void)[] = [];

  before(async () => {
    removeMultipartUploads();
    dir = await mkdtemp(path.join(os.tmpdir(), 'regbackup-abort-'));
    const Local = PouchDB.defaults({ adapter: 'memory', prefix: `${dir}/` });
    const app = express();
    app.use(pouchGuard(undefined));
    app.use(
      '/',
      expressPouchDB(Local, {
        configPath: `${dir}/config.json`,
        logPath: `${dir}/log.txt`,
        mode: 'fullCouchDB',
      }),
    );
    server = http.createServer(app);
    server.on('request', (req: http.IncomingMessage) => req.once('close', () => closedRequests.shift()?.()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    process.on('unhandledRejection', onRejection);
  });
  after(async () => {
    process.off('unhandledRejection', onRejection);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  test('leaves no unhandled rejection (the process lives) and writes nothing; the server goes on', async () => {
    assert.equal((await fetch(`${base}/db`, { method: 'PUT' })).status, 201);
    const boundary = 'b0undary';
    const doc = JSON.stringify({
      _id: 'doc',
      _rev: '1-abc',
      _revisions: { start: 1, ids: ['abc'] },
      _attachments: { 'a.bin': { follows: true, content_type: 'application/octet-stream', length: 100000 } },
    });
    const head =
      `--${boundary}\r\ncontent-type: application/json\r\n\r\n${doc}\r\n` +
      `--${boundary}\r\ncontent-disposition: attachment; filename="a.bin"\r\ncontent-type: application/octet-stream\r\n\r\n`;
    const closed = new Promise<void>((r) => closedRequests.push(r));
    const req = http.request(`${base}/db/doc?new_edits=false`, {
      method: 'PUT',
      headers: {
        'content-type': `multipart/related; boundary="${boundary}"`,
        'content-length': String(Buffer.byteLength(head) + 100000 + 100),
      },
    });
    req.on('error', () => undefined);
    req.write(head);
    req.write(Buffer.alloc(5000, 1));
    // Part of the attachment sent (given a moment to reach the parser): the client dies.
    await new Promise((r) => setTimeout(r, 50).unref());
    req.destroy();
    await closed;
    // The rejection, if any, is reported once the microtasks of the abort ran: a few turns later.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(rejections.map(String), []);
    assert.equal((await fetch(`${base}/db/doc`)).status, 404);
    assert.equal((await fetch(`${base}/db`)).status, 200);
  });
});
