/**
 * Keeps secrets out of logs and command output: the one redaction mechanism of regbackup. Everything that is
 * printed (command results, error messages) or logged (the pino logger's records, messages and errors) goes
 * through {@link redact} or {@link redactString}.
 *
 * Two mechanisms, both applied everywhere:
 * 1. Known secret values — interpolated `${VAR}` values, values the configuration holds in a credential
 *    position, key file contents, cloud credentials — are registered with {@link registerSecret} when they
 *    are read, and every occurrence in any string is replaced (a secret shorter than 4 characters only where
 *    it stands as a whole word: replacing "ab" inside every word would mangle every line).
 * 2. Structural rules, for secrets nobody registered (a literal in the file, a server echoing a request):
 *    - values under credential-like names (secret, password, token, credentials, auth, apiKey, X-Api-Key…,
 *      any case, any nesting), in objects and in `name: value` / `name=value` text;
 *    - every value of a `headers` object;
 *    - URL user info (`user:password@`, a user-only `token@`, passwords containing `@`);
 *    - credential query parameters (`token=`, `key=`, `sig=`, `X-Amz-Signature=`, `access_token=`…);
 *    - HTTP authorization values (`Basic …`, `Bearer …`, `AWS4-HMAC-SHA256 …`), as echoed by servers;
 *    - age identities (`AGE-SECRET-KEY-…`).
 * A file path is not a secret: `restoreKey: ./keys/restore.key` stays readable (the file's contents never
 * reach an output: they are registered when read).
 */

const REDACTED = '[redacted]';

/** Secrets at least this long are replaced wherever they appear; shorter ones only as a whole word. */
const WHOLE_WORD_BELOW = 4;
const secrets = new Set<string>();
const shortSecrets = new Set<string>();

export function registerSecret(value: string | undefined | null): void {
  if (!value) return;
  for (const form of new Set([value, encodeURIComponent(value)])) {
    if (form.length < WHOLE_WORD_BELOW) shortSecrets.add(form);
    else secrets.add(form);
  }
}

/** For tests only. */
export function clearSecrets(): void {
  secrets.clear();
  shortSecrets.clear();
}

/** Words that make a name a credential wherever they stand in it. */
const CREDENTIAL_WORD =
  /secret|passw(or)?d|passphrase|pwd|token|credential|auth(?!or(?!ization))|cookie|signature|private_?key/i;
/** A name ending in "key" after something else (apiKey, routing_key, X-Api-Key, secretAccessKey, restoreKey). */
const KEY_NAME = /.key$/i;
/** …Keys that name an object in a store, a dedup or sort key: regbackup's own identifiers, never credentials. */
const IDENTIFIER_KEY =
  /(report|file|dir|sort|dedup|object|pack|index|snapshot|cache|lock|partition|shard|job|queue|group)[-_]?key$/i;
/**
 * Names that say what they hold is not the credential itself: its identifier, file, length… (`keyId`,
 * `passwordFile`, `keyFilename`, `tokenType`). The bare `key` is an object's key in a store, not a secret.
 */
const NOT_A_CREDENTIAL =
  /(id|ids|file|filename|files|path|paths|dir|name|names|prefix|count|size|length|kind|type|\.[cm]?[jt]s|\.json)$/i;
/** Query parameters that carry a credential even though their name alone says little. */
const CREDENTIAL_PARAM = /^(key|sig|code)$/i;

function isCredentialParam(name: string): boolean {
  return isSecretKeyName(name) || CREDENTIAL_WORD.test(name) || CREDENTIAL_PARAM.test(name);
}

/** True when a value stored under this name is a credential (the names are matched case-insensitively). */
export function isSecretKeyName(name: string): boolean {
  if (NOT_A_CREDENTIAL.test(name)) return false;
  return CREDENTIAL_WORD.test(name) || (KEY_NAME.test(name) && !IDENTIFIER_KEY.test(name));
}

/** A file path (absolute, ./, ../, ~/ or C:\): under a name such as `restoreKey` it names a key, it is not one. */
function isFilePath(value: unknown): boolean {
  return typeof value === 'string' && /^(~?\/|\.{1,2}[\\/]|[A-Za-z]:[\\/])\S*$/.test(value);
}

/** Whether the value under `name` is to be hidden. */
function hides(name: string, value: unknown): boolean {
  if (value === undefined || value === null || value === '' || !isSecretKeyName(name)) return false;
  // Only the weak rule ("…Key") gives way to a file path: a password that starts with "/" is still a password.
  return CREDENTIAL_WORD.test(name) || !isFilePath(value);
}

/** scheme://userinfo@ — the user info runs to the LAST "@" of the authority (passwords may contain "@"). */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#"'<>]*)@/gi;
const QUERY_PARAM = /([?&;])([^=&#\s"'<>]+)=([^&#\s"'<>]*)/g;
/** An authorization value: a scheme and a credential that is not a plain word ("Basic authentication"). */
const AUTH_VALUE = /\b(Basic|Bearer|Digest|Token|Negotiate|NTLM)(\s+)([A-Za-z0-9+/._~-]+=*)/g;
const AWS_AUTH = /\bAWS4-HMAC-SHA256\s+[^\r\n"']+/g;
/**
 * `name: value`, `name=value`, `"name":"value"` in free text; the value may be an authorization value. Not a
 * dotted place such as `targets[0].credentials.secretAccessKey: got 5` (a configuration problem, whose value
 * is redacted where it is read).
 */
const NAMED_VALUE =
  /(?<![\w.\]-])([A-Za-z][A-Za-z0-9_-]*)(["']?\s*[:=]\s*["']?)((?:(?:Basic|Bearer|Digest|Token|AWS4-HMAC-SHA256)\s+)?[^\s"',;&}\]]+)/g;
const AGE_IDENTITY = /AGE-SECRET-KEY-[A-Z0-9-]+/g;

function redactUserinfo(_m: string, scheme: string, userinfo: string): string {
  const colon = userinfo.indexOf(':');
  // A user-only userinfo is usually a token (https://TOKEN@host): all of it goes.
  return colon < 0 ? `${scheme}${REDACTED}@` : `${scheme}${userinfo.slice(0, colon)}:${REDACTED}@`;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export function redactString(s: string): string {
  let out = s.replace(URL_USERINFO, redactUserinfo);
  out = out.replace(QUERY_PARAM, (m, sep: string, name: string) =>
    isCredentialParam(name) ? `${sep}${name}=${REDACTED}` : m,
  );
  out = out.replace(AWS_AUTH, `AWS4-HMAC-SHA256 ${REDACTED}`);
  out = out.replace(AUTH_VALUE, (m, scheme: string, space: string, cred: string) =>
    /^[A-Z]?[a-z]+$/.test(cred) ? m : `${scheme}${space}${REDACTED}`,
  );
  out = out.replace(NAMED_VALUE, (m, name: string, sep: string, value: string) =>
    !value.includes(REDACTED.slice(0, -1)) && hides(name, value) ? `${name}${sep}${REDACTED}` : m,
  );
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  for (const secret of shortSecrets) {
    if (out.includes(secret))
      out = out.replace(new RegExp(`(?<![A-Za-z0-9])${escapeRegExp(secret)}(?![A-Za-z0-9])`, 'g'), REDACTED);
  }
  // age identities and regbackup key material never belong in output, whatever their origin.
  return out.replace(AGE_IDENTITY, REDACTED);
}

/**
 * Registers every secret that the structural rules find in `value` (a configuration as read): values under
 * credential-like names, header values, URL passwords and tokens, credential query parameters. From then on
 * they are redacted wherever they appear, even where no rule would spot them (a server's error message).
 */
export function registerSecretsIn(value: unknown, hidden: boolean | 'header' = false): void {
  if (typeof value === 'string') {
    // A header's value is shown redacted where the configuration is printed (structural rule); it is also
    // hunted down in every other output unless it is a short plain word (`X-Source: regbackup`: letters only, under 16), which would
    // otherwise be cut out of every line that names the product, a database or a source.
    if (hidden === true || (hidden === 'header' && !/^[A-Za-z]{1,15}$/.test(value))) registerSecret(value);
    else registerSecretsInText(value);
    return;
  }
  if (value === null || typeof value !== 'object') {
    if (hidden && (typeof value === 'number' || typeof value === 'bigint')) registerSecret(String(value));
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    registerSecretsIn(v, hidden === true || hides(k, v) ? true : /^headers$/i.test(k) ? 'header' : hidden);
  }
}

function registerSecretsInText(s: string): void {
  for (const m of s.matchAll(URL_USERINFO)) {
    const userinfo = m[2]!;
    const colon = userinfo.indexOf(':');
    const secret = colon < 0 ? userinfo : userinfo.slice(colon + 1);
    registerSecret(secret);
    registerSecret(safeDecode(secret));
  }
  for (const m of s.matchAll(QUERY_PARAM)) {
    const name = m[2]!;
    if (isCredentialParam(name)) {
      registerSecret(m[3]);
      registerSecret(safeDecode(m[3]!));
    }
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
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
  if (value instanceof Set) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (const v of value) out.push(redactInner(v, seen));
    return out;
  }
  const out: Record<string, unknown> = {};
  seen.set(value, out);
  const entries: [string, unknown][] =
    value instanceof Map ? [...value].map(([k, v]) => [String(k), v]) : Object.entries(value);
  if (value instanceof Error) {
    out.type = value.name;
    out.message = redactString(value.message);
    if (value.stack) out.stack = redactString(value.stack);
    // The cause is not enumerable; it often holds the provider's own answer, which is worth seeing redacted.
    if (value.cause !== undefined) out.cause = redactInner(value.cause, seen);
  }
  for (const [k, v] of entries) {
    if (hides(k, v)) out[k] = REDACTED;
    else if (/^headers$/i.test(k) && v !== null && typeof v === 'object') out[k] = redactHeaders(v);
    else out[k] = redactInner(v, seen);
  }
  return out;
}

/** Every header value is hidden (an `X-Api-Key` is as secret as an `Authorization`); the names stay. */
function redactHeaders(headers: object): Record<string, unknown> {
  const entries: [string, unknown][] =
    headers instanceof Map
      ? [...headers].map(([k, v]) => [String(k), v])
      : typeof (headers as Headers).forEach === 'function' && !Array.isArray(headers)
        ? [...(headers as Headers).entries()]
        : Object.entries(headers);
  return Object.fromEntries(entries.map(([k, v]) => [k, v === undefined ? v : REDACTED]));
}

export { REDACTED };
