import pLimit, { type LimitFunction } from 'p-limit';
import type { CouchdbSourceConfig } from '../config/schema.js';
import { InterruptedError, messageOf, RegbackupError, SourceError } from '../errors.js';
import { registerSecret } from '../util/redact.js';

/**
 * The HTTP client of the CouchDB source. Node's `fetch` (undici, the engine nano 11 itself uses), not nano:
 * the source needs the status, headers and the body as a byte stream of every response (attachments are
 * streamed into the repository, `_bulk_get` answers are split as they arrive), the body of error answers,
 * a timeout per request and retries; nano's stream mode drops the status and error bodies, and its promise
 * mode turns a non-JSON answer into "" silently.
 *
 * Credentials in the configured URL become an `Authorization: Basic` header; every URL that can reach a
 * message, a finding or a log line is the one without them (`baseUrl`).
 */
export interface ClientOptions {
  signal?: AbortSignal;
  /** Attempts for a transient failure (connection reset or refused, 5xx, 429, timeout); default 4. */
  attempts?: number;
  /** First delay between attempts (ms), doubled each time; default 250. */
  backoffMs?: number;
  /** Called once per HTTP request sent (tests count them). */
  onRequest?: (method: string, path: string) => void;
}

/** An answer with an unexpected status. */
export class CouchHttpError extends SourceError {
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string | undefined,
    details: Record<string, unknown> = {},
  ) {
    super(message, { ...details, status, reason });
  }
}

/** The database does not exist (any more): deleted during the run, or named in the configuration but absent. */
export class DbGoneError extends SourceError {
  constructor(
    message: string,
    readonly db: string,
  ) {
    super(message, { db, finding: 'db-gone' });
  }
}

/** A transient failure, retried; surfaces as a SourceError when the attempts are used up. */
class TransientError extends Error {
  constructor(
    message: string,
    /** The server could not be reached or the connection broke (as opposed to an HTTP error status). */
    readonly network: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export interface RequestOptions {
  /** The database concerned (for messages, and 404 handling). */
  db?: string;
  /** JSON request body. */
  body?: unknown;
  /** Accept header (default application/json). */
  accept?: string;
  /**
   * What a 404 means: 'db' (default for requests on a database: it is gone), 'return' (the caller looks at
   * the response), 'error' (a plain CouchHttpError).
   */
  notFound?: 'db' | 'return' | 'error';
  /** Statuses handed to the caller instead of thrown (e.g. 400 for a refused `since`). */
  pass?: number[];
}

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** The system error code of a fetch failure (undici wraps it in `cause`, sometimes twice). */
function networkCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e && typeof e === 'object'; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'ABORT_ERR') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && err.name === 'TimeoutError';
}

/** Converts a failure while sending or reading into TransientError when it is worth another attempt. */
function classify(err: unknown): unknown {
  if (err instanceof TransientError || err instanceof RegbackupError) return err;
  if (isTimeout(err)) return new TransientError('timed out', true);
  if (err instanceof Error && err.name === 'AbortError') return err;
  const code = networkCode(err);
  if (code && (TRANSIENT_CODES.has(code) || code.startsWith('UND_ERR')))
    return new TransientError(code, true);
  if (err instanceof TypeError && /fetch failed|terminated|other side closed/i.test(err.message)) {
    const cause = (err as { cause?: unknown }).cause;
    return new TransientError(code ?? (cause instanceof Error ? cause.message : err.message), true);
  }
  return err;
}

export class CouchClient {
  /** The server URL without credentials, without a trailing slash. */
  readonly baseUrl: string;
  readonly source: string;
  /** Bounds the requests in flight (cfg.concurrency); a slot is held from sending until the body is read. */
  readonly limit: LimitFunction;
  requests = 0;
  private readonly auth?: string;
  /** Compressed answers only when the server is not on this host: on loopback gzip costs CPU on both ends and saves nothing. */
  private readonly encoding: string;
  private readonly timeout: number;
  private readonly attempts: number;
  private readonly backoffMs: number;

  constructor(
    cfg: Pick<CouchdbSourceConfig, 'name' | 'url' | 'timeout' | 'concurrency'>,
    private readonly opts: ClientOptions = {},
  ) {
    this.source = cfg.name;
    const url = new URL(cfg.url);
    this.encoding = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/i.test(url.hostname)
      ? 'identity'
      : 'gzip, deflate';
    if (url.username || url.password) {
      const user = decodeURIComponent(url.username);
      const pass = decodeURIComponent(url.password);
      registerSecret(pass);
      this.auth = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
      url.username = '';
      url.password = '';
    }
    url.search = '';
    url.hash = '';
    this.baseUrl = url.toString().replace(/\/+$/, '');
    this.timeout = cfg.timeout;
    this.attempts = Math.max(1, opts.attempts ?? 4);
    this.backoffMs = opts.backoffMs ?? 250;
    this.limit = pLimit(cfg.concurrency);
  }

  /** "CouchDB source <name>" plus the database, for messages. */
  where(db?: string): string {
    return `CouchDB source ${this.source}${db !== undefined ? `, database ${db}` : ''}`;
  }

  /**
   * Sends a request under the concurrency limit and hands the successful response to `consume`, which must
   * read (or cancel) its body. The whole exchange is retried on a transient failure, so `consume` must be
   * idempotent.
   */
  async exchange<R>(
    method: string,
    path: string,
    opts: RequestOptions,
    consume: (res: Response) => Promise<R>,
  ): Promise<R> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.limit(async () => {
          const deadline = this.deadline();
          try {
            const res = await this.send(method, path, opts, deadline.signal);
            try {
              return await consume(res);
            } finally {
              if (res.body && !res.bodyUsed) await res.body.cancel().catch(() => undefined);
            }
          } finally {
            deadline.clear();
          }
        });
      } catch (raw) {
        if (this.opts.signal?.aborted) {
          throw new InterruptedError(`${this.where(opts.db)}: interrupted`, {
            source: this.source,
            db: opts.db,
          });
        }
        const err = classify(raw);
        if (!(err instanceof TransientError)) throw err;
        if (attempt >= this.attempts || this.opts.signal?.aborted)
          throw this.giveUp(err, method, path, opts.db);
        const delay = err.retryAfterMs ?? this.backoffMs * 2 ** (attempt - 1) * (0.75 + Math.random() / 2);
        await sleep(delay, this.opts.signal);
      }
    }
  }

  /** A request whose JSON answer is read whole (as bytes, then decoded: multi-byte characters stay intact). */
  async json<T = unknown>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<{ status: number; body: T }> {
    return this.exchange(method, path, opts, async (res) => {
      const bytes = Buffer.from(await res.arrayBuffer());
      return { status: res.status, body: this.parse<T>(bytes, method, path, opts.db, res) };
    });
  }

  /** Parses a JSON answer, or fails naming the source, database and request. */
  parse<T>(bytes: Buffer, method: string, path: string, db: string | undefined, res?: Response): T {
    try {
      return JSON.parse(bytes.toString('utf8')) as T;
    } catch {
      const type = res?.headers.get('content-type');
      throw new SourceError(
        `${this.where(db)}: the answer to ${method} ${pathOnly(path)} is not JSON${type ? ` (content-type ${type})` : ''}`,
        { source: this.source, db, path: pathOnly(path) },
      );
    }
  }

  /**
   * The signal of one exchange: aborted when the request timeout passes (the answer's body read included) or
   * when the client's own signal is; `clear()` once the exchange is over. Not AbortSignal.timeout and
   * AbortSignal.any: their timer and the link to the client's signal live on until the timeout fires, so a run
   * of many short requests (one per document) held tens of thousands of them (seen at 100k documents).
   */
  private deadline(): { signal: AbortSignal; clear(): void } {
    const ac = new AbortController();
    const timer = setTimeout(
      () => ac.abort(new DOMException(`timed out after ${this.timeout} ms`, 'TimeoutError')),
      this.timeout,
    );
    const outer = this.opts.signal;
    const onAbort = () => ac.abort(outer!.reason);
    if (outer?.aborted) onAbort();
    else outer?.addEventListener('abort', onAbort, { once: true });
    return {
      signal: ac.signal,
      clear: () => {
        clearTimeout(timer);
        outer?.removeEventListener('abort', onAbort);
      },
    };
  }

  private async send(
    method: string,
    path: string,
    opts: RequestOptions,
    signal: AbortSignal,
  ): Promise<Response> {
    const headers: Record<string, string> = {
      accept: opts.accept ?? 'application/json',
      'accept-encoding': this.encoding,
    };
    if (this.auth) headers.authorization = this.auth;
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    this.requests++;
    this.opts.onRequest?.(method, path);
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}/${path}`, {
        method,
        headers,
        body,
        redirect: 'error',
        signal,
      });
    } catch (err) {
      throw classify(err);
    }
    if (res.ok || opts.pass?.includes(res.status)) return res;
    if (res.status === 404 && opts.notFound === 'return') return res;
    const reason = await errorReason(res);
    const where = this.where(opts.db);
    if (res.status === 401 || res.status === 403) {
      throw new CouchHttpError(
        `${where} (${this.baseUrl}): CouchDB refused the credentials (${res.status})${reason ? `: ${reason}` : ''}`,
        res.status,
        reason,
        { source: this.source, db: opts.db },
      );
    }
    if (res.status === 404 && opts.db !== undefined && (opts.notFound ?? 'db') === 'db') {
      throw new DbGoneError(
        `${where}: the database does not exist (any more)${reason ? ` (${reason})` : ''}`,
        opts.db,
      );
    }
    if (res.status >= 500 || res.status === 429) {
      const after = Number(res.headers.get('retry-after'));
      throw new TransientError(
        `HTTP ${res.status}${reason ? ` ${reason}` : ''}`,
        false,
        Number.isFinite(after) && after > 0 ? Math.min(after, 30) * 1000 : undefined,
      );
    }
    throw new CouchHttpError(
      `${where}: ${method} ${pathOnly(path)} failed with HTTP ${res.status}${reason ? `: ${reason}` : ''}`,
      res.status,
      reason,
      { source: this.source, db: opts.db, path: pathOnly(path) },
    );
  }

  private giveUp(err: TransientError, method: string, path: string, db: string | undefined): SourceError {
    const what = err.network
      ? `cannot reach CouchDB at ${this.baseUrl} (${method} ${pathOnly(path)}: ${err.message})`
      : `${method} ${pathOnly(path)} failed: ${err.message}`;
    return new SourceError(
      `${this.where(db)}: ${what}, after ${this.attempts} attempt${this.attempts > 1 ? 's' : ''}`,
      {
        source: this.source,
        db,
        url: this.baseUrl,
      },
    );
  }
}

/** The request path without its query (which can be long), for messages. */
function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return `/${q < 0 ? path : path.slice(0, q)}`;
}

async function errorReason(res: Response): Promise<string | undefined> {
  let text: string;
  try {
    text = Buffer.from(await res.arrayBuffer())
      .subarray(0, 4096)
      .toString('utf8');
  } catch (err) {
    return `(unreadable error answer: ${messageOf(err)})`;
  }
  try {
    const j = JSON.parse(text) as { error?: unknown; reason?: unknown };
    const parts = [j.error, j.reason].filter((x): x is string => typeof x === 'string' && x.length > 0);
    return parts.length ? parts.join(': ') : undefined;
  } catch {
    return text.trim().slice(0, 200) || undefined;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The path of a database: its name URL-encoded (names may contain "/"). */
export function dbPath(db: string): string {
  return encodeURIComponent(db);
}

/**
 * The path of a document inside its database. `_design/` and `_local/` keep their slash (CouchDB 1.x
 * redirects `_design%2F…`); every other ID is encoded whole (scoped packages: `@scope%2Fname`).
 */
export function docPath(id: string): string {
  for (const prefix of ['_design/', '_local/']) {
    if (id.startsWith(prefix)) return prefix + encodeURIComponent(id.slice(prefix.length));
  }
  return encodeURIComponent(id);
}

/** The body of a response as a byte stream. */
export async function* bodyBytes(res: Response): AsyncGenerator<Uint8Array> {
  if (!res.body) return;
  for await (const chunk of res.body) yield chunk;
}
