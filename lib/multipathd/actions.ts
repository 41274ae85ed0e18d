// Path actions through multipathd, and the choice between them and plain dm
// messages. When multipathd manages a map, a dm-level fail_path is undone by its
// checker within a polling interval; `fail path` also pauses the checker for
// that path (cli_fail in multipath-tools multipathd/cli_handlers.c) and
// `reinstate path` resumes it (cli_reinstate).
import { setTimeout as delay } from 'node:timers/promises';
import type { MultipathMap } from '../multipath/map';
import { resolveBlockDevice } from '../multipath/paths';
import { DmMessageActions, type FailDone, type FailRequest, type PathActions } from '../watchdog/actions';
import type { PathId } from '../watchdog/policy';
import { checkInteger } from '../watchdog/policy-options';
import { MultipathdClient, type MultipathdCallOptions } from './client';
import { MultipathdError, type MultipathdErrorCode } from './errors';
import type { MultipathdMap } from './parse';

/** Options of MultipathdActions. */
export interface MultipathdActionsOptions {
  /** The client (default: a new one with the default sockets). */
  client?: MultipathdClient;
  /** Where sysfs is, to name a maj:min path (default /sys). */
  sysfsRoot?: string;
  /** Deadline of each fail or reinstate call, ms (default: the client's). */
  timeoutMs?: number;
  /** Calls of `fail path` made before the stick half gives up (default 3). */
  stickAttempts?: number;
  /** Wait before the first retry of `fail path`, ms, doubled for each (default 500). */
  stickRetryMs?: number;
}

/** How long an unanswered `fail path` is assumed to possibly still land, ms. */
const MAY_LAND_MS = 30_000;

// multipathd answers that are worth asking again: it was slow or away, not refusing.
const RETRYABLE = new Set<MultipathdErrorCode>(['timeout', 'busy', 'io', 'not-running']);

/**
 * Fails and reinstates paths so that multipathd's checker does not undo a fail.
 * fail() sends dm's fail_path to the map (instant, with the last-path check
 * of MultipathMap#failPath) and resolves; `fail path` to multipathd, which
 * pauses its checker for the path, follows in the background (FailDone.rest),
 * retried while multipathd is slow: it answers only once it holds its vectors
 * lock, which its checker can keep for seconds while a prioritizer's SG_IO
 * waits on the dead path (measured: 4 s timeouts in the guest with the alua
 * prioritizer). Until it lands the checker may undo the fail; dm status then
 * shows the path active again, and the watchdog follows that.
 */
export class MultipathdActions implements PathActions {
  readonly kind = 'multipathd';
  /** The map these actions are for. */
  readonly map: string;
  /** The client used. */
  readonly client: MultipathdClient;
  readonly #sysfs: { sysfsRoot?: string };
  readonly #call: MultipathdCallOptions;
  readonly #dm: MultipathMap;
  readonly #attempts: number;
  readonly #retryMs: number;
  // Per path: bumped by every fail and reinstate, so that a stick half still
  // retrying stops once a later action was asked for.
  readonly #gen = new Map<PathId, number>();
  readonly #sticking = new Map<PathId, Promise<void>>();
  // Paths whose `fail path` went unanswered (our timeout, or an abort), with
  // when that was: multipathd may still carry it out once it gets its lock, so
  // they count as failing until a reinstate, or for MAY_LAND_MS. multipathd
  // runs a command or drops it ("timeout") within its uxsock_timeout (4 s by
  // default, multipathd/uxlsnr.c); the margin is wide on purpose.
  readonly #mayLand = new Map<PathId, number>();

  constructor(map: MultipathMap, options: MultipathdActionsOptions = {}) {
    this.map = map.name;
    this.#dm = map;
    this.client = options.client ?? new MultipathdClient();
    this.#sysfs = options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot };
    this.#call = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
    this.#attempts = checkInteger('stickAttempts', options.stickAttempts ?? 3, 1);
    this.#retryMs = checkInteger('stickRetryMs', options.stickRetryMs ?? 500, 0);
  }

  /** The name multipathd knows the path by (sdc); the maj:min itself when sysfs has no name (cli_fail also looks paths up by dev_t). */
  async deviceName(path: PathId): Promise<string> {
    return resolveBlockDevice(path, this.#sysfs).then((d) => d.name, () => path);
  }

  async fail(path: PathId, request?: FailRequest): Promise<FailDone> {
    const gen = this.#bump(path);
    // A `fail path` still on its way to another path will land whatever that
    // path's state is now (the checker may have reinstated it meanwhile): it
    // does not count as active.
    const now = performance.now();
    for (const [p, at] of this.#mayLand) if (now - at > MAY_LAND_MS) this.#mayLand.delete(p);
    const failing = [...new Set([...this.#sticking.keys(), ...this.#mayLand.keys()])].filter((p) => p !== path);
    await this.#dm.failPath(path, { ...(request ? { keepActive: request.keepActive } : {}), failing });
    const rest = this.#stick(path, gen, request?.signal);
    const settled = rest.catch(() => undefined);
    this.#sticking.set(path, settled);
    void settled.finally(() => { if (this.#sticking.get(path) === settled) this.#sticking.delete(path); });
    return { rest };
  }

  async reinstate(path: PathId): Promise<void> {
    this.#bump(path);
    // A `fail path` still being retried would land after the reinstate and undo it.
    await this.#sticking.get(path);
    await this.client.reinstatePath(await this.deviceName(path), this.#call);
    this.#mayLand.delete(path);
  }

  #bump(path: PathId): number {
    const gen = (this.#gen.get(path) ?? 0) + 1;
    this.#gen.set(path, gen);
    return gen;
  }

  async #stick(path: PathId, gen: number, signal: AbortSignal | undefined): Promise<void> {
    const name = await this.deviceName(path);
    const call = signal ? { ...this.#call, signal } : this.#call;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.failPath(name, call);
        this.#mayLand.delete(path);
        return;
      } catch (e) {
        if (e instanceof MultipathdError && (e.code === 'timeout' || e.code === 'aborted')) this.#mayLand.set(path, performance.now());
        const retry = e instanceof MultipathdError && RETRYABLE.has(e.code) && attempt < this.#attempts;
        if (!retry || this.#gen.get(path) !== gen) throw e;
      }
      await delay(this.#retryMs * 2 ** (attempt - 1), undefined, signal ? { signal } : {});
      if (this.#gen.get(path) !== gen) return;
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
