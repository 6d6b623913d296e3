import { displayEndpoint } from './errors.js';
import { assertValidKey, assertValidPrefix } from './types.js';

/** A key prefix as stored: no leading "/", one trailing "/" (or empty), validated. */
export function normalizePrefix(prefix: string | undefined): string {
  if (!prefix) return '';
  const p = prefix.replace(/^\/+/, '');
  if (!p) return '';
  const withSlash = p.endsWith('/') ? p : `${p}/`;
  assertValidPrefix(withSlash);
  return withSlash;
}

/** The provider's name of an object: the target's prefix (normalized) and the key, validated. */
export function keyOf(prefix: string, key: string): string {
  assertValidKey(key);
  return prefix + key;
}

/** How an S3 target is named in messages (no credentials). */
export function s3Location(o: { bucket: string; prefix?: string; endpoint?: string }): string {
  return `s3://${o.bucket}/${normalizePrefix(o.prefix)}${o.endpoint ? ` at ${displayEndpoint(o.endpoint)}` : ''}`;
}

/** How a GCS target is named in messages (no credentials). */
export function gcsLocation(o: { bucket: string; prefix?: string; apiEndpoint?: string }): string {
  return `gs://${o.bucket}/${normalizePrefix(o.prefix)}${o.apiEndpoint ? ` at ${displayEndpoint(o.apiEndpoint)}` : ''}`;
}
