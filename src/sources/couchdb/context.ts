import type { CouchdbSourceConfig } from '../../config/schema.js';
import type { BackupContext, Finding } from '../types.js';
import { CouchClient, dbPath, type ClientOptions } from '../../couchdb/client.js';

/** Options of a database backup beyond the configuration (tuning and test hooks). */
export interface DbBackupOptions extends ClientOptions {
  /** Rounds of "read changes, fetch" before a database that never quiets down is accepted as is (default 5). */
  maxRounds?: number;
  /** A client to share (one per source: its concurrency limit then covers all databases). */
  client?: CouchClient;
  /** Test hook: called before each `_bulk_get`, with the round and the documents about to be fetched. */
  beforeBulkGet?: (round: number, ids: string[]) => Promise<void>;
}

/** Counters of one database backup (summed per source into PartResult.stats). */
// A type (not an interface) so that it is assignable to PartResult.stats.
export type DbStats = {
  rounds: number;
  changesRead: number;
  docsFetched: number;
  leavesFetched: number;
  leavesGone: number;
  bulkGetRequests: number;
  bodyBytesFetched: number;
  attachmentsDownloaded: number;
  attachmentsReused: number;
  attachmentBytesDownloaded: number;
  localDocs: number;
  requests: number;
};

export function newStats(): DbStats {
  return {
    rounds: 0,
    changesRead: 0,
    docsFetched: 0,
    leavesFetched: 0,
    leavesGone: 0,
    bulkGetRequests: 0,
    bodyBytesFetched: 0,
    attachmentsDownloaded: 0,
    attachmentsReused: 0,
    attachmentBytesDownloaded: 0,
    localDocs: 0,
    requests: 0,
  };
}

const MAX_PER_CODE = 100;

/** Findings of a run, at most 100 per code (then one summary): a hostile database cannot flood the report. */
export class Findings {
  private readonly list: Finding[] = [];
  private readonly counts = new Map<string, number>();

  constructor(private readonly source: string) {}

  add(f: Omit<Finding, 'source'>): void {
    const n = (this.counts.get(f.code) ?? 0) + 1;
    this.counts.set(f.code, n);
    if (n <= MAX_PER_CODE) this.list.push({ ...f, source: this.source });
  }

  all(): Finding[] {
    const out = [...this.list];
    for (const [code, n] of this.counts) {
      if (n <= MAX_PER_CODE) continue;
      const first = this.list.find((f) => f.code === code)!;
      out.push({
        severity: first.severity,
        code,
        source: this.source,
        object: first.object,
        message: `${n - MAX_PER_CODE} more findings "${code}" not listed`,
      });
    }
    return out;
  }
}

/** Everything one database backup works with. */
export interface DbRun {
  cfg: CouchdbSourceConfig;
  db: string;
  /** The database's path on the server (URL-encoded name). */
  path: string;
  client: CouchClient;
  ctx: BackupContext;
  findings: Findings;
  stats: DbStats;
  opts: DbBackupOptions;
  /** The round in progress (1-based). */
  round: number;
}

export function newRun(
  cfg: CouchdbSourceConfig,
  db: string,
  ctx: BackupContext,
  opts: DbBackupOptions,
  findings = new Findings(cfg.name),
): DbRun {
  const client = opts.client ?? new CouchClient(cfg, { signal: ctx.signal, ...opts });
  return { cfg, db, path: dbPath(db), client, ctx, findings, stats: newStats(), opts, round: 0 };
}
