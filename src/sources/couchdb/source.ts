import type { CouchdbSourceConfig } from '../../config/schema.js';
import type { BackupContext, Finding, PartResult } from '../types.js';
import type { CouchSourceSnapshot, DbSnapshot } from '../../repo/format/source-snapshots.js';
import { SourceError } from '../../errors.js';
import { writeStream, type StreamRef } from '../../repo/stream-ref.js';
import { compareCodePoints, lines } from '../../util/external-sort.js';
import { comparePaths } from '../../repo/format/order.js';
import { rm } from 'node:fs/promises';
import { CouchClient, CouchHttpError, DbGoneError, type ClientOptions } from '../../couchdb/client.js';
import type { DbBackupOptions } from './context.js';
import { backupDb, redactedUrl } from './database.js';
import { storeExpectationsFile } from './merge.js';

/** `_users` and `_replicator`: backed up with `includeSystem`, or when named. */
const SYSTEM_DBS = new Set(['_users', '_replicator']);

function globToRegExp(glob: string): RegExp {
  const body = [...glob]
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')))
    .join('');
  return new RegExp(`^${body}$`, 'u');
}

export interface ListOptions extends ClientOptions {
  client?: CouchClient;
}

/**
 * The databases a source backs up, in code point order: for "*", every database of `_all_dbs` whose name
 * does not start with "_" (plus `_users` and `_replicator` with `includeSystem`; other "_" databases such as
 * `_global_changes` never); databases named in the configuration are always included (even "_" ones);
 * `exclude` globs (`*`, `?`) then remove names, named ones too.
 */
export async function listDatabases(cfg: CouchdbSourceConfig, opts: ListOptions = {}): Promise<string[]> {
  const names = new Set<string>();
  if (cfg.databases.includes('*')) {
    const client = opts.client ?? new CouchClient(cfg, opts);
    const { body } = await client.json<unknown>('GET', '_all_dbs');
    if (!Array.isArray(body) || !body.every((n): n is string => typeof n === 'string')) {
      throw new SourceError(`${client.where()}: GET /_all_dbs did not answer a list of names`);
    }
    for (const n of body) if (!n.startsWith('_') || (cfg.includeSystem && SYSTEM_DBS.has(n))) names.add(n);
  }
  for (const n of cfg.databases) if (n !== '*') names.add(n);
  const exclude = cfg.exclude.map(globToRegExp);
  return [...names].filter((n) => !exclude.some((r) => r.test(n))).sort(compareCodePoints);
}

/** Merges sorted expectation files (JSON lines) into one sorted byte stream. */
async function* mergeFiles(files: string[]): AsyncGenerator<Buffer> {
  const its = files.map((f) => lines(f)[Symbol.asyncIterator]());
  const heads = await Promise.all(its.map((i) => i.next()));
  const pathOf = (l: string) => (JSON.parse(l) as { path: string }).path;
  const keys = heads.map((h) => (h.done ? '' : pathOf(h.value)));
  let out: string[] = [];
  let size = 0;
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      if (heads[i]!.done || !heads[i]!.value) continue;
      if (best < 0 || comparePaths(keys[i]!, keys[best]!) < 0) best = i;
    }
    if (best < 0) break;
    out.push(heads[best]!.value as string);
    size += (heads[best]!.value as string).length;
    if (size >= 256 * 1024) {
      yield Buffer.from(out.join('\n') + '\n');
      out = [];
      size = 0;
    }
    heads[best] = await its[best]!.next();
    if (!heads[best]!.done) keys[best] = pathOf(heads[best]!.value);
  }
  if (out.length) yield Buffer.from(out.join('\n') + '\n');
}

/**
 * Backs up every database of a CouchDB source. `ctx.previous` is this source's entry of an earlier snapshot:
 * each database continues from its own entry there (by name). A database that disappears (404) gets an error
 * finding `db-gone`; one that fails otherwise an error finding `db-failed` (its previous entry is carried
 * over, marked in the finding); the others continue. Refused credentials (401) fail the whole source, and so
 * does a server that cannot be read at all.
 */
export async function backupCouchSource(
  cfg: CouchdbSourceConfig,
  ctx: BackupContext,
  opts: DbBackupOptions = {},
): Promise<PartResult<CouchSourceSnapshot>> {
  const prev = ctx.previous?.kind === 'couchdb' ? (ctx.previous as CouchSourceSnapshot) : undefined;
  const client = opts.client ?? new CouchClient(cfg, { signal: ctx.signal, ...opts });
  const names = await listDatabases(cfg, { client });
  const findings: Finding[] = [];
  const databases: DbSnapshot[] = [];
  const files: string[] = [];
  const stats: Record<string, number> = { databases: 0 };
  const failures: SourceError[] = [];
  try {
    for (const db of names) {
      if (ctx.signal.aborted) break;
      const prevDb = prev?.databases?.find((d) => d.name === db);
      ctx.progress.phase = `${cfg.name}/${db}`;
      try {
        const out = await backupDb(cfg, db, ctx, prevDb, { ...opts, client });
        databases.push(out.db);
        findings.push(...out.findings);
        if (out.expectationsFile) files.push(out.expectationsFile);
        stats.databases!++;
        for (const [k, v] of Object.entries(out.stats)) stats[k] = (stats[k] ?? 0) + v;
      } catch (err) {
        if (err instanceof DbGoneError) {
          ctx.log.error({ source: cfg.name, db }, 'database is gone');
          findings.push({
            severity: 'error',
            code: 'db-gone',
            source: cfg.name,
            object: db,
            message: err.message,
          });
          continue;
        }
        if (err instanceof CouchHttpError && err.status === 401) throw err;
        if (!(err instanceof SourceError)) throw err;
        failures.push(err);
        ctx.log.error({ source: cfg.name, db, err: err.message }, 'database backup failed');
        findings.push({
          severity: 'error',
          code: 'db-failed',
          source: cfg.name,
          object: db,
          message: `${err.message}${prevDb ? ' (its entry of the previous snapshot is kept)' : ''}`,
        });
        if (prevDb) databases.push(prevDb);
      }
    }
    if (names.length > 0 && failures.length === names.length) throw failures[0]!;
    for (const old of prev?.databases ?? []) {
      if (!names.includes(old.name)) {
        findings.push({
          severity: 'warning',
          code: 'db-removed',
          source: cfg.name,
          object: old.name,
          message: `database ${old.name} was in the previous snapshot and is not backed up now (deleted, or no longer selected)`,
        });
      }
    }
    let expectations: StreamRef | undefined;
    if (files.length === 1) expectations = await storeExpectationsFile(ctx, files.pop()!);
    else if (files.length > 1) expectations = await writeStream(ctx.writer, mergeFiles(files), 'tree');
    return {
      snapshot: { kind: 'couchdb', name: cfg.name, url: redactedUrl(cfg.url), databases },
      findings,
      ...(expectations ? { expectations } : {}),
      stats,
    };
  } finally {
    await Promise.all(files.map((f) => rm(f, { force: true })));
  }
}
