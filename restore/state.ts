import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { log } from '../src/log.js';

/**
 * The resume journal of a restore: one small JSON file per destination in the repository's cache directory,
 * rewritten atomically (temporary file + rename) as the restore advances. It records which snapshot is being
 * restored there, which databases regbackup created (so that writing into them again is a resume, not a
 * write into someone else's non-empty database), and for each database and tarball store how far the
 * writes went: every entry up to `checkpoint` (in listing order) was written, verified and durable. A
 * restore started again with the same destination continues after the checkpoints; a restore that ends
 * with everything verified removes its journal.
 *
 * The journal is a hint of what to skip, never a proof: the destination may have lost anything since. A
 * resumed restore checks each entry the journal has as done on the destination before it skips it (a file's
 * size and mtime; its content is read back by the final check) and writes it again when it is missing or
 * different; a database is verified on the server, and written again when it does not match. What a report
 * counts comes from the destination.
 */
export interface PartState {
  /** This restore started writing there (so writing there again is a resume). */
  started?: boolean;
  /** Created by this restore (a database, or an empty directory / prefix it started writing into). */
  created?: boolean;
  /** Listing key (document ID or path) of the last entry of the contiguous prefix that is written. */
  checkpoint?: string;
  /** Every entry is written. */
  done?: boolean;
}

export interface JournalData {
  version: 1;
  snapshot: string;
  destination: string;
  started: string;
  updated: string;
  dbs: Record<string, PartState>;
  tarballs: Record<string, PartState>;
}

export class Journal {
  private data: JournalData;
  private dirty = false;
  private removed = false;
  private lastWrite = 0;

  private constructor(
    readonly file: string,
    data: JournalData,
    /** The journal was found on disk (this restore resumes an earlier one). */
    readonly resumed: boolean,
    /** Never written (dry runs). */
    private readonly readOnly = false,
  ) {
    this.data = data;
  }

  /** The journal file of a destination (described without credentials) in `dir`. */
  static fileFor(dir: string, destination: string): string {
    return path.join(dir, `${createHash('sha256').update(destination).digest('hex').slice(0, 32)}.json`);
  }

  /** Reads the journal of `destination`, if any (a damaged one is ignored, and said so). */
  static find(dir: string, destination: string): JournalData | undefined {
    const file = Journal.fileFor(dir, destination);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const d = JSON.parse(text) as JournalData;
      if (d.version !== 1 || typeof d.snapshot !== 'string' || d.destination !== destination)
        throw new Error('unknown shape');
      d.dbs ??= {};
      d.tarballs ??= {};
      return d;
    } catch (err) {
      log().warn(
        { file, err: (err as Error).message },
        'the resume journal of this destination is damaged; ignoring it',
      );
      return undefined;
    }
  }

  static open(dir: string, destination: string, snapshot: string, existing?: JournalData): Journal {
    mkdirSync(dir, { recursive: true });
    const now = new Date().toISOString();
    const data: JournalData = existing ?? {
      version: 1,
      snapshot,
      destination,
      started: now,
      updated: now,
      dbs: {},
      tarballs: {},
    };
    const j = new Journal(Journal.fileFor(dir, destination), data, Boolean(existing));
    j.flush(true);
    return j;
  }

  /** A journal that is looked at but never written (dry runs). */
  static readOnly(dir: string, destination: string, existing?: JournalData): Journal {
    const now = new Date().toISOString();
    const data: JournalData = existing
      ? structuredClone(existing)
      : { version: 1, snapshot: '', destination, started: now, updated: now, dbs: {}, tarballs: {} };
    return new Journal(Journal.fileFor(dir, destination), data, Boolean(existing), true);
  }

  get snapshot(): string {
    return this.data.snapshot;
  }

  db(name: string): PartState {
    return (this.data.dbs[name] ??= {});
  }

  tarballs(name: string): PartState {
    return (this.data.tarballs[name] ??= {});
  }

  /** Notes a change; written at most every `everyMs` unless forced. */
  touch(force = false, everyMs = 500): void {
    this.dirty = true;
    this.flush(force, everyMs);
  }

  flush(force = false, everyMs = 500): void {
    if (this.readOnly || this.removed) return;
    if (!force && (!this.dirty || Date.now() - this.lastWrite < everyMs)) return;
    this.data.updated = new Date().toISOString();
    const tmp = `${this.file}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(tmp, JSON.stringify(this.data, null, 1));
    renameSync(tmp, this.file);
    this.dirty = false;
    this.lastWrite = Date.now();
  }

  /** Whether anything was written under this journal (else there is nothing to resume). */
  anyStarted(): boolean {
    return [...Object.values(this.data.dbs), ...Object.values(this.data.tarballs)].some((p) => p.started);
  }

  /** The restore finished and verified: nothing to resume. */
  remove(): void {
    if (this.readOnly) return;
    this.removed = true;
    rmSync(this.file, { force: true });
  }
}
