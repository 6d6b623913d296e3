import { rm } from 'node:fs/promises';
import type { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { log } from '../src/log.js';

type Parse = (this: EventEmitter, req: IncomingMessage & { res?: ServerResponse }, cb?: unknown) => void;
let installed = false;

/**
 * express-pouchdb parses `multipart/related` document writes (a restore sends documents with attachments
 * that way) with multiparty, which spools every attachment into a file in the system's temporary directory
 * and never removes it: each drill would leave the registry's attachments behind in /tmp. This removes each
 * request's files once its response is done; and it keeps an aborted upload from crashing the process (see
 * below). Installed once per process, on the multiparty that express-pouchdb itself loads.
 */
export function removeMultipartUploads(): void {
  if (installed) return;
  installed = true;
  const fromPouch = createRequire(createRequire(import.meta.url).resolve('express-pouchdb'));
  const { Form } = fromPouch('multiparty') as { Form: { prototype: { parse: Parse } } };
  const parse = Form.prototype.parse;
  Form.prototype.parse = function (this: EventEmitter, req, cb) {
    const files: string[] = [];
    this.on('file', (_name: string, file: { path: string }) => files.push(file.path));
    req.res?.once('close', () => {
      for (const f of files)
        rm(f, { force: true }).catch((err: Error) =>
          log().warn({ file: f, err: err.message }, 'cannot remove an upload spooled by the standby server'),
        );
    });
    // A request that fails before its end (the client aborted it: a restore killed or interrupted mid-upload)
    // makes express-pouchdb's 'error' handler leave a rejected promise that only its 'close' handler would
    // catch, and multiparty never emits 'close' after an error: an unhandled rejection, which ends the
    // process (the standby, or the worker that runs the drill). Emitted here, after that handler ran: the
    // rejection is caught (an error answer, to a client that is gone), and nothing is written.
    let closed = false;
    this.once('close', () => (closed = true));
    this.on('error', () => {
      if (closed) return;
      closed = true;
      this.emit('close');
    });
    parse.call(this, req, cb);
  };
}
