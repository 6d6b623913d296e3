/**
 * Maps an async iterable with up to `concurrency` calls of `fn` running at once, yielding results in input
 * order. Memory stays at `concurrency` pending results: the input is not read further ahead.
 */
export async function* orderedMap<T, R>(
  src: AsyncIterable<T> | Iterable<T>,
  concurrency: number,
  fn: (item: T) => Promise<R>,
): AsyncGenerator<R> {
  const window: Promise<R>[] = [];
  for await (const item of src) {
    const p = fn(item);
    p.catch(() => undefined); // awaited in order below; this only keeps an early failure from being "unhandled"
    window.push(p);
    if (window.length >= concurrency) yield await window.shift()!;
  }
  while (window.length) yield await window.shift()!;
}

/** Merge-joins two iterables sorted by the same order: yields [left, right] pairs, either side missing. */
export async function* mergeJoin<A, B>(
  left: AsyncIterable<A>,
  right: AsyncIterable<B>,
  keyA: (a: A) => string,
  keyB: (b: B) => string,
  compare: (x: string, y: string) => number,
): AsyncGenerator<[A | undefined, B | undefined]> {
  const li = left[Symbol.asyncIterator]();
  const ri = right[Symbol.asyncIterator]();
  // Both inputs are closed when the join ends early (the consumer stopped, or failed): a generator left
  // suspended keeps what it holds (a walker's worker thread, an open listing) alive.
  try {
    yield* join(li, ri, keyA, keyB, compare);
  } finally {
    await Promise.allSettled([li.return?.(), ri.return?.()]);
  }
}

async function* join<A, B>(
  li: AsyncIterator<A>,
  ri: AsyncIterator<B>,
  keyA: (a: A) => string,
  keyB: (b: B) => string,
  compare: (x: string, y: string) => number,
): AsyncGenerator<[A | undefined, B | undefined]> {
  let l = await li.next();
  let r = await ri.next();
  while (!l.done || !r.done) {
    if (l.done) {
      yield [undefined, r.value as B];
      r = await ri.next();
    } else if (r.done) {
      yield [l.value, undefined];
      l = await li.next();
    } else {
      const c = compare(keyA(l.value), keyB(r.value));
      if (c === 0) {
        yield [l.value, r.value];
        l = await li.next();
        r = await ri.next();
      } else if (c < 0) {
        yield [l.value, undefined];
        l = await li.next();
      } else {
        yield [undefined, r.value];
        r = await ri.next();
      }
    }
  }
}
