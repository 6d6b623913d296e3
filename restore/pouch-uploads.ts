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
 * request's files once its response is done. Installed once per process, on the multiparty that
 * express-pouchdb itself loads.
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
    parse.call(this, req, cb);
  };
}
