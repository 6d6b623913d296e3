import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/**
 * A proxy in front of the PouchDB-based CouchDB stand-in that makes it speak two things real CouchDB 2+/3
 * does and couchbackup's SDK relies on: gzip-encoded request bodies (the SDK compresses every body), an
 * answer to a `_bulk_get` of no documents (its probe; the stand-in never answers that), and the `pending` field of `_changes` answers (the SDK's
 * ChangesFollower polls until it reads 0). Used by the benchmarks only, for the peer, so that both tools
 * run against the same server and data. (regbackup needs neither.)
 */
export async function pendingProxy(target: string): Promise<{ url: string; close(): Promise<void> }> {
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const isChanges = /\/_changes(\?|$)/.test(req.url ?? '');
    if (process.env.PROXY_DEBUG) console.error('proxy', req.method, req.url);
    const body: Buffer[] = [];
    req.on('data', (b: Buffer) => body.push(b));
    req.on('end', () => {
      let reqBody = Buffer.concat(body);
      const headers = { ...req.headers, host: t.host, 'accept-encoding': 'identity' };
      if (req.headers['content-encoding'] === 'gzip') {
        reqBody = gunzipSync(reqBody);
        delete headers['content-encoding'];
        headers['content-length'] = String(reqBody.length);
      }
      // The stand-in never answers a _bulk_get of no documents (couchbackup's probe); CouchDB answers this.
      if (
        /\/_bulk_get(\?|$)/.test(req.url ?? '') &&
        reqBody.length &&
        (JSON.parse(reqBody.toString()) as { docs?: unknown[] }).docs?.length === 0
      ) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"results":[]}');
        return;
      }
      const up = http.request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers },
        (upRes) => {
          if (!isChanges || upRes.statusCode !== 200) {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
            return;
          }
          const parts: Buffer[] = [];
          upRes.on('data', (b: Buffer) => parts.push(b));
          upRes.on('end', () => {
            const j = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
              results: unknown[];
              pending?: number;
            };
            const q = new URL(req.url ?? '/', 'http://x').searchParams;
            let limit = Number(q.get('limit') ?? NaN);
            if (!Number.isFinite(limit) && reqBody.length)
              limit = Number((JSON.parse(reqBody.toString()) as { limit?: number }).limit ?? NaN);
            j.pending ??= Number.isFinite(limit) && j.results.length >= limit ? 1 : 0;
            const out = Buffer.from(JSON.stringify(j));
            const headers = { ...upRes.headers, 'content-length': String(out.length) };
            delete headers['transfer-encoding'];
            res.writeHead(200, headers);
            res.end(out);
          });
        },
      );
      up.on('error', (e) => {
        res.writeHead(502);
        res.end(String(e));
      });
      up.end(reqBody);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}
