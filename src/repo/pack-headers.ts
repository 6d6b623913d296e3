import { IntegrityError, KeyError, messageOf } from '../errors.js';
import type { ObjectStore } from '../store/types.js';
import { MAX_HEADER_SIZE, NONCE_SIZE, openAge, TruncatedHeaderError, type OpenedAge } from './age.js';
import type { Repository } from './repository.js';

/** Headers kept at most (oldest dropped first). */
const MAX_CACHED = 4096;

/**
 * The age headers of packs, read once per pack and target and kept: each gives the pack's payload key and
 * where its payload starts (docs/FORMAT.md §3, "age encryption"), which every range read of that pack needs.
 * A failed read is not kept, so the next read tries again.
 */
export class PackHeaders {
  private readonly cache = new Map<string, Promise<OpenedAge>>();

  /** `onRequest` is called for each range request made to a target. */
  constructor(
    private readonly repo: Repository,
    private readonly onRequest?: () => void,
  ) {}

  get(store: ObjectStore, key: string): Promise<OpenedAge> {
    const k = `${store.name}\0${key}`;
    let p = this.cache.get(k);
    if (!p) {
      p = this.read(store, key);
      this.cache.set(k, p);
      p.catch(() => this.cache.delete(k));
      if (this.cache.size > MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
    }
    return p;
  }

  private async read(store: ObjectStore, key: string): Promise<OpenedAge> {
    let len = 4096;
    for (;;) {
      const head = await store.getBuffer(key, { offset: 0, length: len });
      this.onRequest?.();
      try {
        return await openAge(this.repo.identities!, head);
      } catch (err) {
        if (
          err instanceof TruncatedHeaderError &&
          head.length === len &&
          len < MAX_HEADER_SIZE + NONCE_SIZE
        ) {
          len = MAX_HEADER_SIZE + NONCE_SIZE;
          continue;
        }
        if (err instanceof KeyError) throw new KeyError(`pack ${key} on ${store.name}: ${err.message}`);
        throw new IntegrityError(`pack ${key} on ${store.name}: ${messageOf(err)}`);
      }
    }
  }
}
