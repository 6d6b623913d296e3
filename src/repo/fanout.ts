import { TargetError } from '../errors.js';
import { log } from '../log.js';
import type { LocalFile, ObjectStore, PutOptions } from '../store/types.js';

/** A body every target can read: bytes in memory, or a local file (each target reads it; a retry too). */
export type FanoutBody = Buffer | LocalFile;

/**
 * What a lock protects: the objects whose loss loses backups (packs, index objects, snapshots). Marks and
 * drill reports are not locked: prune deletes marks once acted on.
 */
export function isLockedKind(key: string): boolean {
  return /^(data|tree|index|snapshots)\//.test(key);
}

/** `opts` with the retention date of an object written now to a target that locks objects for `days`. */
export function withRetention(
  opts: PutOptions | undefined,
  days: number | undefined,
): PutOptions | undefined {
  return days ? { ...opts, retainUntil: new Date(Date.now() + days * 86_400_000) } : opts;
}

/**
 * Writes every object to every target of a run. A target that fails (after its store's own retries) is left
 * behind for the rest of the run — the others finish — and is named in the run's result; the next run copies
 * what it missed from a healthy target (see sync.ts). Only when no target is left does a write fail.
 */
export class Fanout {
  readonly failed = new Map<string, Error>();
  /** Bytes written per target. */
  readonly written = new Map<string, number>();

  /**
   * `retentionDays`: per target name, how long new objects are locked (S3 Object Lock / GCS retention), so
   * that a stolen credential cannot delete backups before then.
   */
  constructor(
    readonly targets: readonly ObjectStore[],
    private readonly retentionDays: ReadonlyMap<string, number> = new Map(),
    /** The run's signal (a job cancelled, a worker shutting down): given to every put that has none. */
    private readonly signal?: AbortSignal,
  ) {
    if (targets.length === 0) throw new TargetError('no target to write to');
    for (const t of targets) this.written.set(t.name, 0);
  }

  active(): ObjectStore[] {
    return this.targets.filter((t) => !this.failed.has(t.name));
  }

  /** Marks a target as behind for this run. */
  fail(target: string, err: Error): void {
    if (this.failed.has(target)) return;
    this.failed.set(target, err);
    log().error(
      { target, err: err.message },
      `target ${target} failed; it is left behind for this run and will be caught up by the next one`,
    );
  }

  async put(key: string, body: FanoutBody, opts?: PutOptions): Promise<void> {
    const targets = this.active();
    if (targets.length === 0) throw this.allFailed();
    const size = Buffer.isBuffer(body) ? body.length : body.size;
    // Every target's put settles before this returns, even when the run is interrupted: none is left reading
    // a spooled pack the caller removes next.
    const settled = await Promise.allSettled(
      targets.map(async (t, i) => {
        const signal = opts?.signal ?? this.signal;
        try {
          const o = withRetention(signal ? { ...opts, signal } : opts, this.retentionDays.get(t.name));
          // A local file may be hard-linked by the first target only: every target keeps its own copy.
          await t.put(key, Buffer.isBuffer(body) ? body : { ...body, link: i === 0 }, o);
          this.written.set(t.name, (this.written.get(t.name) ?? 0) + size);
        } catch (err) {
          // Stopped on purpose: the run is interrupted, the target is not behind.
          if (signal?.aborted) throw err;
          this.fail(t.name, err as Error);
        }
      }),
    );
    const interrupted = settled.find((r) => r.status === 'rejected');
    if (interrupted) throw interrupted.reason;
    if (this.active().length === 0) throw this.allFailed();
  }

  private allFailed(): TargetError {
    const why = [...this.failed].map(([n, e]) => `${n}: ${e.message}`).join('; ');
    return new TargetError(`every target failed (${why})`, { failed: [...this.failed.keys()] });
  }
}
