/**
 * The test CouchDB (express-pouchdb) in a process of its own. Two of them in one process share their
 * databases (the memory adapter's store is global to the process), so a restore test that needs a source and
 * a destination server runs the destination here. Prints one JSON line (url, baseUrl, admin) when ready;
 * stops when its stdin closes or on SIGTERM.
 */
import { startCouchDB } from '../harness/couchdb.js';

// REGBACKUP_COUCH_ADMIN_PARTY=1: no admin at all (benchmarks: couchbackup logs in with _session cookies,
// which this server does not give to configuration admins).
const server = await startCouchDB(process.env.REGBACKUP_COUCH_ADMIN_PARTY === '1' ? { admin: false } : {});
process.stdout.write(
  `${JSON.stringify({ url: server.url, baseUrl: server.baseUrl, admin: server.admin })}\n`,
);
const stop = () => {
  void server.stop().finally(() => process.exit(0));
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
