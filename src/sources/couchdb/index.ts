/**
 * The CouchDB source of `regbackup backup`: consistent, incremental snapshots of every selected database
 * (see docs/FORMAT.md §12.1, "CouchDB sources", and src/repo/format/couchdb-listing.ts for the format).
 */
export { backupCouchSource, listDatabases, type ListOptions } from './source.js';
export { backupDatabase, type DbOutcome } from './database.js';
export { CouchClient, CouchHttpError, DbGoneError, type ClientOptions } from '../../couchdb/client.js';
export type { DbBackupOptions, DbStats } from './context.js';
