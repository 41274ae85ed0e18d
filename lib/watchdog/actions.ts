// How a decision reaches the kernel. One interface, so that a multipathd-backed
// action (whose `fail path` also pauses multipathd's checker) can replace the
// dm message without the watchdog knowing.
import type { MultipathMap } from '../multipath/map';
import type { PathId } from './policy';

/** What the watchdog asks of a fail beyond the path. */
export interface FailRequest {
  /** Other paths that must stay active in the status read just before the fail (the policy's minUsablePaths); refused with LastPathError otherwise. */
  readonly keepActive: number;
  /** Ends work still going on after fail() resolved (see FailDone.rest). */
  readonly signal?: AbortSignal;
}

/** What a fail did, beyond taking the path out of dm's routing. */
export interface FailDone {
  /** Work still going on to make the fail stick (multipathd's `fail path`); rejects if it gives up. The path stays failed in dm either way. */
  readonly rest?: Promise<void>;
}

/** Carries out fail and reinstate decisions for one map's paths (given as maj:min). */
export interface PathActions {
  /** A short name for logs and events ('dm-message', 'multipathd', 'dry-run'). */
  readonly kind: string;
  /** Fails the path: resolves once dm routes no new I/O to it; rejects when the kernel (or daemon) refuses, the path then not failed. */
  fail(path: PathId, request?: FailRequest): Promise<FailDone | void>;
  /** Reinstates the path; rejects when refused, or with SupersededError when a fail of the path asked for meanwhile stands instead. */
  reinstate(path: PathId): Promise<void>;
}

/** A reinstate not sent because a fail of the same path was asked for while it waited: the later decision stands. */
export class SupersededError extends Error {
  readonly code = 'superseded';
  /** The path (maj:min). */
  readonly path: PathId;

  constructor(path: PathId, message: string) {
    super(message);
    this.name = 'SupersededError';
    this.path = path;
  }
}

/** fail_path / reinstate_path as dm target messages (drivers/md/dm-mpath.c, multipath_message). */
export class DmMessageActions implements PathActions {
  readonly kind = 'dm-message';
  readonly #map: MultipathMap;

  constructor(map: MultipathMap) {
    this.#map = map;
  }

  async fail(path: PathId, request?: FailRequest): Promise<void> {
    await this.#map.failPath(path, request ? { keepActive: request.keepActive } : {});
  }

  async reinstate(path: PathId): Promise<void> {
    await this.#map.reinstatePath(path);
  }
}

/** Decides and reports, changes nothing: every call resolves at once and is recorded. */
export class DryRunActions implements PathActions {
  readonly kind = 'dry-run';
  /** What would have been done, in order. */
  readonly log: { action: 'fail' | 'reinstate'; path: PathId }[] = [];

  async fail(path: PathId): Promise<void> {
    this.log.push({ action: 'fail', path });
  }

  async reinstate(path: PathId): Promise<void> {
    this.log.push({ action: 'reinstate', path });
  }
}
