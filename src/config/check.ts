import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { systemCodeOf } from '../errors.js';
import type { Config } from './schema.js';

/** What `config check` finds beyond the schema: files that must be there, and values left from the example. */
export interface DiskCheck {
  /** The configuration cannot work as it is (a key file or a source directory missing). */
  errors: string[];
  /** Worth a look (a placeholder left from the example, a target directory `init` will create). */
  warnings: string[];
}

/**
 * Words the example configuration and the docs use for values that must be replaced. Matched in any value
 * (secrets included); a warning names the key, never the value.
 */
const PLACEHOLDER = /change-me|changeme|EXAMPLE|example\.(com|net|org)|<[a-z -]+>|\bTODO\b|\bPASSWORD\b/i;

function why(err: unknown): string {
  return systemCodeOf(err) ?? (err as Error).message;
}

/** A regular file this process can read; otherwise why not. */
function readableFile(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return `${file} is not a file`;
    accessSync(file, constants.R_OK);
    return undefined;
  } catch (err) {
    return systemCodeOf(err) === 'ENOENT' ? `${file} does not exist` : `${file} cannot be read (${why(err)})`;
  }
}

/** A directory; otherwise why not. */
function directory(dir: string): string | undefined {
  try {
    return statSync(dir).isDirectory() ? undefined : `${dir} is not a directory`;
  } catch (err) {
    return systemCodeOf(err) === 'ENOENT' ? `${dir} does not exist` : `${dir} cannot be read (${why(err)})`;
  }
}

function placeholders(value: unknown, at: string, out: string[]): void {
  if (typeof value === 'string') {
    const m = PLACEHOLDER.exec(value);
    if (m) out.push(`${at} looks like a placeholder left from the example: replace it with the real value`);
    return;
  }
  if (Array.isArray(value)) value.forEach((v, i) => placeholders(v, `${at}[${i}]`, out));
  else if (value && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) placeholders(v, at ? `${at}.${k}` : k, out);
}

/** Checks what a configuration names on this host (paths resolved, as loadConfig returns them). */
export function checkOnDisk(c: Config): DiskCheck {
  const errors: string[] = [];
  const warnings: string[] = [];
  const keys = readableFile(c.keys);
  if (keys)
    errors.push(
      `keys: the worker key ${keys}: copy worker.key from where this repository's keys were made, or, for a new repository only, create a pair with \`regbackup keys generate --out ${path.dirname(c.keys)}\``,
    );
  if (c.identity) {
    const id = readableFile(c.identity);
    if (id)
      errors.push(
        `identity: the restore identity ${id}: it is the restore.key kept offline since the keys were made (new keys cannot decrypt existing backups); on a host that only backs up, leave identity: out`,
      );
  }
  c.sources.tarballs.forEach((s, i) => {
    if (!('path' in s)) return;
    const d = directory(s.path);
    if (d) errors.push(`sources.tarballs[${i}].path (${s.name}): the tarball store ${d}`);
  });
  c.targets.forEach((t, i) => {
    if (t.type === 'fs') {
      const d = directory(t.path);
      if (d?.endsWith('does not exist'))
        warnings.push(`targets[${i}].path (${t.name}): ${d} yet; \`regbackup init\` creates it`);
      else if (d) errors.push(`targets[${i}].path (${t.name}): ${d}`);
    }
    if (t.type === 'gcs' && t.keyFilename) {
      const f = readableFile(t.keyFilename);
      if (f) errors.push(`targets[${i}].keyFilename (${t.name}): the service account key ${f}`);
    }
  });
  placeholders(c, '', warnings);
  return { errors, warnings };
}
