// Write fencing. A write that is late, or whose caller gave up on it, may still
// land: until the kernel completes it, no other I/O may touch its block range,
// or a later write could be overtaken by the old one (lost update) and a read
// could see either version.

/** A byte range [start, end) held by an unfinished write. */
interface Held {
  readonly start: number;
  readonly end: number;
  readonly released: Promise<void>;
}

/** Byte ranges held by writes the kernel has not completed. */
export class WriteFence {
  #held: Held[] = [];

  /** Writes holding a range now. */
  get size(): number {
    return this.#held.length;
  }

  /** Resolves when no unfinished write overlaps [offset, offset+length); cheap when none is held. */
  async clear(offset: number, length: number): Promise<void> {
    const end = offset + length;
    for (;;) {
      const blocking = this.#held.filter((h) => h.start < end && offset < h.end);
      if (blocking.length === 0) return;
      await Promise.all(blocking.map((h) => h.released));
    }
  }

  /** Holds [offset, offset+length) until `done` settles (either way). */
  hold(offset: number, length: number, done: Promise<unknown>): void {
    const entry: Held = {
      start: offset,
      end: offset + length,
      released: done.then(
        () => this.#release(entry),
        () => this.#release(entry),
      ),
    };
    this.#held.push(entry);
  }

  #release(entry: Held): void {
    const i = this.#held.indexOf(entry);
    if (i >= 0) this.#held.splice(i, 1);
  }
}
