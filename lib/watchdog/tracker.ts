// The in-flight tracker: a deadline per I/O, one timer for all of them.
//
// I/Os sit in an intrusive doubly-linked list in insertion (= submit) order.
// With one timeout for all, the head carries the earliest deadline, so adding
// (append) and removing (unlink through the handle the caller holds) are O(1)
// with no hashing, and a single timer armed for the head's deadline serves
// everything. An I/O reported late moves to a second list, so it is reported
// once and never blocks the scan for the next deadline.
//
// Re-arming is lazy. Completing the head does not touch the timer: it fires
// at the old head's deadline, finds nothing due, and re-arms for the current
// head. Because the current head was submitted recently when I/O is healthy,
// that re-arm lands about one timeout ahead, so the timer fires about once per
// timeout whatever the IOPS; eager re-arming would clear and set a timer on
// nearly every completion. The only eager re-arm is when a deadline earlier
// than the armed one appears (a stamp out of order, a shorter timeout).
//
// Insertion order is nearly submit order, but not exactly: the engine stamps
// submits on more than one thread in its fallback mode. An I/O whose stamp is
// older than the tail's is walked back into place from the tail, which costs
// O(1) for in-order stamps and O(disorder) otherwise, and keeps the head
// exactly the earliest deadline.
import type { Clock, TimerHandle } from './clock';
import { checkDuration } from '../check';

/** One tracked I/O, as the caller sees it. */
export interface TrackedIo<T> {
  /** Sequence number, unique within this tracker. */
  readonly id: number;
  /** Submit stamp, clock ms (see `msFromNs`). */
  readonly submitMs: number;
  /** Caller data, such as the path the I/O was routed to; may be updated in place. */
  data: T;
  /** True once reported late. */
  readonly late: boolean;
  /** True while tracked (between track() and done()/stop()). */
  readonly inflight: boolean;
}

/** A late I/O, reported once when its deadline passes. */
export interface LateIo<T> {
  /** The I/O; still in flight and still tracked. */
  readonly io: TrackedIo<T>;
  /** Its deadline, clock ms. */
  readonly deadlineMs: number;
  /** How far past the deadline it was when found, ms (>= 0). */
  readonly lateByMs: number;
}

/** Options for {@link InflightTracker}. */
export interface TrackerOptions<T> {
  /** Clock used for now() and the timer. */
  clock: Clock;
  /** Deadline = submit stamp + timeoutMs. */
  timeoutMs: number;
  /** Called with every I/O found late at one timer firing, oldest first. */
  onLate: (late: readonly LateIo<T>[], nowMs: number) => void;
}

const NONE = 0;
const PENDING = 1;
const LATE = 2;
type ListId = typeof NONE | typeof PENDING | typeof LATE;

class Node<T> implements TrackedIo<T> {
  prev: Node<T> | null = null;
  next: Node<T> | null = null;
  list: ListId = NONE;
  constructor(
    readonly id: number,
    readonly submitMs: number,
    public data: T,
  ) {}
  get late(): boolean {
    return this.list === LATE;
  }
  get inflight(): boolean {
    return this.list !== NONE;
  }
}

class List<T> {
  head: Node<T> | null = null;
  tail: Node<T> | null = null;
  size = 0;
  constructor(readonly id: ListId) {}

  push(n: Node<T>): void {
    this.insertAfter(this.tail, n);
  }

  /** Inserts in submit order, walking back from the tail past later stamps. */
  insertSorted(n: Node<T>): void {
    let after = this.tail;
    while (after && after.submitMs > n.submitMs) after = after.prev;
    this.insertAfter(after, n);
  }

  insertAfter(after: Node<T> | null, n: Node<T>): void {
    n.list = this.id;
    n.prev = after;
    n.next = after ? after.next : this.head;
    if (n.next) n.next.prev = n;
    else this.tail = n;
    if (after) after.next = n;
    else this.head = n;
    this.size++;
  }

  unlink(n: Node<T>): void {
    if (n.prev) n.prev.next = n.next;
    else this.head = n.next;
    if (n.next) n.next.prev = n.prev;
    else this.tail = n.prev;
    n.prev = n.next = null;
    n.list = NONE;
    this.size--;
  }

  clear(): void {
    for (let n = this.head; n; ) {
      const next = n.next;
      n.prev = n.next = null;
      n.list = NONE;
      n = next;
    }
    this.head = this.tail = null;
    this.size = 0;
  }
}

function checkTimeout(ms: number): number {
  checkDuration('timeoutMs', ms);
  return ms;
}

/** Tracks in-flight I/Os against one timeout and reports each late one once. */
export class InflightTracker<T> {
  readonly #clock: Clock;
  readonly #onLate: TrackerOptions<T>['onLate'];
  #timeoutMs: number;
  readonly #pending = new List<T>(PENDING);
  readonly #late = new List<T>(LATE);
  #timer: TimerHandle | null = null;
  #timerAt = Infinity;
  #nextId = 0;
  #stopped = false;

  constructor(options: TrackerOptions<T>) {
    this.#clock = options.clock;
    this.#onLate = options.onLate;
    this.#timeoutMs = checkTimeout(options.timeoutMs);
  }

  /** Current timeout, ms. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** I/Os in flight (late or not). */
  get size(): number {
    return this.#pending.size + this.#late.size;
  }

  /** I/Os in flight that have been reported late. */
  get lateCount(): number {
    return this.#late.size;
  }

  /** The oldest I/O not yet reported late (it carries the next deadline). */
  get oldest(): TrackedIo<T> | undefined {
    return this.#pending.head ?? undefined;
  }

  /** Starts tracking an I/O submitted at `submitMs`; keep the handle for done(). */
  track(submitMs: number, data: T): TrackedIo<T> {
    if (this.#stopped) throw new Error('InflightTracker: track() after stop()');
    if (!Number.isFinite(submitMs)) throw new RangeError(`submitMs must be finite, got ${submitMs}`);
    const n = new Node(this.#nextId++, submitMs, data);
    this.#pending.insertSorted(n);
    const deadline = submitMs + this.#timeoutMs;
    if (deadline < this.#timerAt) this.#arm(deadline);
    return n;
  }

  /**
   * Stops tracking an I/O (it completed or was abandoned). Returns false if it
   * was not tracked (already done, or dropped by stop()). Never touches the timer.
   */
  done(io: TrackedIo<T>): boolean {
    const n = io as Node<T>;
    if (n.list === PENDING) this.#pending.unlink(n);
    else if (n.list === LATE) this.#late.unlink(n);
    else return false;
    return true;
  }

  /** Changes the timeout; it applies to I/Os already in flight and not yet reported. */
  setTimeoutMs(ms: number): void {
    this.#timeoutMs = checkTimeout(ms);
    this.#disarm();
    if (this.#pending.head) this.#arm(this.#pending.head.submitMs + this.#timeoutMs);
  }

  /** Late I/Os still in flight, oldest report first. */
  *lateIos(): IterableIterator<TrackedIo<T>> {
    for (let n = this.#late.head; n; n = n.next) yield n;
  }

  /** Clears the timer and forgets every I/O; track() afterwards throws. */
  stop(): void {
    this.#stopped = true;
    this.#disarm();
    this.#pending.clear();
    this.#late.clear();
  }

  #arm(atMs: number): void {
    if (this.#timer) this.#clock.clearTimer(this.#timer);
    this.#timerAt = atMs;
    this.#timer = this.#clock.setTimer(atMs, this.#fire);
  }

  #disarm(): void {
    if (this.#timer) this.#clock.clearTimer(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
  }

  readonly #fire = (): void => {
    this.#timer = null;
    this.#timerAt = Infinity;
    const now = this.#clock.now();
    const timeout = this.#timeoutMs;
    const found: LateIo<T>[] = [];
    for (let n = this.#pending.head; n; n = this.#pending.head) {
      const deadlineMs = n.submitMs + timeout;
      if (deadlineMs > now) break;
      this.#pending.unlink(n);
      this.#late.push(n);
      found.push({ io: n, deadlineMs, lateByMs: now - deadlineMs });
    }
    // Re-arm before the callback so that track()/done() inside it see a
    // consistent timer, and a throwing callback cannot stop the watchdog.
    const head = this.#pending.head;
    if (head) this.#arm(head.submitMs + timeout);
    if (found.length > 0) this.#onLate(found, now);
  };
}
