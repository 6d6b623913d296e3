import { TargetError, messageOf } from '../errors.js';
import { redactString } from '../util/redact.js';
import { ObjectNotFoundError, StoreAbortedError, StoreClosedError } from './types.js';

/** The operations of an ObjectStore, as they appear in messages and metrics. */
export type StoreOperation = 'put' | 'get' | 'stat' | 'list' | 'delete';

/** What went wrong, independent of the provider. */
export type FailureKind =
  | 'aborted'
  | 'not-found'
  | 'no-bucket'
  | 'unauthenticated'
  | 'forbidden'
  | 'retained'
  | 'clock-skew'
  | 'throttled'
  | 'timeout'
  | 'server'
  | 'network'
  | 'dns'
  | 'rejected'
  | 'local'
  | 'unknown';

export interface Failure {
  kind: FailureKind;
  /** HTTP status, when the failure came with one. */
  status?: number;
  /** Provider error name (NoSuchKey, SlowDown…) or system error code (ECONNREFUSED…). */
  code?: string;
  /** Worth another attempt: the same request may well succeed later. */
  transient: boolean;
  /** The provider's own message, redacted. */
  detail: string;
}

/** Network failures that a later attempt may not see. ENOTFOUND is not here: a wrong host name stays wrong. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTDOWN',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Local filesystem problems (the fs target): not transient, each with its own advice. */
const LOCAL_CODES = new Set([
  'EACCES',
  'EPERM',
  'ENOSPC',
  'EDQUOT',
  'EROFS',
  'EIO',
  'EMFILE',
  'ENFILE',
  'ENAMETOOLONG',
]);

const AUTH_NAMES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'CredentialsProviderError',
  'Unauthorized',
]);

const THROTTLE_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequests',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'ProvisionedThroughputExceededException',
  'BandwidthLimitExceeded',
]);

const SERVER_NAMES = new Set([
  'InternalError',
  'ServiceUnavailable',
  'ServiceException',
  'InternalServerError',
]);
const TIMEOUT_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  status?: unknown;
  statusCode?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $retryable?: { throttling?: boolean };
  response?: { status?: unknown; statusCode?: unknown };
  errors?: unknown;
  cause?: unknown;
}

function asShape(err: unknown): ErrorShape | undefined {
  return err !== null && typeof err === 'object' ? (err as ErrorShape) : undefined;
}

function firstNumber(...values: unknown[]): number | undefined {
  for (const v of values) if (typeof v === 'number' && Number.isInteger(v) && v >= 100 && v < 600) return v;
  return undefined;
}

/** Walks an error, its `cause` chain and AggregateError members (bounded), collecting what tells us most. */
function inspect(err: unknown): { status?: number; name?: string; sysCode?: string; throttling: boolean } {
  let status: number | undefined;
  let name: string | undefined;
  let sysCode: string | undefined;
  let throttling = false;
  const queue: unknown[] = [err];
  for (let i = 0; i < queue.length && i < 10; i++) {
    const e = asShape(queue[i]);
    if (!e) continue;
    status ??= firstNumber(
      e.$metadata?.httpStatusCode,
      e.status,
      e.statusCode,
      e.response?.status,
      e.response?.statusCode,
      e.code,
    );
    if (typeof e.code === 'string' && /^(E[A-Z0-9_]+|UND_ERR_[A-Z_]+|ERR_[A-Z_]+)$/.test(e.code))
      sysCode ??= e.code;
    if (typeof e.name === 'string' && e.name !== 'Error' && !e.name.endsWith('Error')) name ??= e.name;
    if (typeof e.name === 'string' && TIMEOUT_NAMES.has(e.name)) name ??= e.name;
    if (typeof e.code === 'string' && !sysCode && /^[A-Z][A-Za-z]+$/.test(e.code)) name ??= e.code;
    if (e.$retryable?.throttling) throttling = true;
    if (e.cause !== undefined) queue.push(e.cause);
    if (Array.isArray(e.errors)) queue.push(...e.errors.filter((x) => x instanceof Error));
  }
  return { status, name, sysCode, throttling };
}

/** Classifies any error from a provider SDK, an HTTP client or the filesystem. */
export function classify(err: unknown): Failure {
  if (err instanceof StoreAbortedError) return { kind: 'aborted', transient: false, detail: err.message };
  if (err instanceof ObjectNotFoundError)
    return { kind: 'not-found', status: 404, transient: false, detail: err.message };
  if (err instanceof TargetError && typeof err.details.kind === 'string') {
    const d = err.details;
    return {
      kind: d.kind as FailureKind,
      status: typeof d.status === 'number' ? d.status : undefined,
      code: typeof d.code === 'string' ? d.code : undefined,
      transient: d.transient === true,
      detail: err.message,
    };
  }
  const { status, name, sysCode, throttling } = inspect(err);
  const detail = redactString(messageOf(err)).trim();
  const code = name ?? sysCode;
  const f = (kind: FailureKind, transient: boolean): Failure => ({ kind, status, code, transient, detail });

  if (name === 'NoSuchBucket' || (status === 404 && /bucket does not exist/i.test(detail))) {
    return f('no-bucket', false);
  }
  if (name === 'NoSuchKey' || name === 'NotFound' || sysCode === 'ENOENT' || status === 404)
    return f('not-found', false);
  if (name === 'RequestTimeTooSkewed') return f('clock-skew', false);
  if ((name && AUTH_NAMES.has(name)) || status === 401) return f('unauthenticated', false);
  if ((status === 403 || name === 'AccessDenied') && /retention|object lock|retain/i.test(detail)) {
    return f('retained', false);
  }
  if (status === 403 || name === 'AccessDenied') return f('forbidden', false);
  if (throttling || status === 429 || (name && THROTTLE_NAMES.has(name))) return f('throttled', true);
  if (status === 408 || (name && TIMEOUT_NAMES.has(name)) || sysCode === 'ETIMEDOUT')
    return f('timeout', true);
  if (sysCode === 'ENOTFOUND') return f('dns', false);
  if (sysCode && NETWORK_CODES.has(sysCode)) return f('network', true);
  if ((status !== undefined && status >= 500 && status !== 501) || (name && SERVER_NAMES.has(name))) {
    return f('server', true);
  }
  if (status !== undefined && status >= 400) return f('rejected', false);
  if (sysCode && LOCAL_CODES.has(sysCode)) return f('local', false);
  // A socket that died without a code ("socket hang up", "other side closed") is a network failure.
  if (/socket hang up|other side closed|premature close|network error/i.test(detail))
    return f('network', true);
  return f('unknown', false);
}

/** True when a failure is worth retrying (network trouble, 5xx, 408, 429, provider throttling). */
export function isTransient(err: unknown): boolean {
  return classify(err).transient;
}

export interface FailureContext {
  /** The target's name. */
  target: string;
  operation: StoreOperation;
  /** The object key, or the list prefix. */
  key: string;
  /** Where requests go, without credentials (endpoint URL or directory), for connection failures. */
  endpoint: string;
  /** What the provider calls its container ("bucket", "directory"). */
  container?: string;
}

function statusText(f: Failure): string {
  const parts = [f.status, f.code].filter((x) => x !== undefined);
  return parts.length ? ` (${parts.join(' ')})` : '';
}

/**
 * The TargetError for a failed store operation: names the target, the operation and the key, says plainly
 * what is wrong and, where there is one, what to do. Never contains credentials (the provider's message is
 * redacted; endpoints are shown without user info).
 */
export function toTargetError(err: unknown, ctx: FailureContext): TargetError {
  if (err instanceof TargetError) return err;
  const f = classify(err);
  const where = `on ${ctx.operation} ${ctx.key || '(everything)'}`;
  const container = ctx.container ?? 'bucket';
  let what: string;
  switch (f.kind) {
    case 'aborted':
      what = `aborted ${where}`;
      break;
    case 'not-found':
      what = `not found${statusText(f)} ${where}: ${f.detail}`;
      break;
    case 'no-bucket':
      what = `the ${container} does not exist${statusText(f)} ${where}: create it or fix its name in the configuration`;
      break;
    case 'unauthenticated':
      what = `credentials rejected${statusText(f)} ${where}: check the access key and secret (or token) for this target`;
      break;
    case 'forbidden':
      what = `access denied${statusText(f)} ${where}: check the credentials and the ${container} policy`;
      break;
    case 'retained':
      what = `the object is under retention${statusText(f)} ${where}: it cannot be changed or deleted before its retention date`;
      break;
    case 'clock-skew':
      what = `the provider rejected the request time${statusText(f)} ${where}: this host's clock is off; sync it (NTP)`;
      break;
    case 'throttled':
      what = `the provider is throttling requests${statusText(f)} ${where}: lower the concurrency or try later`;
      break;
    case 'timeout':
      what = `timed out talking to ${ctx.endpoint}${statusText(f)} ${where}`;
      break;
    case 'server':
      what = `the provider failed${statusText(f)} ${where}: ${f.detail}`;
      break;
    case 'network':
      what = `cannot connect to ${ctx.endpoint}${statusText(f)} ${where}: check that the endpoint is right and reachable`;
      break;
    case 'dns':
      what = `cannot resolve the host of ${ctx.endpoint}${statusText(f)} ${where}: check the endpoint`;
      break;
    case 'rejected':
      what = `the provider rejected the request${statusText(f)} ${where}: ${f.detail}`;
      break;
    case 'local':
      what = `${localAdvice(f.code)}${statusText(f)} ${where} in ${ctx.endpoint}: ${f.detail}`;
      break;
    default:
      what = `failed ${where}: ${f.detail}`;
  }
  return new TargetError(
    `target ${ctx.target}: ${what}`,
    {
      target: ctx.target,
      operation: ctx.operation,
      key: ctx.key,
      kind: f.kind,
      status: f.status,
      code: f.code,
      transient: f.transient,
    },
    { cause: err },
  );
}

/**
 * A provider's error as the store reports it: StoreAbortedError when `signal` has aborted (whatever the SDK
 * made of it), ObjectNotFoundError for a missing object on get or stat, otherwise a TargetError
 * (toTargetError). The one mapping every store uses.
 */
export function storeError(err: unknown, ctx: FailureContext, signal?: AbortSignal): Error {
  if (
    err instanceof ObjectNotFoundError ||
    err instanceof StoreAbortedError ||
    err instanceof StoreClosedError
  ) {
    return err;
  }
  if (signal?.aborted) return new StoreAbortedError(ctx.target, ctx.operation, ctx.key, signal.reason);
  if (classify(err).kind === 'not-found' && (ctx.operation === 'get' || ctx.operation === 'stat')) {
    return new ObjectNotFoundError(ctx.target, ctx.key);
  }
  return toTargetError(err, ctx);
}

function localAdvice(code: string | undefined): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ENOSPC':
    case 'EDQUOT':
      return 'the disk is full';
    case 'EROFS':
      return 'the filesystem is read-only';
    case 'EIO':
      return 'an I/O error (a failing disk?)';
    case 'EMFILE':
    case 'ENFILE':
      return 'too many open files';
    default:
      return 'a filesystem error';
  }
}

/** An endpoint URL for messages: without user info, query or fragment. */
export function displayEndpoint(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(an invalid endpoint URL)';
  }
}
