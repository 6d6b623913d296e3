/**
 * Names of the timed metadata objects (docs/FORMAT.md §1): `<prefix><YYYYMMDDTHHMMSSZ>-<64 hex>`, where the
 * prefix is `snapshots/`, `drills/` or `marks/`, the time is in UTC to the second and the hex is the SHA-256
 * of the sealed object. The one parser and formatter of these names.
 */
export interface TimedName {
  /** The SHA-256 part (the object's ID). */
  id: string;
  /** The whole object key. */
  key: string;
  /** The time part, parsed. */
  time: Date;
}

const NAME = /^(\d{8}T\d{6}Z)-([0-9a-f]{64})$/;

/** The time part of a name: `YYYYMMDDTHHMMSSZ` (milliseconds dropped). */
export function nameTime(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

function parseNameTime(s: string): Date {
  return new Date(
    `${s.slice(0, 4)}-${s.slice(4, 6)}-${s.slice(6, 8)}T${s.slice(9, 11)}:${s.slice(11, 13)}:${s.slice(13, 15)}Z`,
  );
}

/** Parses `key` as `<prefix><time>-<hash>`; undefined for a key of another form (not ours, or temporary). */
export function parseTimedName(prefix: string, key: string): TimedName | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const m = NAME.exec(key.slice(prefix.length));
  return m ? { id: m[2]!, key, time: parseNameTime(m[1]!) } : undefined;
}
