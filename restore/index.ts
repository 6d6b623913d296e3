/**
 * The restore library: what `regbackup restore` and `regbackup dump` run, and what the weekly drill calls with
 * scratch database names and a scratch directory.
 *
 *   const { repo, unreachable } = await openForRestore({ targets, identity, from });
 *   const { info, store, manifest } = await pickSnapshot(repo, { snapshot: 'latest' });
 *   const report = await restoreSnapshot({ repo, snapshot: info, manifest, metaStore: store,
 *     couchdb: { url, dbName: (n) => `drill-${n}` }, tarballs: { dir }, parallel: 8 });
 */
export {
  restoreSnapshot,
  type RestoreOptions,
  type RestoreSelection,
  type CouchDestinationOptions,
} from './engine.js';
export {
  openForRestore,
  pickSnapshot,
  parseAt,
  selectTargets,
  type OpenRestoreOptions,
  type OpenedRestore,
  type SnapshotChoice,
} from './open.js';
export { dumpSnapshot, type DumpOptions, type DumpStats } from './dump.js';
export { formatRestoreReport } from './report.js';
export { openTarballDestination } from './destination.js';
export type { TarballDestination } from './tarballs.js';
export type { AttachmentMode, DocFailure } from './couch-write.js';
export { EXIT_CODE_OF_FAILURE, restoreExitCode } from './failures.js';
export type {
  Check,
  DbFailure,
  DbReport,
  FileFailure,
  RestoreFailureKind,
  RestoreReport,
  TarballReport,
} from './types.js';
