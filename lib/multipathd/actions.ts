// Path actions through multipathd, and the choice between them and plain dm
// messages. When multipathd manages a map, a dm-level fail_path is undone by its
// checker within a polling interval; `fail path` also pauses the checker for
// that path (cli_fail in multipath-tools multipathd/cli_handlers.c) and
// `reinstate path` resumes it (cli_reinstate).
import type { MultipathMap } from '../multipath/map';
import { resolveBlockDevice } from '../multipath/paths';
import { DmMessageActions, type PathActions } from '../watchdog/actions';
import type { PathId } from '../watchdog/policy';
import { MultipathdClient, type MultipathdCallOptions } from './client';
import { MultipathdError } from './errors';
import type { MultipathdMap } from './parse';

/** Options of MultipathdActions. */
export interface MultipathdActionsOptions {
  /** The client (default: a new one with the default sockets). */
  client?: MultipathdClient;
  /** Where sysfs is, to name a maj:min path (default /sys). */
  sysfsRoot?: string;
  /** Deadline of each fail or reinstate, ms (default: the client's). */
  timeoutMs?: number;
  /**
   * When given, fail() first sends dm's fail_path to this map (instant), then
   * `fail path` to multipathd to make it stick. multipathd answers `fail path`
   * only once it holds its vectors lock, which its checker can keep for seconds
   * while a prioritizer's SG_IO waits on the dead path (measured: 4 s timeouts
   * in the guest with the alua prioritizer).
   */
  map?: MultipathMap;
}

/** Fails and reinstates paths with multipathd's `fail path` / `reinstate path`, so its checker does not undo a fail. */
export class MultipathdActions implements PathActions {
  readonly kind = 'multipathd';
  /** The map these actions are for (used in messages). */
  readonly map: string;
  /** The client used. */
  readonly client: MultipathdClient;
  readonly #sysfs: { sysfsRoot?: string };
  readonly #call: MultipathdCallOptions;
  readonly #dm: MultipathMap | undefined;

  constructor(map: string, options: MultipathdActionsOptions = {}) {
    this.map = map;
    this.client = options.client ?? new MultipathdClient();
    this.#sysfs = options.sysfsRoot === undefined ? {} : { sysfsRoot: options.sysfsRoot };
    this.#call = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
    this.#dm = options.map;
  }

  /** The name multipathd knows the path by (sdc); the maj:min itself when sysfs has no name (cli_fail also looks paths up by dev_t). */
  async deviceName(path: PathId): Promise<string> {
    return resolveBlockDevice(path, this.#sysfs).then((d) => d.name, () => path);
  }

  async fail(path: PathId): Promise<void> {
    if (this.#dm) await this.#dm.failPath(path);
    await this.client.failPath(await this.deviceName(path), this.#call);
  }

  async reinstate(path: PathId): Promise<void> {
    await this.client.reinstatePath(await this.deviceName(path), this.#call);
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
  const mpd = (): MultipathdActions => new MultipathdActions(map.name, { client, map, ...(sysfsRoot === undefined ? {} : { sysfsRoot }) });
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
