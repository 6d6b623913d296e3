import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CouchdbSourceConfig } from '../../../src/config/schema.js';
import { readListing } from '../../../src/repo/format/listing.js';
import type { TarballExpectation } from '../../../src/repo/format/source-snapshots.js';
import type { BlobReader } from '../../../src/repo/reader.js';
import { readAll, type StreamRef } from '../../../src/repo/stream-ref.js';
import { checkDocEntry, type DocEntry } from '../../../src/repo/format/couchdb-listing.js';
import type { CouchServer } from '../../harness/index.js';

export function sourceConfig(url: string, over: Partial<CouchdbSourceConfig> = {}): CouchdbSourceConfig {
  return {
    name: 'main',
    url,
    databases: ['*'],
    exclude: [],
    includeSystem: false,
    includeLocal: false,
    concurrency: 4,
    batchSize: 500,
    timeout: 30_000,
    ...over,
  };
}

/** Plain HTTP requests to the test server as its admin. */
export class Couch {
  private readonly auth: string;
  constructor(readonly server: CouchServer) {
    const a = server.admin!;
    this.auth = `Basic ${Buffer.from(`${a.username}:${a.password}`).toString('base64')}`;
  }

  async raw(
    method: string,
    path: string,
    body?: Buffer | string | object,
    contentType = 'application/json',
  ): Promise<Response> {
    const data =
      body === undefined
        ? undefined
        : Buffer.isBuffer(body) || typeof body === 'string'
          ? body
          : JSON.stringify(body);
    return fetch(`${this.server.baseUrl}/${path}`, {
      method,
      headers: { authorization: this.auth, accept: 'application/json', 'content-type': contentType },
      body: data,
    });
  }

  async req<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: Buffer | string | object,
    contentType?: string,
  ): Promise<T> {
    const res = await this.raw(method, path, body, contentType);
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text) as T;
  }

  async put(db: string, id: string, doc: object): Promise<string> {
    const r = await this.req<{ rev: string }>(
      'PUT',
      `${db}/${encodeURIComponent(id).replace(/^_design%2F/, '_design/')}`,
      doc,
    );
    return r.rev;
  }

  async get<T = Record<string, unknown>>(db: string, id: string, qs = ''): Promise<T> {
    return this.req<T>('GET', `${db}/${encodeURIComponent(id).replace(/^_design%2F/, '_design/')}${qs}`);
  }

  async del(db: string, id: string): Promise<string> {
    const doc = await this.get<{ _rev: string }>(db, id);
    const r = await this.req<{ rev: string }>('DELETE', `${db}/${encodeURIComponent(id)}?rev=${doc._rev}`);
    return r.rev;
  }

  async putAttachment(
    db: string,
    id: string,
    rev: string | undefined,
    name: string,
    data: Buffer,
    type: string,
  ): Promise<string> {
    const q = rev ? `?rev=${rev}` : '';
    const r = await this.req<{ rev: string }>(
      'PUT',
      `${db}/${encodeURIComponent(id)}/${encodeURIComponent(name)}${q}`,
      data,
      type,
    );
    return r.rev;
  }

  /** Writes a revision as given (replication style): how conflicts are made. */
  async force(db: string, docs: object[]): Promise<void> {
    await this.req('POST', `${db}/_bulk_docs`, { new_edits: false, docs });
  }
}

export async function listingOf(reader: BlobReader, ref: StreamRef): Promise<DocEntry[]> {
  const out: DocEntry[] = [];
  for await (const e of readListing(reader, ref, checkDocEntry, 'test listing')) out.push(e);
  return out;
}

export async function expectationsOf(reader: BlobReader, ref: StreamRef): Promise<TarballExpectation[]> {
  const out: TarballExpectation[] = [];
  for await (const e of readListing(reader, ref, (v) => v as TarballExpectation, 'expectations')) out.push(e);
  return out;
}

export async function jsonOf<T = Record<string, unknown>>(reader: BlobReader, ref: StreamRef): Promise<T> {
  return JSON.parse((await readAll(reader, ref)).toString('utf8')) as T;
}

export function packument(name: string, versions: string[]): object {
  const v: Record<string, unknown> = {};
  for (const ver of versions) {
    const base = name.startsWith('@') ? name.split('/')[1] : name;
    v[ver] = {
      name,
      version: ver,
      dist: {
        tarball: `http://registry.example/${name}/-/${base}-${ver}.tgz`,
        shasum: `${ver.replace(/\D/g, '').padEnd(40, '0')}`,
        integrity: `sha512-${Buffer.from(name + ver).toString('base64')}`,
      },
    };
  }
  return { name, 'dist-tags': { latest: versions[versions.length - 1] }, versions: v, time: {} };
}

export interface Proxy {
  url: string;
  /** Requests seen, as "METHOD /path?query". */
  seen: string[];
  stop(): Promise<void>;
}

/**
 * A pass-through HTTP proxy in front of the test server, where a test can answer some requests itself
 * (a CouchDB behaviour the PouchDB server lacks, a broken answer) and count the others.
 */
export async function startProxy(
  target: string,
  intercept: (req: IncomingMessage, res: ServerResponse) => boolean = () => false,
): Promise<Proxy> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    if (intercept(req, res)) return;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
      fetch(`${target}${req.url}`, {
        method: req.method,
        headers,
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      })
        .then(async (up) => {
          const body = Buffer.from(await up.arrayBuffer());
          const out: Record<string, string> = {};
          up.headers.forEach((v, k) => {
            if (
              k !== 'content-encoding' &&
              k !== 'content-length' &&
              k !== 'transfer-encoding' &&
              k !== 'connection'
            )
              out[k] = v;
          });
          res.writeHead(up.status, out);
          res.end(body);
        })
        .catch((err: unknown) => {
          res.writeHead(502);
          res.end(String(err));
        });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** `url` (with credentials) pointed at another host:port. */
export function withCredentialsOf(url: string, base: string): string {
  const from = new URL(url);
  const to = new URL(base);
  to.username = from.username;
  to.password = from.password;
  return to.toString().replace(/\/$/, '');
}
