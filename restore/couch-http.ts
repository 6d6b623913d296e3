import http from 'node:http';
import https from 'node:https';
import { DestinationError, InterruptedError, messageOf, RegbackupError, SourceError } from '../src/errors.js';
import { CouchClient, CouchHttpError, dbPath, type RequestOptions } from '../src/couchdb/client.js';
import { registerSecret } from '../src/util/redact.js';

/**
 * The destination CouchDB of a restore. JSON requests go through the backup's CouchDB client (retries,
 * timeouts, credentials from the URL, redaction); its errors are re-labelled as destination errors (exit 8).
 * Request bodies that must be sent exactly as stored, or streamed (`_bulk_docs` of stored bodies,
 * `multipart/related` documents with attachments), go through node:http with a Content-Length, retried when
 * the connection fails (every write here is idempotent: `new_edits=false`).
 */
export interface RawResponse {
  status: number;
  body: Buffer;
}

export type BodySource = () => AsyncIterable<Buffer>;

const TRANSIENT = /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|socket hang up|other side closed/i;

export class CouchDestination {
  readonly client: CouchClient;
  /** The URL without credentials, without a trailing slash. */
  readonly baseUrl: string;
  private readonly auth?: string;
  private readonly agent: http.Agent;
  requests = 0;

  constructor(
    url: string,
    private readonly opts: { concurrency?: number; timeoutMs?: number; signal?: AbortSignal } = {},
  ) {
    const u = new URL(url);
    if (u.username || u.password) {
      const pass = decodeURIComponent(u.password);
      registerSecret(pass);
      this.auth = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${pass}`).toString('base64')}`;
    }
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    this.baseUrl = u.toString().replace(/\/+$/, '');
    const concurrency = opts.concurrency ?? 8;
    this.client = new CouchClient(
      { name: 'destination', url, timeout: opts.timeoutMs ?? 10 * 60_000, concurrency },
      { signal: opts.signal, onRequest: () => this.requests++ },
    );
    this.agent = new (u.protocol === 'https:' ? https.Agent : http.Agent)({
      keepAlive: true,
      maxSockets: concurrency * 2,
    });
  }

  where(db?: string): string {
    return `CouchDB destination ${this.baseUrl}${db !== undefined ? `, database ${db}` : ''}`;
  }

  /** A JSON request through the CouchDB client; its failures become DestinationErrors. */
  async json<T = unknown>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<{ status: number; body: T }> {
    try {
      return await this.client.json<T>(method, path, opts);
    } catch (err) {
      throw this.relabel(err, opts.db);
    }
  }

  relabel(err: unknown, db?: string): unknown {
    if (err instanceof InterruptedError) return err;
    if (err instanceof SourceError) {
      const msg = err.message.replace(
        /^CouchDB source destination(, database [^:]*)?: /,
        `${this.where(db)}: `,
      );
      return new DestinationError(msg, {
        ...err.details,
        status: err instanceof CouchHttpError ? err.status : undefined,
      });
    }
    return err;
  }

  /**
   * Sends `body` (bytes, or a factory of a byte stream of exactly `length` bytes) and reads the whole answer.
   * Statuses are the caller's to judge; connection failures are retried.
   */
  async raw(
    method: string,
    path: string,
    contentType: string,
    body: Buffer | BodySource,
    length: number,
    db?: string,
  ): Promise<RawResponse> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(method, path, contentType, body, length);
      } catch (err) {
        if (this.opts.signal?.aborted) throw new InterruptedError(`${this.where(db)}: interrupted`);
        if (err instanceof RegbackupError) throw err;
        if (attempt >= 4 || !TRANSIENT.test(messageOf(err))) {
          throw new DestinationError(
            `${this.where(db)}: ${method} /${path.split('?')[0]} failed: ${messageOf(err)}${attempt > 1 ? ` (after ${attempt} attempts)` : ''}`,
            { db },
          );
        }
        await new Promise((r) => setTimeout(r, 250 * 2 ** (attempt - 1)));
      }
    }
  }

  private once(
    method: string,
    path: string,
    contentType: string,
    body: Buffer | BodySource,
    length: number,
  ): Promise<RawResponse> {
    return new Promise<RawResponse>((resolve, reject) => {
      const headers: Record<string, string | number> = {
        'content-type': contentType,
        'content-length': length,
        accept: 'application/json',
      };
      if (this.auth) headers.authorization = this.auth;
      this.requests++;
      const req = (this.baseUrl.startsWith('https:') ? https : http).request(`${this.baseUrl}/${path}`, {
        method,
        headers,
        agent: this.agent,
        signal: this.opts.signal,
        timeout: this.opts.timeoutMs ?? 10 * 60_000,
      });
      req.on('timeout', () => req.destroy(new Error('ETIMEDOUT: the destination did not answer in time')));
      req.on('error', reject);
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      });
      if (Buffer.isBuffer(body)) {
        req.end(body);
        return;
      }
      void (async () => {
        let sent = 0;
        for await (const piece of body()) {
          sent += piece.length;
          if (!req.write(piece))
            await new Promise<void>((r, j) => {
              const onErr = (e: Error) => j(e);
              req.once('error', onErr);
              req.once('drain', () => {
                req.off('error', onErr);
                r();
              });
            });
        }
        if (sent !== length) throw new Error(`request body was ${sent} bytes, ${length} announced`);
        req.end();
      })().catch((err: unknown) => req.destroy(err instanceof Error ? err : new Error(String(err))));
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The reason in a CouchDB error answer (`{"error": …, "reason": …}`), for messages. */
export function reasonOf(body: Buffer): string {
  const text = body.subarray(0, 4096).toString('utf8');
  try {
    const j = JSON.parse(text) as { error?: unknown; reason?: unknown };
    return [j.error, j.reason].filter((x) => typeof x === 'string' && x).join(': ') || text.slice(0, 200);
  } catch {
    return text.trim().slice(0, 200);
  }
}

export { dbPath };
