/**
 * Keeps secrets out of logs and command output.
 *
 * Two mechanisms, both applied to everything that is logged or printed:
 * 1. Known secret values (interpolated `${VAR}` values, key file contents, cloud credentials) are registered
 *    with {@link registerSecret} when they are read, and every occurrence in any string is replaced.
 * 2. Structural rules: passwords inside URLs, and values under keys whose name says "secret".
 */

const REDACTED = '[redacted]';
const secrets = new Set<string>();

/** Secrets shorter than this are not registered: replacing "a" everywhere would mangle every log line. */
const MIN_SECRET_LENGTH = 4;

export function registerSecret(value: string | undefined | null): void {
  if (!value || value.length < MIN_SECRET_LENGTH) return;
  secrets.add(value);
  // URL-encoded form too: a password with special characters appears encoded inside URLs.
  const encoded = encodeURIComponent(value);
  if (encoded !== value) secrets.add(encoded);
}

/** For tests only. */
export function clearSecrets(): void {
  secrets.clear();
}

const SECRET_KEY =
  /(pass(word|phrase)?|secret|token|routing_?key|private_?key|credential|api_?key|authorization|cookie|identity|signing_?key|repository_?secret)$/i;

export function isSecretKeyName(key: string): boolean {
  return SECRET_KEY.test(key);
}

const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^/\s:@]*):([^@/\s]*)@/gi;

export function redactString(s: string): string {
  let out = s.replace(URL_USERINFO, (_m, scheme: string, user: string) => `${scheme}${user}:${REDACTED}@`);
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  // age identities and regbackup key material never belong in output, whatever their origin.
  out = out.replace(/AGE-SECRET-KEY-[A-Z0-9-]+/g, REDACTED);
  return out;
}

/** Deep copy of `value` with every secret removed. Handles cycles, Errors, Buffers, Maps and Sets. */
export function redact<T>(value: T): T {
  return redactInner(value, new WeakMap()) as T;
}

function redactInner(value: unknown, seen: WeakMap<object, unknown>): unknown {
  if (typeof value === 'string') return redactString(value);
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return seen.get(value);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return `<${value.byteLength} bytes>`;
  if (value instanceof Date) return value;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (const v of value) out.push(redactInner(v, seen));
    return out;
  }
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    seen.set(value, out);
    for (const [k, v] of value) out[String(k)] = isSecretKeyName(String(k)) ? REDACTED : redactInner(v, seen);
    return out;
  }
  if (value instanceof Set) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (const v of value) out.push(redactInner(v, seen));
    return out;
  }
  const out: Record<string, unknown> = {};
  seen.set(value, out);
  if (value instanceof Error) {
    out.type = value.name;
    out.message = redactString(value.message);
    if (value.stack) out.stack = redactString(value.stack);
  }
  for (const [k, v] of Object.entries(value)) {
    if (isSecretKeyName(k) && v !== undefined && v !== null && v !== '') out[k] = REDACTED;
    else out[k] = redactInner(v, seen);
  }
  return out;
}

export { REDACTED };
