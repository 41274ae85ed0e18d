// Path actions through multipathd, and the choice between them and plain dm
// messages. When multipathd manages a map, a dm-level fail_path is undone by its
// checker within a polling interval; `fail path` also pauses the checker for
// that path (cli_fail in multipath-tools multipathd/cli_handlers.c) and
// `reinstate path` resumes it (cli_reinstate).
import { setTimeout as delay } from 'node:timers/promises';
import { resolveBlockDevice } from '../multipath/paths';
import { DmMessageActions, SupersededError, type FailDone, type FailRequest, type PathActions } from '../watchdog/actions';
import type { PathId } from '../watchdog/policy';
import { MAX_DURATION_MS, checkDuration, checkInteger } from '../check';
import { MultipathdClient, type MultipathdCallOptions } from './client';
import { MultipathdError, type MultipathdErrorCode } from './errors';
import { LastPathError, type MultipathMap } from '../multipath/map';
import type { MultipathdMap } from './parse';

/** Options of MultipathdActions. */
export interface MultipathdActionsOptions {
  /** The client (default: a new one with the default sockets). */
  client?: MultipathdClient;
  /** Where sysfs is, to name a maj:min path (default /sys). */
  sysfsRoot?: string;
  /** Deadline of each reinstate call, ms (default: the client's). */
  timeoutMs?: number;
  /** Deadline of each background `fail path`, ms (default 10 s: longer than multipathd's own uxsock_timeout, 4 s, so that it answers ok, fail or "timeout" and the outcome is known). */
  stickTimeoutMs?: number;
  /** Calls of `fail path` made before the stick half gives up (default 3). */
  stickAttempts?: number;
  /** Wait before the first retry of `fail path`, ms, doubled for each (default 500). */
  stickRetryMs?: number;
}

/** How long a `fail path` with no known outcome is assumed to possibly still land, ms. */
const MAY_LAND_MS = 30_000;

// multipathd answers that are worth asking again: it was slow or away, not refusing.
const RETRYABLE = new Set<MultipathdErrorCode>(['timeout', 'busy', 'io', 'not-running']);
// Errors after which the command may have reached multipathd and may still run.
const UNKNOWN_OUTCOME = new Set<MultipathdErrorCode>(['timeout', 'aborted', 'io']);

/** One path's background `fail path`. */
interface Stick {
  /** Settles when the fail ends, dm half and stick half, whatever the outcome. */
  readonly settled: Promise<void>;
  /** Settles `settled`. */
  readonly end: () => void;
  /** Wakes its back-off wait, to end it early. */
  readonly wake: AbortController;
  /** A later fail or reinstate of the path was asked for: do not send again. */
  superseded: boolean;
  /** A later fail of the same path was refused as the last path: undo this one if it lands. */
  undoOnLand: boolean;
  /** It landed (or may have) and ended quietly, superseded: a later refusal must undo it itself. */
  endedLanded: boolean;
  /** The fail's keepActive, checked again when multipathd's half lands. */
  readonly keepActive: number;
}

/**
 * Fails and reinstates paths so that multipathd's checker does not undo a fail.
 * fail() sends dm's fail_path to the map (instant, with the last-path check
 * of MultipathMap#failPath) and resolves; `fail path` to multipathd, which
 * pauses its checker for the path (cli_fail in multipathd/cli_handlers.c),
 * follows in the background (FailDone.rest), retried while multipathd is slow:
 * it answers only once it holds its vectors lock, which its checker can keep
 * for seconds while a prioritizer's SG_IO waits on the dead path (measured:
 * 4 s timeouts in the guest with the alua prioritizer). Until it lands the
 * checker may undo the fail; dm status then shows the path active again.
 *
 * multipathd runs `fail path` whatever the path's state by then, so while one
 * is on its way, or its outcome is unknown (for 30 s, a reinstate of the path
 * notwithstanding), that path counts as failed for the
 * last-path check of every other fail.
 */
export class MultipathdActions implements PathActions {
  readonly kind = 'multipathd';
  /** The map these actions are for. */
  readonly map: string;
  /** The client used. */
  readonly client: MultipathdClient;
  readonly #sysfs: { sysfsRoot?: string };
  readonly #call: MultipathdCallOptions;
  readonly #stickCall: MultipathdCallOptions;
  readonly #dm: MultipathMap;
  readonly #attempts: number;
  readonly #retryMs: number;
  readonly #sticks = new Map<PathId, Stick[]>();
  // Calls numbered in the order they were asked for, and per path the number
  // of the newest fail whose dm half took effect: a reinstate that waited for
  // a stick sees whether a fail asked for after it has failed the path since.
  // (One refused as the last path does not count: the reinstate then goes
  // ahead, and undoes a landing that would leave too few paths.)
  #asked = 0;
  readonly #failedAt = new Map<PathId, number>();
  // Paths whose `fail path` ended with no known outcome, and when.
  readonly #mayLand = new Map<PathId, number>();

  constructor(map: MultipathMap, options: MultipathdActionsOptions = {}) {
    this.map = map.name;
    this.#dm = map;
    this.client = options.client ?? new MultipathdClient();
    this.#sysfs = options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot };
    this.#call = options.timeoutMs === undefined ? {} : { timeoutMs: checkDuration('timeoutMs', options.timeoutMs) };
    this.#stickCall = { timeoutMs: checkDuration('stickTimeoutMs', options.stickTimeoutMs ?? 10_000) };
    this.#attempts = checkInteger('stickAttempts', options.stickAttempts ?? 3, 1);
    this.#retryMs = options.stickRetryMs === 0 ? 0 : checkDuration('stickRetryMs', options.stickRetryMs ?? 500);
  }

  /** The name multipathd knows the path by (sdc); the maj:min itself when sysfs has no name (cli_fail also looks paths up by dev_t). */
  async deviceName(path: PathId): Promise<string> {
    return resolveBlockDevice(path, this.#sysfs).then((d) => d.name, () => path);
  }

  async fail(path: PathId, request?: FailRequest): Promise<FailDone> {
    const asked = ++this.#asked;
    const earlier = this.#supersede(path);
    // Registered before the dm half: a fail of another path started meanwhile counts this one as failing.
    let end = (): void => undefined;
    const settled = new Promise<void>((r) => { end = r; });
    const stick: Stick = { settled, end, wake: new AbortController(), superseded: false, undoOnLand: false, endedLanded: false, keepActive: request?.keepActive ?? 1 };
    const list = this.#sticks.get(path) ?? [];
    list.push(stick);
    this.#sticks.set(path, list);
    const failing = this.#failingExcept(path);
    try {
      await this.#dm.failPath(path, { ...(request ? { keepActive: request.keepActive } : {}), failing });
    } catch (e) {
      this.#drop(path, stick);
      stick.end();
      // Refused: an earlier `fail path` of this same path must not land now;
      // one that already landed and ended (superseded by this fail, it left
      // the decision to it) is undone here. An undo that fails rejects this
      // fail with its error instead of the refusal.
      if (e instanceof LastPathError) {
        for (const s of earlier) s.undoOnLand = true;
        const landedEarlier = earlier.filter((s) => s.endedLanded);
        if (landedEarlier.length > 0) {
          const name = await this.deviceName(path);
          await Promise.all(landedEarlier.map((s) => this.#undoIfTooFew(path, name, s)));
        }
      }
      throw e;
    }
    // This fail passed the last-path check: an earlier `fail path` of the
    // path landing now agrees with it, and must not be undone.
    for (const s of earlier) s.undoOnLand = false;
    this.#failedAt.set(path, Math.max(this.#failedAt.get(path) ?? 0, asked));
    // A reinstate asked for while the dm half ran has superseded this fail:
    // it waited for `settled`, and sends its own `reinstate path` after.
    const rest = this.#stick(path, stick, request?.signal);
    void rest.then(() => undefined, () => undefined).finally(() => {
      this.#drop(path, stick);
      stick.end();
    });
    return { rest };
  }

  async reinstate(path: PathId): Promise<void> {
    const asked = ++this.#asked;
    const newerFail = (): void => {
      if ((this.#failedAt.get(path) ?? 0) > asked) {
        throw new SupersededError(path, `reinstate of ${path} not sent: a fail of it was asked for while the reinstate waited`);
      }
    };
    // A `fail path` still being retried would land after the reinstate and undo it.
    await Promise.all(this.#supersede(path).map((s) => s.settled));
    // That wait can take stickAttempts replies; a fail decided meanwhile is
    // newer than this reinstate, and sending it now would undo that fail.
    newerFail();
    const name = await this.deviceName(path);
    // A `fail path` whose reply never came stays on record: multipathd may
    // still run it after this reinstate (each command waits for its lock on
    // its own connection; nothing orders them). Retried like the undo: a
    // superseded stick's `fail path` may have landed, and this reinstate is
    // then what brings the path back (the fail-safety property found a busy
    // reply leaving such a landing in place with no path active).
    await this.#reinstateRetried(name, () => {
      newerFail();
      return true;
    });
  }

  /**
   * `reinstate path`, retried with back-off on a retryable error (multipathd
   * busy, its lock held, is the usual one) up to stickAttempts times while
   * `wanted()`; false when it stopped being wanted. Rejects with the last error.
   */
  async #reinstateRetried(name: string, wanted: () => boolean): Promise<boolean> {
    for (let attempt = 1; wanted(); attempt++) {
      try {
        await this.client.reinstatePath(name, this.#call);
        return true;
      } catch (e) {
        if (!(e instanceof MultipathdError && RETRYABLE.has(e.code)) || attempt >= this.#attempts) throw e;
      }
      // Its own wait: a stick's wake-up (aborted on supersede) must not turn it into a burst.
      await delay(this.#retryWait(attempt));
    }
    return false;
  }

  /** Marks every stick of `path` superseded, wakes their back-off, and returns them. */
  #supersede(path: PathId): Stick[] {
    const list = [...(this.#sticks.get(path) ?? [])];
    for (const s of list) {
      s.superseded = true;
      s.wake.abort();
    }
    return list;
  }

  #drop(path: PathId, stick: Stick): void {
    const list = this.#sticks.get(path)?.filter((s) => s !== stick) ?? [];
    if (list.length > 0) this.#sticks.set(path, list);
    else this.#sticks.delete(path);
  }

  async #landingKeeps(path: PathId, keepActive: number, seen?: readonly { device: string; state: string }[]): Promise<boolean> {
    const failing = new Set(this.#failingExcept(path));
    const paths = seen ?? (await this.#dm.status()).groups.flatMap((g) => g.paths);
    return paths.filter((p) => p.device !== path && p.state === 'active' && !failing.has(p.device)).length >= keepActive;
  }

  #failingExcept(path: PathId): string[] {
    const now = performance.now();
    for (const [p, at] of this.#mayLand) if (now - at > MAY_LAND_MS) this.#mayLand.delete(p);
    return [...new Set([...this.#sticks.keys(), ...this.#mayLand.keys()])].filter((p) => p !== path);
  }

  async #stick(path: PathId, stick: Stick, signal: AbortSignal | undefined): Promise<void> {
    const name = await this.deviceName(path);
    const call = signal ? { ...this.#stickCall, signal } : this.#stickCall;
    let failure: unknown;
    let landed = false;
    let mayHaveLanded = false;
    for (let attempt = 1; !stick.superseded; attempt++) {
      try {
        await this.client.failPath(name, call);
        // (An unknown outcome's mark stays: that older command may still run.)
        landed = true;
        failure = undefined;
        break;
      } catch (e) {
        const unknown = e instanceof MultipathdError && UNKNOWN_OUTCOME.has(e.code);
        if (unknown) this.#mayLand.set(path, performance.now());
        mayHaveLanded ||= unknown;
        failure = e;
        if (stick.superseded || !(e instanceof MultipathdError && RETRYABLE.has(e.code)) || attempt >= this.#attempts) break;
      }
      try {
        await this.#backOff(attempt, stick, signal);
      } catch (e) {
        // stop(): no more tries, but a landing so far is still checked below.
        failure = e;
        break;
      }
    }
    // Superseded by a later fail or reinstate of the path: that one decides
    // its state, and ending quietly is what was asked for; unless a refusal
    // asked for this one to be undone should it land.
    if (stick.superseded && !stick.undoOnLand) {
      stick.endedLanded = landed || mayHaveLanded;
      return;
    }
    // multipathd failed it whatever the other paths' state by then (the
    // checker may have failed them since the dm half): a landing that leaves
    // too few active is undone at once. Checked also when the outcome is
    // unknown (a reply lost), for a landing that happened before we gave up.
    // Not cut short by stop(): each call is bounded by its timeout.
    if (landed || mayHaveLanded) await this.#undoIfTooFew(path, name, stick);
    if (failure !== undefined && !stick.superseded) throw failure;
  }

  async #backOff(attempt: number, stick: Stick, signal: AbortSignal | undefined): Promise<void> {
    const wake = signal ? AbortSignal.any([signal, stick.wake.signal]) : stick.wake.signal;
    await delay(this.#retryWait(attempt), undefined, { signal: wake }).catch(() => undefined);
    if (signal?.aborted) throw signal.reason;
  }

  #retryWait(attempt: number): number {
    return Math.min(this.#retryMs * 2 ** (attempt - 1), MAX_DURATION_MS);
  }

  // Decided once, on the status read after the landing; the reinstate is then
  // retried on its own (multipathd busy is the usual case here): a failed undo
  // must never be taken for a failed `fail path` and sent again.
  // Marks the stick endedLanded when a later fail outranked it before its
  // undo was sent: if that fail is then refused, the refusal undoes it.
  async #undoIfTooFew(path: PathId, name: string, stick: Stick): Promise<void> {
    // A later fail of the path (it passed its own check) or a reinstate decides now.
    const outranked = (): boolean => stick.superseded && !stick.undoOnLand;
    try {
      if (!stick.undoOnLand) {
        const paths = (await this.#dm.status()).groups.flatMap((g) => g.paths);
        if (paths.find((p) => p.device === path)?.state !== 'failed' || (await this.#landingKeeps(path, stick.keepActive, paths))) return;
      }
    } catch (e) {
      throw new MultipathdError('io', `fail path ${name}`, `multipathd's fail path of ${name} may have landed, and dm status could not be read to check the paths left: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    try {
      if (!(await this.#reinstateRetried(name, () => !outranked()))) stick.endedLanded = true;
    } catch (e) {
      throw new MultipathdError(e instanceof MultipathdError ? e.code : 'io', `reinstate path ${name}`,
        `multipathd's fail path of ${name} landed with too few other paths active, and undoing it failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }
}

/** Whether multipathd manages a map, and why the answer is what it is. */
export interface MultipathdDetection {
  /** multipathd answers and lists the map. */
  managed: boolean;
  /** One line for logs. */
  reason: string;
  /** multipathd's record of the map, when managed. */
  record?: MultipathdMap;
}

/** Options of detectMultipathd. */
export interface DetectOptions extends MultipathdCallOptions {
  /** The client (default: a new one). */
  client?: MultipathdClient;
}

/** Asks multipathd whether it manages `map` (by dm name). Not running → not managed; a daemon that answers badly rejects with its MultipathdError. */
export async function detectMultipathd(map: string, options: DetectOptions = {}): Promise<MultipathdDetection> {
  const { client = new MultipathdClient(), ...call } = options;
  let maps: MultipathdMap[];
  try {
    maps = await client.showMaps(call);
  } catch (e) {
    if (e instanceof MultipathdError && e.code === 'not-running') return { managed: false, reason: e.message };
    throw e;
  }
  const record = maps.find((m) => m.name === map);
  if (!record) return { managed: false, reason: `multipathd runs but does not manage '${map}' (it manages: ${maps.map((m) => m.name).join(', ') || 'nothing'})` };
  return { managed: true, reason: `multipathd manages '${map}' (${record.sysfs}, ${record.paths} paths)`, record };
}

/** How path actions are chosen: 'auto' asks multipathd, 'dm' and 'multipathd' force one. */
export type ActionsPreference = 'auto' | 'dm' | 'multipathd';

/** Options of chooseActions. */
export interface ChooseActionsOptions extends DetectOptions {
  /** Default 'auto'. */
  prefer?: ActionsPreference;
  /** Where sysfs is (default /sys). */
  sysfsRoot?: string;
}

/**
 * The PathActions for a map: MultipathdActions when multipathd manages it,
 * DmMessageActions when it does not ('auto'); or the one forced by `prefer`.
 * 'multipathd' rejects when multipathd does not manage the map; 'auto' rejects
 * when multipathd runs but cannot be asked (a dm fail would then be undone).
 */
export async function chooseActions(map: MultipathMap, options: ChooseActionsOptions = {}): Promise<PathActions> {
  const { prefer = 'auto', client = new MultipathdClient(), sysfsRoot, ...call } = options;
  if (prefer !== 'auto' && prefer !== 'dm' && prefer !== 'multipathd') throw new RangeError(`actions must be auto, dm or multipathd, got '${String(prefer)}'`);
  if (prefer === 'dm') return new DmMessageActions(map);
  const mpd = (): MultipathdActions => new MultipathdActions(map, { client, ...(sysfsRoot === undefined ? {} : { sysfsRoot }) });
  let found: MultipathdDetection;
  try {
    found = await detectMultipathd(map.name, { client, ...call });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new MultipathdError(e instanceof MultipathdError ? e.code : 'io', 'show maps',
      `cannot tell whether multipathd manages '${map.name}': ${why}; choose the actions explicitly ('dm' or 'multipathd')`, { cause: e });
  }
  if (found.managed) return mpd();
  if (prefer === 'multipathd') throw new MultipathdError('not-running', 'show maps', `actions 'multipathd' asked for, but ${found.reason}`);
  return new DmMessageActions(map);
}
