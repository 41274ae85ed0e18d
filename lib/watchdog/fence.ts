// Write fencing. A write that is late, or whose caller gave up on it, may still
// land: until the kernel completes it, no other I/O may touch its block range,
// or a later write could be overtaken by the old one (a lost update) and a read
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

  /**
   * Starts an I/O on [offset, offset+length) once no unfinished write overlaps
   * it. The last check and the start happen in one turn, so two waiters can
   * never both pass; a write (`hold`) keeps the range until it settles.
   */
  async run<T>(offset: number, length: number, hold: boolean, start: () => Promise<T>): Promise<T> {
    const end = offset + length;
    for (;;) {
      const blocking = this.#held.filter((h) => h.start < end && offset < h.end);
      if (blocking.length === 0) break;
      await Promise.all(blocking.map((h) => h.released));
    }
    const p = start();
    if (hold) this.#hold(offset, end, p);
    return p;
  }

  #hold(start: number, end: number, done: Promise<unknown>): void {
    const release = (): void => {
      const i = this.#held.indexOf(entry);
      if (i >= 0) this.#held.splice(i, 1);
    };
    const entry: Held = { start, end, released: done.then(release, release) };
    this.#held.push(entry);
  }
}
